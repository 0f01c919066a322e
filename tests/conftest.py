"""Shared fixtures: a private berthd per test (own data root and socket), the
busybox rootfs tarball, and helpers to run the CLIs against that daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ROOTFS = REPO / "examples" / "busybox" / "rootfs.tar"


def _socket_answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


@dataclass
class Daemon:
    """A berthd with its own root and socket, for one test."""

    root: Path
    socket: Path
    proc: subprocess.Popen | None = None
    log: Path = field(default=None)  # type: ignore[assignment]

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BERTH_ROOT=str(self.root), BERTH_HOST=self.host, DOCKER_HOST=self.host,
                   PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start(self, timeout: float = 15.0) -> None:
        self.log = self.root.parent / "berthd.log"
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "berthd"), "--root", str(self.root), "--host", self.host],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if _socket_answers(str(self.socket)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"berthd did not answer on {self.socket}:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def berth(self, *args: str, input: bytes | str | None = None, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the berth CLI against this daemon; text output."""
        return _run([str(VENV_BIN / "berth"), *args], self.env, input, check, timeout)

    def docker(self, *args: str, input: bytes | str | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real docker CLI against this daemon."""
        docker = shutil.which("docker")
        if docker is None:
            pytest.skip("docker CLI not installed")
        env = self.env
        env["DOCKER_CONFIG"] = str(self.root.parent / "docker-config")
        return _run([docker, *args], env, input, check, timeout)


def _run(argv, env, input, check, timeout) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=text, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


@pytest.fixture
def workdir():
    """A private scratch directory, outside pytest's tmp tree (short socket paths)."""
    d = Path(tempfile.mkdtemp(prefix="berth-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(workdir):
    """A running berthd with its own data root and socket, stopped afterwards."""
    d = Daemon(root=workdir / "root", socket=workdir / "berthd.sock")
    d.root.mkdir()
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """The busybox rootfs tarball from examples/ (built once)."""
    if not ROOTFS.exists():
        subprocess.run(["sh", str(REPO / "examples/busybox/make-rootfs.sh"), str(ROOTFS)], check=True)
    return ROOTFS
