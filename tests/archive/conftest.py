"""Fixtures for the container filesystem tests: raw HTTP and docker-py clients
of the test's daemon, the busybox image in it, containers made from it."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))


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
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    reply = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest",
                     body=busybox_rootfs.read_bytes())
    assert reply.status == 200, reply.body
    return reply.json_lines()[-1]["status"]


def make_tar(files: dict[str, bytes | None], *, mode: int = 0o644, owner=(0, 0)) -> bytes:
    """A tar of regular files (bytes) and directories (None), in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.uid, info.gid = owner
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    tar = tarfile.open(fileobj=io.BytesIO(data))
    return {m.name: m for m in tar.getmembers()}


def post_json(api, path, body):
    return api.post(path, body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
