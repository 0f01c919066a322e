"""The real docker CLI against berthd.

Each test runs once per docker client installed: the one on PATH (v28 here)
and Debian's docker.io (v20.10, API 1.41) when it is a different binary, so
both version negotiations are exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _docker_binaries() -> list[str]:
    found = []
    for candidate in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            if real not in {os.path.realpath(f) for f in found}:
                found.append(candidate)
    return found


def _client_version(binary: str) -> str:
    out = subprocess.run([binary, "version", "--format", "{{.Client.Version}}"],
                         capture_output=True, text=True, env={"DOCKER_HOST": "unix:///nonexistent",
                                                              "PATH": os.environ.get("PATH", "")})
    return out.stdout.strip() or "unknown"


class DockerCLI:
    def __init__(self, binary: str, daemon):
        self.binary = binary
        self.daemon = daemon
        self.version = _client_version(binary)

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        env = self.daemon.env
        env["DOCKER_CONFIG"] = str(Path(self.daemon.root).parent / "docker-config")
        env.pop("DOCKER_API_VERSION", None)
        text = not isinstance(input, bytes)
        proc = subprocess.run([self.binary, *args], env=env, input=input, capture_output=True,
                              text=text, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode} "
                                 f"(client {self.version})\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc


@pytest.fixture(params=_docker_binaries() or [None], ids=lambda b: b or "no-docker")
def docker(request, daemon) -> DockerCLI:
    if request.param is None:
        pytest.skip("no docker CLI installed")
    return DockerCLI(request.param, daemon)


@pytest.fixture
def busybox(docker, busybox_rootfs) -> str:
    """busybox:latest imported through `docker import`; returns its ID."""
    out = docker("import", str(busybox_rootfs), "busybox:latest").stdout.strip()
    assert out.startswith("sha256:"), out
    return out
