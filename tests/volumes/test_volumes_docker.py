"""`docker volume ...` and `docker run` with volumes, binds and tmpfs: the real
docker CLI against berthd."""

from __future__ import annotations

import json
import os

import pytest

from volkit import needs_root


def test_volume_commands(daemon):
    d = daemon.docker
    assert d("volume", "create", "--label", "team=web", "webdata").stdout.strip() == "webdata"
    assert d("volume", "create", "logs").stdout.strip() == "logs"
    assert d("volume", "ls", "-q").stdout.split() == ["logs", "webdata"]
    table = d("volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert d("volume", "ls", "-q", "--filter", "label=team=web").stdout.split() == ["webdata"]
    assert d("volume", "ls", "-q", "--filter", "name=log").stdout.split() == ["logs"]
    inspect = json.loads(d("volume", "inspect", "webdata").stdout)
    assert inspect[0]["Name"] == "webdata" and inspect[0]["Labels"] == {"team": "web"}
    assert inspect[0]["Mountpoint"] == str(daemon.root / "volumes/webdata/_data")
    assert d("volume", "inspect", "-f", "{{.Driver}} {{.Scope}}", "logs").stdout.strip() == "local local"
    assert d("volume", "rm", "logs", "webdata").stdout.split() == ["logs", "webdata"]
    assert d("volume", "ls", "-q").stdout.strip() == ""


def test_volume_errors(daemon):
    d = daemon.docker
    out = d("volume", "inspect", "nope", check=False)
    assert out.returncode != 0 and "get nope: no such volume" in out.stderr
    out = d("volume", "rm", "nope", check=False)
    assert out.returncode != 0 and "get nope: no such volume" in out.stderr
    assert d("volume", "rm", "-f", "nope").returncode == 0
    out = d("volume", "create", "-d", "fancy", "x1", check=False)
    assert out.returncode != 0 and 'plugin "fancy" not found' in out.stderr
    out = d("volume", "create", "--opt", "colour=red", "x1", check=False)
    assert out.returncode != 0 and 'invalid option: "colour"' in out.stderr
    assert d("volume", "ls", "-q").stdout.strip() == ""


def test_volume_prune(daemon):
    d = daemon.docker
    d("volume", "create", "keep")
    anon = d("volume", "create").stdout.strip()
    out = d("volume", "prune", "-f").stdout
    assert anon in out and "keep" not in out
    assert d("volume", "ls", "-q").stdout.split() == ["keep"]
    out = d("volume", "prune", "-f", "--filter", "all=true").stdout
    assert "keep" in out
    assert d("volume", "ls", "-q").stdout.strip() == ""


@pytest.fixture
def image(daemon, busybox_rootfs):
    daemon.docker("import", str(busybox_rootfs), "busybox:latest")
    return "busybox"


@needs_root
def test_run_with_a_named_volume_persists_data(daemon, image):
    d = daemon.docker
    d("run", "--rm", "-v", "appdata:/data", image, "sh", "-c", "echo first > /data/f")
    assert d("run", "--rm", "-v", "appdata:/data", image, "cat", "/data/f").stdout == "first\n"
    assert d("volume", "ls", "-q").stdout.split() == ["appdata"]


@needs_root
def test_volume_is_filled_from_the_image(daemon, image):
    out = daemon.docker("run", "--rm", "-v", "etc:/etc", image, "cat", "/etc/passwd").stdout
    assert out.startswith("root:x:0:0:root:/root:/bin/sh")
    files = os.listdir(daemon.root / "volumes/etc/_data")
    assert {"passwd", "group", "nsswitch.conf"} <= set(files)


@needs_root
def test_read_only_bind_mount(daemon, image, workdir):
    host = workdir / "share"
    host.mkdir()
    (host / "msg").write_text("from the host\n")
    d = daemon.docker
    assert d("run", "--rm", "-v", f"{host}:/share:ro", image, "cat", "/share/msg").stdout == "from the host\n"
    out = d("run", "--rm", "-v", f"{host}:/share:ro", image, "touch", "/share/new", check=False)
    assert out.returncode == 1 and "Read-only file system" in out.stderr
    d("run", "--rm", "-v", f"{host}:/share", image, "sh", "-c", "echo back > /share/new")
    assert (host / "new").read_text() == "back\n"


@needs_root
def test_tmpfs_mount(daemon, image):
    out = daemon.docker("run", "--rm", "--tmpfs", "/scratch:size=2m", image,
                        "sh", "-c", "grep ' /scratch ' /proc/mounts").stdout
    assert out.startswith("tmpfs /scratch tmpfs") and "size=2048k" in out
    out = daemon.docker("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1048576", image,
                        "sh", "-c", "grep ' /t ' /proc/mounts").stdout
    assert "size=1024k" in out


@needs_root
def test_mount_flag_errors(daemon, image):
    out = daemon.docker("run", "--rm", "--mount", "type=bind,source=/no/where,target=/x", image,
                        "true", check=False)
    assert out.returncode == 125
    assert 'invalid mount config for type "bind": bind source path does not exist: /no/where' in out.stderr
    out = daemon.docker("run", "--rm", "-v", "a1:/same", "-v", "/tmp:/same", image, "true", check=False)
    assert out.returncode == 125 and "Duplicate mount point: /same" in out.stderr
    assert daemon.docker("ps", "-aq").stdout.strip() == ""
    assert daemon.docker("volume", "ls", "-q").stdout.strip() == ""


@needs_root
def test_volume_in_use_and_rm_v(daemon, image):
    d = daemon.docker
    cid = d("create", "-v", "inuse:/d", "--mount", "type=volume,target=/anon", image,
            "true").stdout.strip()
    anon = [m["Name"] for m in json.loads(d("inspect", cid).stdout)[0]["Mounts"]
            if m["Destination"] == "/anon"]
    out = d("volume", "rm", "inuse", check=False)
    assert out.returncode != 0 and f"remove inuse: volume is in use - [{cid}]" in out.stderr
    d("rm", "-v", cid)
    assert d("volume", "ls", "-q").stdout.split() == ["inuse"]  # the anonymous one went with -v
    assert anon and anon[0] not in d("volume", "ls", "-q").stdout
    d("volume", "rm", "inuse")


@needs_root
def test_image_volume_becomes_a_filled_anonymous_volume(daemon, busybox_rootfs):
    d = daemon.docker
    d("import", "--change", "VOLUME /etc", str(busybox_rootfs), "withvol:latest")
    assert d("run", "--name", "uses-image-volume", "withvol", "cat", "/etc/group").stdout.startswith("root:x:0:")
    volumes = d("volume", "ls", "-q").stdout.split()
    assert len(volumes) == 1 and len(volumes[0]) == 64
    mounts = json.loads(d("inspect", "uses-image-volume").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", volumes[0], "/etc")]
    d("rm", "-v", "uses-image-volume")
    assert d("volume", "ls", "-q").stdout.strip() == ""
