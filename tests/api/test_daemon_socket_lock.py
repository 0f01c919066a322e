"""``<socket>.lock``: one berthd per socket path, from before it binds the socket
until it exits, so the window between bind and listen (connects refused) is never
taken for a stale socket by a second daemon."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from proctools import end, starting_daemon
from unixhttp import API

VENV_BIN = Path(sys.executable).parent


def run_berthd(root, sock, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "berthd"), "--root", str(root), "--host", f"unix://{sock}"],
                          capture_output=True, text=True, timeout=timeout)


def refused(path) -> bool:
    """Bound but not listening (or nothing there): what the old code called stale."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def pings(path) -> bool:
    try:
        return API(str(path)).get("/_ping").status == 200
    except OSError:
        return False


@pytest.fixture
def berthds():
    """start(root, sock) -> Popen; every berthd started is ended (by PID) afterwards,
    continued first if the test left it stopped."""
    procs = []

    def start(root, sock):
        log = open(f"{root}.log", "ab")
        proc = subprocess.Popen([str(VENV_BIN / "berthd"), "--root", str(root), "--host", f"unix://{sock}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        end(proc)


def wait_serving(proc, sock, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"berthd exited with {proc.returncode}"
        if pings(sock):
            return
        time.sleep(0.02)
    raise AssertionError(f"berthd did not answer on {sock}")


def stop_between_bind_and_listen(proc, sock) -> None:
    """SIGSTOP a starting berthd as soon as its socket exists: the window where
    connects are refused (start-up takes a few hundred ms past the bind)."""
    deadline = time.monotonic() + 15
    while not os.path.exists(sock):
        assert proc.poll() is None and time.monotonic() < deadline, "berthd never bound its socket"
        time.sleep(0.0005)
    proc.send_signal(signal.SIGSTOP)
    if not refused(sock):
        pytest.skip("berthd was already listening when stopped (machine too slow to catch the window)")


def keep_inode(path, workdir) -> Path:
    """A hard link to the socket file, so its inode number cannot be recycled by
    the replacement and "replaced" is a reliable comparison."""
    link = workdir / "old-socket"
    os.link(path, link)
    return link


def test_the_lock_names_the_daemon_and_goes_with_a_clean_stop(workdir, berthds):
    sock = workdir / "s.sock"
    proc = berthds(workdir / "root", sock)
    wait_serving(proc, sock)
    lock = Path(f"{sock}.lock")
    assert lock.read_text() == f"{proc.pid}\n"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    proc.terminate()
    assert proc.wait(10) == 0
    assert not sock.exists() and not lock.exists()


def test_refuses_a_socket_whose_daemon_is_still_starting(workdir, berthds):
    path = workdir / "s.sock"
    with starting_daemon(path):
        inode = os.lstat(path).st_ino
        assert refused(path)
        proc = run_berthd(workdir / "other-root", path)
        assert proc.returncode == 1
        assert (f"cannot serve on {path}: another berthd (pid {os.getpid()}) owns it "
                f"({path}.lock is locked)") in proc.stderr
        assert os.lstat(path).st_ino == inode  # not unlinked as stale
        assert Path(f"{path}.lock").read_text() == f"{os.getpid()}\n"
    # Its holder gone without cleaning up (a crash): the socket is stale now and replaced.
    old = keep_inode(path, workdir)
    proc = berthds(workdir / "root", path)
    wait_serving(proc, path)
    assert not os.path.samefile(path, old)
    assert Path(f"{path}.lock").read_text() == f"{proc.pid}\n"


def test_a_real_daemon_between_bind_and_listen_keeps_its_socket(workdir, berthds):
    path = workdir / "s.sock"
    first = berthds(workdir / "first", path)
    stop_between_bind_and_listen(first, path)
    inode = os.lstat(path).st_ino
    second = run_berthd(workdir / "second", path)
    assert second.returncode == 1
    assert f"cannot serve on {path}: another berthd (pid {first.pid}) owns it" in second.stderr
    assert os.lstat(path).st_ino == inode
    first.send_signal(signal.SIGCONT)
    wait_serving(first, path)
    assert os.lstat(path).st_ino == inode
    assert API(str(path)).get("/info").json()["DockerRootDir"] == str(workdir / "first")


def test_a_crashed_daemons_socket_and_lock_file_are_replaced(workdir, berthds):
    path = workdir / "s.sock"
    crashed = berthds(workdir / "a", path)
    wait_serving(crashed, path)
    crashed.kill()
    crashed.wait()
    lock = Path(f"{path}.lock")
    assert path.exists() and lock.read_text() == f"{crashed.pid}\n"  # left behind
    old = keep_inode(path, workdir)
    proc = berthds(workdir / "b", path)  # another root: only the socket is shared
    wait_serving(proc, path)
    assert not os.path.samefile(path, old)
    assert lock.read_text() == f"{proc.pid}\n"
    assert API(str(path)).get("/info").json()["DockerRootDir"] == str(workdir / "b")


def test_cli_lock_probes_do_not_stop_a_daemon_from_starting(workdir, berthds):
    from berth_cli.autostart import socket_lock_holder
    path = workdir / "s.sock"
    holders, done = set(), threading.Event()

    def probe():  # as a CLI waiting for it would, as often as possible
        while not done.is_set():
            holders.add(socket_lock_holder(str(path)))

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        proc = berthds(workdir / "root", path)
        wait_serving(proc, path)
    finally:
        done.set()
        prober.join()
    assert str(proc.pid) in holders
