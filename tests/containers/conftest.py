"""Fixtures for the container tests: a daemon with the busybox image (one per
test, or one per module for read-mostly tests) and a raw API client."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from ctrkit import API, Daemon

@pytest.fixture
def busybox(daemon, busybox_rootfs) -> str:
    """busybox:latest in the test's daemon; returns its image ID."""
    out = daemon.docker("import", str(busybox_rootfs), "busybox:latest").stdout.strip()
    assert out.startswith("sha256:"), out
    return out


@pytest.fixture
def api(daemon) -> API:
    return API(str(daemon.socket))


@pytest.fixture(scope="module")
def shared(busybox_rootfs):
    """One daemon with busybox for the read-mostly tests of a module (each test
    names its own containers)."""
    workdir = Path(tempfile.mkdtemp(prefix="berth-ctr-"))
    d = Daemon(root=workdir / "root", socket=workdir / "berthd.sock")
    d.root.mkdir()
    d.start()
    try:
        d.docker("import", str(busybox_rootfs), "busybox:latest")
        yield d
    finally:
        try:
            ids = d.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                d.docker("rm", "-f", *ids, check=False)
        finally:
            d.stop()
            shutil.rmtree(workdir, ignore_errors=True)
