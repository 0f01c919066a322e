"""FROM of an image that is not local: pulled from a registry (berth's own
registry server on 127.0.0.1), its progress in the build's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builderkit import Builds

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def second_daemon(bdaemon, workdir):
    """Another berthd (own root and socket) whose store is empty."""
    other = type(bdaemon)(root=workdir / "root2", socket=workdir / "berthd2.sock")
    other.root.mkdir()
    other.start()
    try:
        yield other
    finally:
        other.stop()


@pytest.fixture
def registry(workdir):
    """``berth registry serve`` on a free loopback port."""
    log = workdir / "registry.log"
    proc = subprocess.Popen([str(VENV_BIN / "berth"), "registry", "serve", "--addr", "127.0.0.1:0",
                             "--root", str(workdir / "registry")],
                            stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    if "serving http://" not in line:
        proc.kill()
        proc.wait()
        pytest.fail(f"registry did not start: {line!r} {log.read_text()}")
    address = line.split("serving http://", 1)[1].split()[0]
    yield address
    proc.terminate()
    proc.wait(10)


def test_from_pulls_a_missing_image(builds, registry, second_daemon, workdir):
    remote = f"{registry}/base/busybox:1"
    builds.daemon.berth("tag", "busybox:latest", remote)
    builds.daemon.berth("push", remote)
    fresh = Builds(second_daemon, workdir / "fresh")
    ctx = fresh.context({"Dockerfile": f"FROM {remote}\nRUN echo pulled > /p\n"})
    out = fresh.build(ctx, "-t", "from-registry").stdout
    assert f"Step 1/2 : FROM {remote}" in out
    assert "Pull complete" in out or "Downloaded newer image" in out
    assert fresh.output("from-registry", "cat", "/p") == "pulled\n"
    # --pull asks the registry again even though the image is local now
    out = fresh.build(ctx, "--pull", "-t", "from-registry").stdout
    assert "Image is up to date" in out or "Status:" in out
    fresh.assert_clean()
