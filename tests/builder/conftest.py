"""Fixtures for builder tests: a daemon that has the busybox example image
(built by berth from examples/busybox: ``FROM scratch`` + ``ADD rootfs.tar /``)."""

from __future__ import annotations

import shutil

import pytest

from builderkit import REPO, Builds


@pytest.fixture
def bdaemon(daemon, busybox_rootfs):
    """A running berthd whose store holds ``busybox:latest``."""
    ctx = daemon.root.parent / "busybox-ctx"
    ctx.mkdir()
    shutil.copy(REPO / "examples" / "busybox" / "Dockerfile", ctx / "Dockerfile")
    shutil.copy(busybox_rootfs, ctx / "rootfs.tar")
    daemon.berth("build", "-q", "-t", "busybox:latest", str(ctx))
    return daemon


@pytest.fixture
def builds(bdaemon, workdir) -> "Builds":
    return Builds(bdaemon, workdir)
