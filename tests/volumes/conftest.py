"""Fixtures for the volume tests: a VolumeService on a private data root, image
layers made on disk, and a busybox image in a test daemon."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from berth.config import Config
from berth.events import EventBus
from berth.volumes import VolumeService

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))


@pytest.fixture
def service(workdir):
    events = EventBus()
    svc = VolumeService(Config(root=str(workdir / "root")), events)
    svc.test_events = events
    yield svc
    svc.close()


@pytest.fixture
def layers(workdir) -> list[str]:
    """Two image layers, top first: the base has /data (owned 1000:1000, mode
    0750) with a file, a hard link pair, a symlink, a fifo, an xattr and a
    file the top layer deletes (whiteout); /etc/passwd; /file is a file."""
    base = workdir / "layer-base"
    top = workdir / "layer-top"
    (base / "data" / "sub").mkdir(parents=True)
    (base / "etc").mkdir()
    (base / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home:/bin/sh\n")
    (base / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:\n")
    (base / "data" / "hello.txt").write_text("hello from the image\n")
    (base / "data" / "sub" / "deep.txt").write_text("deep\n")
    os.link(base / "data" / "hello.txt", base / "data" / "hardlink.txt")
    os.symlink("hello.txt", base / "data" / "link")
    os.mkfifo(base / "data" / "fifo")
    (base / "data" / "gone.txt").write_text("deleted by the top layer\n")
    os.setxattr(base / "data" / "hello.txt", "user.origin", b"image")
    os.chown(base / "data", 1000, 1000)
    os.chmod(base / "data", 0o750)
    os.utime(base / "data" / "sub", ns=(1_000_000_000, 1_000_000_000))
    (base / "file").write_text("not a directory\n")
    (top / "data").mkdir(parents=True)
    os.chown(top / "data", 1000, 1000)
    os.chmod(top / "data", 0o750)
    os.mknod(top / "data" / "gone.txt", 0o600 | 0o020000, os.makedev(0, 0))  # whiteout
    (top / "data" / "top.txt").write_text("from the top layer\n")
    return [str(top), str(base)]


@pytest.fixture
def api(daemon):
    from unixhttp import API
    return API(str(daemon.socket))


@pytest.fixture
def client(daemon):
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=120)
    yield c
    c.close()


@pytest.fixture
def busybox(api, busybox_rootfs) -> str:
    """The busybox example image, imported as busybox:latest; its ID."""
    reply = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest",
                     body=busybox_rootfs.read_bytes())
    assert reply.status == 200, reply.body
    return reply.json_lines()[-1]["status"]
