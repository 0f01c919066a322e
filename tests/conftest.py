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


def release_root(root: Path) -> None:
    """Undo what a test's engine left on the host under `root`: containers
    outlive their daemon by design, so their monitors (and the containers they
    own) are ended by PID, then mounts and this root's cgroups are removed."""
    prefix = str(root) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"berth-monitor") and any(
                a.decode(errors="replace").startswith(prefix) for a in argv[1:]):
            children = Path(f"/proc/{entry}/task/{entry}/children")
            pids = children.read_text().split() if children.exists() else []
            for pid in [*pids, entry]:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for mountpoint in reversed(mounts):
        if mountpoint.startswith(prefix):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    from berth.cgroups import CgroupManager, parent_name
    # Engines keep their data root somewhere under `root`: each has its own cgroup parent.
    for data_root in [root, *root.glob("*"), *root.glob("*/*")]:
        if data_root.is_dir() and not data_root.is_symlink():
            _remove_cgroups(CgroupManager(parent_name(str(data_root))))


def _remove_cgroups(manager) -> None:
    parent = manager.parent
    for controller in getattr(manager, "controllers", None) or [""]:
        base = os.path.join(manager.mount, controller, parent)
        if not os.path.isdir(base):
            continue
        for child in os.listdir(base):
            path = os.path.join(base, child)
            if os.path.isdir(path):
                for _ in range(100):  # killed tasks leave their cgroup asynchronously
                    try:
                        os.rmdir(path)
                        break
                    except OSError:
                        time.sleep(0.02)
        try:
            os.rmdir(base)
        except OSError:
            pass


@pytest.fixture
def workdir():
    """A private scratch directory, outside pytest's tmp tree (short socket paths).
    Whatever an engine rooted in it left running or mounted is removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="berth-test-"))
    yield d
    release_root(d)
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


class PrivateDockerd:
    """A stock dockerd with its own data root, exec root and socket; no iptables,
    no bridge (tests only build, run with --network none and move images)."""

    def __init__(self, base: Path, extra_args: tuple[str, ...] = (), text: bool = True):
        self.dir = base / "dockerd"
        self.dir.mkdir()
        self.socket = self.dir / "d.sock"
        self.log = self.dir / "dockerd.log"
        self.text = text
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.dir / "root"), "--exec-root",
                 str(self.dir / "exec"), "-H", f"unix://{self.socket}", "--pidfile",
                 str(self.dir / "dockerd.pid"), "--iptables=false", "--ip6tables=false",
                 "--bridge=none", *extra_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log.read_text()[-2000:]}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("dockerd did not answer")

    def docker(self, *args: str, input=None, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", DOCKER_BUILDKIT="0",
                   DOCKER_CONFIG=str(self.dir / "client"))
        env.pop("DOCKER_CONTEXT", None)
        proc = subprocess.run(["docker", *args], env=env, input=input, capture_output=True,
                              text=self.text, timeout=300)
        if check and proc.returncode != 0:
            err = proc.stderr if self.text else proc.stderr.decode(errors="replace")
            raise AssertionError(f"docker {' '.join(args)}: {err}")
        return proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # dockerd unmounts what it mounted; anything left under our dirs goes.
        with open("/proc/mounts") as f:
            leftovers = [line.split()[1] for line in f if str(self.dir) in line.split()[1]]
        for mount in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)


@pytest.fixture
def private_dockerd(workdir):
    """start(*dockerd_args, text=True) -> PrivateDockerd in the workdir; skips the
    test where Docker is not installed; stopped afterwards."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd is not installed")
    started: list[PrivateDockerd] = []

    def start(*extra_args: str, text: bool = True) -> PrivateDockerd:
        started.append(PrivateDockerd(workdir, extra_args, text))
        return started[-1]
    yield start
    for engine in started:
        engine.stop()
