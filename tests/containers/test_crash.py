"""Containers, logs and exit codes survive `kill -9` of berthd: a restarted
daemon adopts running containers, records exits that happened while it was
down, applies restart policies and removes half-created containers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from ctrkit import inspect, leftovers, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def _crash_and_restart(daemon, while_down=None):
    daemon.stop(signal.SIGKILL)
    if while_down is not None:
        while_down()
    daemon.start()


def test_containers_survive_a_daemon_crash(daemon, busybox):
    long_id = daemon.docker("run", "-d", "--name", "long", "busybox", "sh", "-c",
                            "echo started; echo warn >&2; sleep 1000").stdout.strip()
    daemon.docker("run", "-d", "--name", "short", "busybox", "sh", "-c",
                  "echo bye; sleep 1; exit 4")
    daemon.docker("run", "--name", "before", "busybox", "sh", "-c", "echo old; exit 2",
                  check=False)
    wait_for(lambda: "started" in daemon.docker("logs", "long").stdout, what="output")
    pid = inspect(daemon, "long")["State"]["Pid"]

    def let_short_exit():
        # Wait for the exit record the monitor writes while no daemon runs.
        short = daemon.root / "containers"
        wait_for(lambda: any((d / "exit.json").exists() and "bye" in (d / f"{d.name}-json.log")
                             .read_text() for d in short.iterdir() if d.name != long_id),
                 what="short's exit while the daemon is down")

    _crash_and_restart(daemon, let_short_exit)
    rows = dict(line.split() for line in daemon.docker(
        "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines())
    assert rows == {"long": "running", "short": "exited", "before": "exited"}
    long = inspect(daemon, "long")["State"]
    assert long["Pid"] == pid and os.path.exists(f"/proc/{pid}")
    assert inspect(daemon, "short")["State"]["ExitCode"] == 4
    assert inspect(daemon, "before")["State"]["ExitCode"] == 2
    logs = daemon.docker("logs", "long")
    assert (logs.stdout, logs.stderr) == ("started\n", "warn\n")
    assert daemon.docker("logs", "short").stdout == "bye\n"
    # The adopted container is fully manageable: exec, stop (exit seen by the new daemon), rm.
    assert daemon.docker("exec", "long", "echo", "hello").stdout == "hello\n"
    daemon.docker("stop", "-t", "1", "long")
    assert inspect(daemon, "long")["State"]["ExitCode"] == 137
    daemon.docker("rm", "long", "short", "before")
    assert leftovers(daemon, long_id) == []


def test_restart_policies_after_a_crash(daemon, busybox):
    daemon.docker("run", "-d", "--name", "always", "--restart", "always", "busybox",
                  "sleep", "1000")
    daemon.docker("run", "-d", "--name", "fails", "--restart", "on-failure:1", "busybox",
                  "sh", "-c", "sleep 1; exit 3")
    daemon.docker("run", "-d", "--name", "stopped", "--restart", "unless-stopped", "busybox",
                  "sleep", "1000")
    daemon.docker("stop", "-t", "0", "stopped")
    always_pid = inspect(daemon, "always")["State"]["Pid"]

    def kill_always():
        os.kill(always_pid, signal.SIGKILL)
        time.sleep(1.5)  # "fails" exits while the daemon is down too

    _crash_and_restart(daemon, kill_always)
    # "always" died while the daemon was down: restarted at boot.
    wait_for(lambda: inspect(daemon, "always")["State"]["Running"], what="always restarted")
    assert inspect(daemon, "always")["State"]["Pid"] != always_pid

    def fails_settled():
        info = inspect(daemon, "fails")
        return info["State"]["Status"] == "exited" and info["RestartCount"] == 1

    wait_for(fails_settled, what="on-failure:1 used up")
    assert inspect(daemon, "fails")["State"]["ExitCode"] == 3
    # Stopped by the user: unless-stopped leaves it alone.
    assert inspect(daemon, "stopped")["State"]["Status"] == "exited"
    daemon.docker("rm", "-f", "always", "fails", "stopped")


def test_half_created_container_is_removed_at_start(daemon, busybox):
    cid = daemon.docker("create", "--name", "whole", "busybox", "true").stdout.strip()
    daemon.stop(signal.SIGKILL)
    # What a crash in the middle of create leaves: a record not marked complete,
    # and its directory.
    half = "ab" * 32
    db = sqlite3.connect(daemon.root / "metadata.db")
    row = db.execute("SELECT record FROM containers WHERE id=?", (cid,)).fetchone()
    record = json.loads(row[0])
    record["bundle"] = str(daemon.root / "containers" / half)
    db.execute("INSERT INTO containers(id, name, image_id, created_ns, complete, record)"
               " VALUES (?, 'half', ?, 0, 0, ?)", (half, busybox, json.dumps(record)))
    db.commit()
    db.close()
    (daemon.root / "containers" / half / "upper").mkdir(parents=True)
    daemon.start()
    names = daemon.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert names == ["whole"]
    assert not (daemon.root / "containers" / half).exists()
    # The name of the half-created container is free again.
    daemon.docker("create", "--name", "half", "busybox", "true")
