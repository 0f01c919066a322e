"""docker cp, export, diff and commit: the real docker CLI against berthd."""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture
def d(daemon, busybox_rootfs):
    daemon.docker("import", str(busybox_rootfs), "busybox:latest")
    return daemon.docker


def test_cp_out_of_a_container(d, workdir):
    d("run", "--name", "src", "busybox", "sh", "-c",
      "mkdir -p /out/sub && echo one > /out/one && echo two > /out/sub/two")
    dest = workdir / "copied"
    dest.mkdir()
    d("cp", "src:/out/one", str(dest / "one.txt"))
    assert (dest / "one.txt").read_text() == "one\n"
    d("cp", "src:/out", str(dest))
    assert (dest / "out" / "sub" / "two").read_text() == "two\n"
    d("cp", "src:/out/.", str(dest / "flat"))
    assert sorted(os.listdir(dest / "flat")) == ["one", "sub"]
    d("cp", "src:/bin/sh", str(dest / "sh-link"))            # the symlink itself
    assert os.readlink(dest / "sh-link") == "/bin/busybox"
    d("cp", "-L", "src:/bin/sh", str(dest / "sh-binary"))      # -L: what it points to
    assert (dest / "sh-binary").stat().st_size > 100_000
    out = d("cp", "src:/out/missing", str(dest), check=False)
    assert out.returncode == 1
    assert "Could not find the file /out/missing in container src" in out.stderr


def test_cp_to_stdout_is_a_tar(d):
    d("create", "--name", "tarred", "busybox", "true")
    out = d("cp", "tarred:/etc/passwd", "-", input=b"")     # bytes on stdout
    proc = subprocess.run(["tar", "t"], input=out.stdout, capture_output=True, check=True)
    assert proc.stdout.decode().split() == ["passwd"]


def test_cp_into_a_stopped_container(d, workdir):
    src = workdir / "payload"
    (src / "nested").mkdir(parents=True)
    (src / "nested" / "file.txt").write_text("payload\n")
    (workdir / "single.txt").write_text("single\n")
    d("create", "--name", "dst", "busybox", "sh", "-c",
      "cat /single.txt /root/payload/nested/file.txt /etc/renamed.txt")
    d("cp", str(workdir / "single.txt"), "dst:/")
    d("cp", str(src), "dst:/root/payload")
    out = d("cp", str(src), "dst:/opt/payload", check=False)
    assert out.returncode == 1 and "Could not find the file /opt in container dst" in out.stderr
    d("cp", str(workdir / "single.txt"), "dst:/etc/renamed.txt")
    assert d("start", "-a", "dst").stdout == "single\npayload\nsingle\n"


def test_cp_into_a_running_container_and_its_volume(d, workdir):
    (workdir / "f.txt").write_text("hot copy\n")
    d("run", "-d", "--name", "live", "-v", "cpv:/data", "busybox", "sleep", "600")
    try:
        d("cp", str(workdir / "f.txt"), "live:/data/")
        d("cp", str(workdir / "f.txt"), "live:/tmp/f.txt")
        for path in ("/data/f.txt", "/tmp/f.txt"):
            assert d("exec", "live", "grep", "-qx", "hot copy", path).returncode == 0
        assert d("run", "--rm", "-v", "cpv:/v", "busybox", "cat", "/v/f.txt").stdout == "hot copy\n"
    finally:
        d("rm", "-f", "live")


def test_cp_refusals(d, workdir):
    (workdir / "f.txt").write_text("x")
    d("create", "--name", "ro", "--read-only", "-v", "rov:/ro:ro", "busybox", "true")
    out = d("cp", str(workdir / "f.txt"), "ro:/ro/", check=False)
    assert out.returncode == 1 and "mounted volume is marked read-only" in out.stderr
    out = d("cp", str(workdir / "f.txt"), "ro:/tmp/", check=False)
    assert out.returncode == 1 and "container rootfs is marked read-only" in out.stderr
    # The CLI stats the destination first (HEAD: no body, so no message).
    assert d("cp", str(workdir / "f.txt"), "nosuch:/tmp/", check=False).returncode == 1
    out = d("cp", "nosuch:/tmp", str(workdir), check=False)
    assert out.returncode == 1 and "No such container" in out.stderr


def test_export_pipes_into_tar(d, workdir):
    d("run", "--name", "exp", "busybox", "sh", "-c", "echo exported > /made-here")
    stream = d("export", "exp", input=b"").stdout          # bytes: `docker export exp | tar t`
    listing = subprocess.run(["tar", "t"], input=stream, capture_output=True, check=True)
    names = listing.stdout.decode().split()
    assert "made-here" in names and "bin/busybox" in names and "etc/passwd" in names
    target = workdir / "export.tar"
    d("export", "-o", str(target), "exp")
    with tarfile.open(target) as tar:
        assert tar.extractfile("made-here").read() == b"exported\n"


def test_diff_shows_added_changed_deleted(d):
    d("run", "--name", "dif", "busybox", "sh", "-c",
      "echo more >> /etc/passwd; rm /etc/nsswitch.conf; mkdir /newdir; touch /newdir/n")
    assert d("diff", "dif").stdout.splitlines() == [
        "C /etc", "D /etc/nsswitch.conf", "C /etc/passwd", "A /newdir", "A /newdir/n"]


def test_commit_then_run_the_new_image(d):
    d("run", "--name", "base", "busybox", "sh", "-c", "echo from-commit > /committed.txt")
    image_id = d("commit", "-m", "snapshot", "-a", "tester", "-c", "CMD [\"cat\", \"/committed.txt\"]",
                 "base", "snapshot:v1").stdout.strip()
    assert image_id.startswith("sha256:")
    assert d("run", "--rm", "snapshot:v1").stdout == "from-commit\n"
    history = d("history", "--format", "{{.Comment}}|{{.CreatedBy}}", "snapshot:v1").stdout.splitlines()
    assert history[0].startswith("snapshot|sh -c echo from-commit")
    assert d("inspect", "-f", "{{.Author}}", "snapshot:v1").stdout.strip() == "tester"
    out = d("commit", "nosuch", check=False)
    assert out.returncode == 1 and "No such container: nosuch" in out.stderr
