"""berthd as a process: socket and root ownership, signals, side-by-side daemons."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unixhttp import API

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def Daemon(daemon):
    """The conftest's Daemon class, for tests that start more daemons (each
    with a root of its own next to the fixture's)."""
    return type(daemon)


def run_berthd(root, sock, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "berthd"), "--root", str(root), "--host", f"unix://{sock}"],
                          capture_output=True, text=True, timeout=timeout)


def test_socket_and_pidfile(daemon):
    mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
    assert mode == 0o660
    assert (daemon.root / "berthd.pid").read_text().strip() == str(daemon.proc.pid)


def test_second_daemon_on_same_root_refuses(daemon, workdir):
    proc = run_berthd(daemon.root, workdir / "other.sock")
    assert proc.returncode == 1
    assert f"data root {daemon.root} is in use by another berthd (pid {daemon.proc.pid})" in proc.stderr
    assert not (workdir / "other.sock").exists()
    assert API(str(daemon.socket)).get("/_ping").status == 200


def test_second_daemon_on_same_socket_refuses(daemon, workdir):
    other_root = workdir / "other-root"
    inode = os.lstat(daemon.socket).st_ino
    proc = run_berthd(other_root, daemon.socket)
    assert proc.returncode == 1
    assert (f"cannot serve on {daemon.socket}: another berthd (pid {daemon.proc.pid}) owns it "
            f"({daemon.socket}.lock is locked)") in proc.stderr
    assert os.lstat(daemon.socket).st_ino == inode  # untouched, not replaced
    assert API(str(daemon.socket)).get("/_ping").status == 200


def test_stale_socket_is_replaced(workdir, Daemon):
    path = workdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # left behind, as by a daemon killed with SIGKILL
    d = Daemon(root=workdir / "stale-root", socket=path)
    d.start()
    try:
        assert API(str(path)).get("/_ping").body == b"OK"
    finally:
        d.stop()


def test_refuses_a_path_that_is_not_a_socket(workdir):
    path = workdir / "file.sock"
    path.write_text("precious")
    proc = run_berthd(workdir / "root", path)
    assert proc.returncode == 1
    assert "exists and is not a socket" in proc.stderr
    assert path.read_text() == "precious"


def test_rejects_a_tcp_host(workdir):
    proc = subprocess.run([str(VENV_BIN / "berthd"), "--root", str(workdir / "r"),
                           "--host", "tcp://127.0.0.1:2375"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unsupported host 'tcp://127.0.0.1:2375'" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(daemon, sig):
    proc = daemon.proc
    daemon.stop(sig)
    assert proc.returncode == 0
    assert not daemon.socket.exists()
    # The lock went with the process: the same root can be served again.
    daemon.start()
    assert API(str(daemon.socket)).get("/_ping").status == 200


def test_sighup_does_not_stop_the_daemon(daemon):
    daemon.proc.send_signal(signal.SIGHUP)
    assert API(str(daemon.socket)).get("/_ping").status == 200
    assert daemon.proc.poll() is None


def test_shutdown_ends_open_event_streams(daemon):
    conn, resp = API(str(daemon.socket)).open_stream("/events")
    try:
        assert resp.status == 200
        proc = daemon.proc
        daemon.stop()
        assert proc.returncode == 0
        assert resp.read() == b""  # the stream ended cleanly, with no partial event
    finally:
        conn.close()


def test_two_daemons_side_by_side(workdir, Daemon, busybox_rootfs):
    a = Daemon(root=workdir / "a" / "root", socket=workdir / "a.sock")
    b = Daemon(root=workdir / "b" / "root", socket=workdir / "b.sock")
    for d in (a, b):
        d.root.mkdir(parents=True)
    a.start()
    try:
        b.start()
        try:
            api_a, api_b = API(str(a.socket)), API(str(b.socket))
            info_a, info_b = api_a.get("/info").json(), api_b.get("/info").json()
            assert info_a["DockerRootDir"] == str(a.root)
            assert info_b["DockerRootDir"] == str(b.root)
            assert info_a["ID"] != info_b["ID"]

            reply = api_a.post("/images/create?fromSrc=-&repo=only-in-a",
                               body=busybox_rootfs.read_bytes())
            assert reply.status == 200, reply.body
            assert [i["RepoTags"] for i in api_a.get("/images/json").json()] == [["only-in-a:latest"]]
            assert api_b.get("/images/json").json() == []
            assert api_b.get("/images/only-in-a/json").status == 404
            # Each daemon reports only its own events.
            now = f"{time.time():.9f}"
            actions = {e["Action"] for e in api_a.get(f"/events?since=0&until={now}").json_lines()}
            assert actions == {"tag", "import"}
            assert api_b.get(f"/events?since=0&until={now}").json_lines() == []
        finally:
            b.stop()
        # Stopping one leaves the other serving.
        assert API(str(a.socket)).get("/images/only-in-a/json").status == 200
        assert a.socket.exists()
    finally:
        a.stop()
