"""Private engines for side-by-side benchmarks: a berthd and a stock dockerd,
each with its own data root and socket, started here and stopped afterwards.

The benchmark never touches images or containers it did not create: both
engines run on data roots of their own under a scratch directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def _answers(sock: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


class Engine:
    """One engine under test: how to start it and how to call its CLI."""

    name = "?"

    def __init__(self, scratch: Path):
        self.scratch = scratch / self.name
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.scratch / "engine.sock")
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def cli(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = env["BERTH_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.scratch / "client-config")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.cli(), *args], env=self.env(), input=input,
                              capture_output=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: exit {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        return proc

    def _wait(self, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {log}")
            if _answers(self.socket):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer in {timeout}s; see {log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pids(self) -> list[int]:
        """PIDs of the engine's daemon processes (for RSS)."""
        return [self.proc.pid] if self.proc else []


class Berth(Engine):
    name = "berth"

    def cli(self) -> list[str]:
        return [str(VENV_BIN / "berth")]

    def start(self) -> None:
        root = self.scratch / "root"
        log = self.scratch / "berthd.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "berthd"), "--root", str(root), "--host", self.host],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(30, log)


class Docker(Engine):
    """Stock Docker (Debian's docker.io) on a private data root and socket."""

    name = "docker"

    def cli(self) -> list[str]:
        return [shutil.which("docker") or "docker"]

    def start(self) -> None:
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd not installed (make bench installs docker.io)")
        log = self.scratch / "dockerd.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.scratch / "root"),
                 "--exec-root", str(self.scratch / "exec"), "-H", self.host,
                 "--pidfile", str(self.scratch / "dockerd.pid")],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(60, log)

    def pids(self) -> list[int]:
        """dockerd and the containerd it started (both are Docker's idle cost)."""
        pids = super().pids()
        if pids:
            out = subprocess.run(["pgrep", "-P", str(pids[0])], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        return pids


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
