"""Auto-start and ``<socket>.lock``: a berthd that holds the socket's lock is
starting (its socket bound, connects refused) or serving, so the CLI waits for it
instead of starting a second daemon that would take the socket over."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from cli_fakeapi import FakeAPI, Reply
from proctools import end, starting_daemon
from test_cli_autostart import berthd_pids, stop

from berth_cli import autostart

VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture
def setup(workdir, run_cli):
    """(socket, root, cli): auto-start enabled for a root of its own; any berthd
    started for that root is stopped afterwards."""
    sock, root = workdir / "s.sock", workdir / "root"

    def cli(*argv):
        return run_cli(*argv, host=f"unix://{sock}", env={"BERTH_NO_AUTOSTART": "", "BERTH_ROOT": str(root)})

    yield sock, root, cli
    for pid in berthd_pids(root):
        stop(pid)


def later(delay, fn):
    t = threading.Timer(delay, fn)
    t.start()
    return t


def test_waits_for_a_starting_daemon_and_says_so_if_it_never_answers(setup, monkeypatch):
    sock, root, cli = setup
    monkeypatch.setattr(autostart, "START_TIMEOUT", 1.0)
    with starting_daemon(sock):
        inode = os.lstat(sock).st_ino
        t0 = time.monotonic()
        r = cli("images", "-q")
        assert time.monotonic() - t0 >= 1.0
        assert (r.code, r.err) == (1, f"berthd (pid {os.getpid()}) holds {sock}.lock but did not answer "
                                      f"on unix://{sock} within 1 seconds\n")
        assert os.lstat(sock).st_ino == inode
    assert berthd_pids(root) == []
    assert not (root / "berthd.log").exists()  # no daemon was even tried


def test_uses_the_starting_daemon_once_it_answers(setup):
    sock, root, cli = setup
    fake = []

    def listen():  # the starting daemon now serves (still holding its lock)
        os.unlink(sock)
        api = FakeAPI(str(sock))
        api.route("GET", "/images/json", Reply(json_body=[]))
        fake.append(api)

    with starting_daemon(sock):
        timer = later(0.5, listen)
        try:
            t0 = time.monotonic()
            r = cli("images", "-q")
            assert time.monotonic() - t0 >= 0.5
        finally:
            timer.join()
            for api in fake:
                api.close()
    assert (r.code, r.out, r.err) == (0, "", "")
    assert fake[0].last("GET", "/images/json")
    assert berthd_pids(root) == [] and not (root / "berthd.log").exists()


def test_starts_its_own_daemon_when_the_holder_lets_go_without_answering(setup):
    sock, root, cli = setup
    with starting_daemon(sock) as release:
        timer = later(0.5, release)  # it failed: lock released, a stale socket left
        try:
            r = cli("info", "--format", "{{.DockerRootDir}}")
        finally:
            timer.join()
    assert (r.code, r.out) == (0, f"{root}\n"), r.err
    assert len(berthd_pids(root)) == 1


def test_a_real_daemon_between_bind_and_listen_is_waited_for(workdir):
    """The bug: berthd A (its own root) bound but not listening yet; a CLI with
    another root must not start a daemon that takes A's socket over."""
    sock, root_a, root_b = workdir / "s.sock", workdir / "a", workdir / "b"
    env = dict(os.environ, BERTH_ROOT=str(root_b), BERTH_HOST=f"unix://{sock}",
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    env.pop("BERTH_NO_AUTOSTART", None)
    log = open(workdir / "a.log", "ab")
    a = subprocess.Popen([f"{VENV_BIN}/berthd", "--root", str(root_a), "--host", f"unix://{sock}"],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    cli = None
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            assert a.poll() is None and time.monotonic() < deadline, "berthd never bound its socket"
            time.sleep(0.0005)
        a.send_signal(signal.SIGSTOP)
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(sock))
            pytest.skip("berthd was already listening when stopped (machine too slow to catch the window)")
        except ConnectionRefusedError:
            pass
        finally:
            probe.close()
        inode = os.lstat(sock).st_ino
        cli = subprocess.Popen([f"{VENV_BIN}/berth", "info", "--format", "{{.DockerRootDir}}"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert cli.poll() is None  # still waiting for A
        assert berthd_pids(root_b) == [] and not (root_b / "berthd.log").exists()
        a.send_signal(signal.SIGCONT)
        out, err = cli.communicate(timeout=30)
        assert (cli.returncode, out) == (0, f"{root_a}\n"), err
        assert os.lstat(sock).st_ino == inode
        assert berthd_pids(root_b) == []
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in berthd_pids(root_b):
            stop(pid)
        end(a)
