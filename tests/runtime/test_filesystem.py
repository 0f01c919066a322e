"""The container's filesystem: overlay of several layers, read-only rootfs, mounts
resolved inside the rootfs, masked and read-only paths, /dev, no host leftovers."""

from __future__ import annotations

import os
import subprocess

import pytest

from berth import runtime as rt
from berth.errors import InvalidArgument

from .conftest import host_mounts_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def test_overlay_of_several_lowerdirs_and_an_upper(boxes, workdir, busybox_layer):
    mid = workdir / "layer-mid"
    top = workdir / "layer-top"
    (mid / "etc").mkdir(parents=True)
    (top / "etc").mkdir(parents=True)
    (mid / "etc" / "which").write_text("mid\n")
    (mid / "etc" / "only-mid").write_text("m\n")
    (mid / "etc" / "gone").write_text("should be hidden\n")
    (top / "etc" / "which").write_text("top\n")
    # An overlay whiteout (char 0/0) in the top layer deletes the mid layer's file.
    os.mknod(top / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    r = boxes.run(["sh", "-c", "cat /etc/which /etc/only-mid; ls /etc/gone 2>&1; echo new > /created; rm /etc/only-mid"],
                  root={"lowerdirs": [str(top), str(mid), str(busybox_layer)]})
    lines = r.out.splitlines()
    assert lines[:2] == ["top", "m"]
    assert "No such file" in lines[2]
    upper = r.bundle.parent / "upper"
    assert (upper / "created").read_text() == "new\n"
    # Deleting a lower file leaves a whiteout in the upper dir; the layer is intact.
    assert os.major(os.stat(upper / "etc" / "only-mid", follow_symlinks=False).st_rdev) == 0
    assert (mid / "etc" / "only-mid").read_text() == "m\n"


@pytest.mark.parametrize("legacy", [False, True], ids=["fsconfig", "mount-data"])
def test_many_layers(boxes, workdir, busybox_layer, monkeypatch, legacy):
    # 60 long layer paths are over mount(2)'s one-page option limit: the fd mount
    # API (`lowerdir+`) and, for kernels before 6.8, short symlink names both work.
    if legacy:
        monkeypatch.setenv("BERTH_OVERLAY_LEGACY", "1")
    layers = []
    for i in range(60):
        d = workdir / f"layers/l{i:03d}-{'x' * 60}"
        (d / "layers").mkdir(parents=True)
        (d / "layers" / f"f{i}").write_text(str(i))
        layers.append(str(d))
    r = boxes.run(["sh", "-c", "ls /layers | wc -l"], root={"lowerdirs": layers + [str(busybox_layer)]})
    assert r.out.strip() == "60"
    assert sum(len(p) + 1 for p in layers) > 4096
    boxes.wait_monitor_gone(r.bundle)
    assert sorted(os.listdir(r.bundle)) == sorted(["spec.json", "rootfs", "container.log", "monitor.log",
                                                   "monitor.pid", "state.json", "exit.json"])


def test_readonly_rootfs(boxes):
    r = boxes.run(["sh", "-c", "touch /x 2>&1; echo rc=$?; touch /tmp/x 2>&1; echo tmp=$?"],
                  root={"readonly": True},
                  mounts=[{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}])
    assert "Read-only file system" in r.out
    assert "rc=1" in r.out
    assert "tmp=0" in r.out


def test_tmpfs_and_bind_mounts(boxes, workdir):
    host = workdir / "shared"
    host.mkdir()
    (host / "hello.txt").write_text("from the host\n")
    ro = workdir / "ro-src"
    ro.mkdir()
    r = boxes.run(
        ["sh", "-c", "cat /data/hello.txt; echo back > /data/reply.txt; grep ' /scratch ' /proc/mounts; "
                     "touch /ro/x 2>&1; echo ro=$?"],
        mounts=[
            {"destination": "/data", "type": "bind", "source": str(host), "options": ["rbind", "rprivate"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777", "size=2m"]},
            {"destination": "/ro", "type": "bind", "source": str(ro), "options": ["bind", "ro"]},
        ])
    lines = r.out.splitlines()
    assert lines[0] == "from the host"
    assert "tmpfs" in lines[1] and "size=2048k" in lines[1]
    assert "Read-only file system" in r.out and "ro=1" in r.out
    assert (host / "reply.txt").read_text() == "back\n"


def test_symlink_in_the_image_cannot_send_a_mount_outside(boxes, workdir, busybox_layer):
    evil = workdir / "evil-layer"
    evil.mkdir()
    # Absolute and relative escapes: both must resolve inside the rootfs.
    os.symlink("/etc", evil / "data")
    os.symlink("../../../../../../../../tmp", evil / "up")
    src = workdir / "marker-src"
    src.mkdir()
    (src / "marker").write_text("inside\n")
    r = boxes.run(["sh", "-c", "cat /etc/marker; cat /tmp/sub/marker"],
                  root={"lowerdirs": [str(evil), str(busybox_layer)]},
                  mounts=[{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind"]},
                          {"destination": "/up/sub", "type": "bind", "source": str(src), "options": ["rbind"]}])
    # The mounts landed on the container's /etc and /tmp/sub, not the host's.
    assert r.out.splitlines() == ["inside", "inside"]
    assert not os.path.exists("/etc/marker")
    assert not os.path.exists("/tmp/sub/marker")


def test_bind_source_must_exist(boxes, workdir):
    bundle, spec = boxes.spec(["true"], mounts=[{"destination": "/x", "type": "bind", "source": str(workdir / "nope")}])
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument, match=f"bind source path does not exist: {workdir / 'nope'}"):
        rt.spawn_monitor(bundle)
    # Nothing half-made: no monitor files, no log, no process, no mount.
    assert sorted(os.listdir(bundle)) == ["rootfs", "spec.json"]
    assert os.listdir(bundle / "rootfs") == []
    assert host_mounts_under(bundle.parent) == []
    assert subprocess.run(["pgrep", "-f", str(bundle)], capture_output=True).stdout == b""


def test_unwritable_log_path_fails_the_create_cleanly(boxes, workdir):
    bundle, spec = boxes.spec(["true"], logPath=str(workdir / "no-such-dir" / "c.log"))
    rt.write_spec(bundle, spec)
    with pytest.raises(Exception, match="open log"):
        rt.spawn_monitor(bundle)
    assert sorted(os.listdir(bundle)) == ["rootfs", "spec.json"]
    assert subprocess.run(["pgrep", "-f", str(bundle)], capture_output=True).stdout == b""


def test_masked_and_readonly_paths(boxes):
    present = [p for p in rt.DEFAULT_MASKED_PATHS if os.path.exists(p)]
    assert present, "this kernel exposes none of Docker's masked paths"
    script = "; ".join(f"echo {p} $(cat {p} 2>&1 | wc -c) $(ls -A {p} 2>/dev/null | wc -l)" for p in present)
    r = boxes.run(["sh", "-c", script + "; echo 1 > /proc/sys/vm/drop_caches; echo sys=$?; "
                                        "grep ' /proc/sys ' /proc/mounts"])
    lines = r.out.splitlines()
    for p, line in zip(present, lines):
        # A file reads empty (/dev/null), a directory lists nothing (empty tmpfs).
        path, size, entries = line.rsplit(" ", 2)
        assert path == p
        if os.path.isdir(p):
            assert entries == "0", line
        else:
            assert size == "0", line
    assert "sys=1" in r.out and "Read-only file system" in r.stderr.decode()
    assert r.out.splitlines()[-1].startswith("proc /proc/sys proc ro,")


def test_dev_has_dockers_nodes_and_a_private_devpts(boxes):
    r = boxes.run(["sh", "-c", "ls /dev; readlink /dev/ptmx; ls -l /dev/null; grep devpts /proc/mounts; "
                               "echo x > /dev/null && head -c 4 /dev/zero | wc -c; grep ' /sys ' /proc/mounts"])
    out = r.out
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "stdin"):
        assert name in out.split(), name
    assert "pts/ptmx" in out
    assert "crw-rw-rw-" in out
    assert "newinstance" in out or "ptmxmode=666" in out
    assert "\n4\n" in out
    assert "sysfs /sys sysfs ro," in out


def test_no_mount_is_left_on_the_host(boxes):
    r = boxes.run(["sh", "-c", "echo hi > /file"], mounts=[
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": []}])
    assert r.code == 0
    assert host_mounts_under(r.bundle.parent) == []
    # The rootfs mountpoint is an empty directory on the host side.
    assert os.listdir(r.bundle / "rootfs") == []


def test_rootfs_mount_is_not_visible_on_the_host_while_running(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    assert host_mounts_under(bundle) == []
    rt.kill(bundle, "KILL")
    assert rt.wait_exit_sync(bundle, timeout=30)["exitCode"] == 137


def test_sys_fs_cgroup_shows_the_containers_own_cgroups(boxes, memory_cgroup):
    with open(os.path.join(memory_cgroup, "memory.limit_in_bytes"), "w") as f:
        f.write(str(48 * 1024 * 1024))
    r = boxes.run(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                               "grep ' /sys/fs/cgroup/memory ' /proc/mounts; touch /sys/fs/cgroup/memory/x"],
                  cgroupPaths=[memory_cgroup])
    lines = r.out.splitlines()
    assert lines[0] == str(48 * 1024 * 1024)
    assert " ro," in lines[1]
    assert "Read-only file system" in r.stderr.decode()


def test_a_file_bound_onto_a_directory_gets_dockers_hint(boxes, workdir):
    src = workdir / "a-file"
    src.write_text("x")
    bundle, spec = boxes.spec(["true"], mounts=[{"destination": "/etc", "type": "bind", "source": str(src)}])
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument, match="Are you trying to mount a directory onto a file"):
        rt.spawn_monitor(bundle)
