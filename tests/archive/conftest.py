"""Fixtures for the container filesystem tests: raw HTTP and docker-py clients
of the test's daemon, the busybox image in it, containers made from it."""

from __future__ import annotations

import os
import sys
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
