"""The container lifecycle through the docker CLI: detached runs, logs, stop,
exec, pause, top, stats, wait, kill, rename, ps filters, inspect, restart
policies and OOM kills."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ctrkit import inspect, leftovers, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

LOOP = "i=0; while true; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done"


def test_detached_logs_follow_stop_rm(daemon, busybox):
    cid = daemon.docker("run", "-d", "--name", "looper", "busybox", "sh", "-c",
                        "trap 'echo bye; exit 0' TERM; " + LOOP.replace("sleep 0.1", "sleep 0.1 & wait")
                        ).stdout.strip()
    wait_for(lambda: "line 3" in daemon.docker("logs", "looper").stdout, what="output")
    env = daemon.env
    env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
    follower = subprocess.Popen(["docker", "logs", "-f", "looper"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: daemon.docker("logs", "looper").stdout.count("line") > 8, what="more output")
        daemon.docker("stop", "looper")
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    # -f ended by itself when the container stopped, with everything up to the end.
    assert follower.returncode == 0
    assert out.startswith("line 0\nline 1\n") and out.endswith("bye\n")
    assert err.startswith("err 0\nerr 1\n")
    state = inspect(daemon, "looper")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 0, False)
    # stdout and stderr are kept apart, with --tail and timestamps.
    tail = daemon.docker("logs", "--tail", "2", "looper")
    assert tail.stdout.splitlines()[-1] == "bye"
    assert len(tail.stdout.splitlines()) + len(tail.stderr.splitlines()) == 2
    stamped = daemon.docker("logs", "-t", "--tail", "1", "looper").stdout
    assert stamped.endswith(" bye\n") and stamped[:4].isdigit() and "T" in stamped.split()[0]
    daemon.docker("rm", "looper")
    assert leftovers(daemon, cid) == []


def test_stop_escalates_to_sigkill(daemon, busybox):
    # sh as PID 1 ignores SIGTERM without a trap: stop must kill it after the timeout.
    daemon.docker("run", "-d", "--name", "stubborn", "busybox", "sleep", "1000")
    daemon.docker("stop", "-t", "1", "stubborn")
    state = inspect(daemon, "stubborn")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    # A stop signal of the container's own choosing.
    daemon.docker("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c",
                  "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done")
    # PID 1 ignores a signal it has no handler for yet: stop only once the trap is set.
    deadline = time.monotonic() + 30
    while "ready" not in daemon.docker("logs", "usr1").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.docker("stop", "usr1")
    assert inspect(daemon, "usr1")["State"]["ExitCode"] == 42


def test_exec(daemon, busybox):
    daemon.docker("run", "-d", "--name", "host1", "-e", "A=1", "-w", "/tmp", "busybox",
                  "sleep", "1000")
    out = daemon.docker("exec", "-e", "B=2", "host1", "sh", "-c", "echo $A$B; pwd; hostname")
    assert out.stdout.splitlines() == ["12", "/tmp", inspect(daemon, "host1")["Id"][:12]]
    proc = daemon.docker("exec", "host1", "sh", "-c", "echo e >&2; exit 9", check=False)
    assert (proc.returncode, proc.stderr) == (9, "e\n")
    assert daemon.docker("exec", "-u", "nobody", "-w", "/", "host1", "id", "-u").stdout == "65534\n"
    assert daemon.docker("exec", "-i", "host1", "cat", input="piped\n").stdout == "piped\n"
    proc = daemon.docker("exec", "host1", "nope", check=False)
    assert proc.returncode == 127 and "executable file not found" in proc.stdout + proc.stderr
    daemon.docker("exec", "-d", "host1", "sh", "-c", "echo detached > /tmp/mark")
    wait_for(lambda: daemon.docker("exec", "host1", "cat", "/tmp/mark",
                                   check=False).stdout == "detached\n", what="detached exec")
    daemon.docker("kill", "host1")
    proc = daemon.docker("exec", "host1", "true", check=False)
    assert proc.returncode != 0
    assert f"Container {inspect(daemon, 'host1')['Id']} is not running" in proc.stderr


def test_pause_unpause(daemon, busybox):
    daemon.docker("run", "-d", "--name", "napper", "busybox", "sh", "-c", LOOP)
    daemon.docker("pause", "napper")
    state = inspect(daemon, "napper")["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    assert "(Paused)" in daemon.docker("ps", "--format", "{{.Status}}").stdout
    frozen = daemon.docker("logs", "napper").stdout.count("line")
    proc = daemon.docker("exec", "napper", "true", check=False)
    assert proc.returncode != 0 and "is paused" in proc.stderr
    assert daemon.docker("pause", "napper", check=False).returncode != 0
    assert daemon.docker("logs", "napper").stdout.count("line") == frozen
    daemon.docker("unpause", "napper")
    wait_for(lambda: daemon.docker("logs", "napper").stdout.count("line") > frozen,
             what="output after unpause")
    assert inspect(daemon, "napper")["State"]["Status"] == "running"
    # Removing a paused container needs -f, and -f works.
    daemon.docker("pause", "napper")
    proc = daemon.docker("rm", "napper", check=False)
    assert proc.returncode != 0 and "paused" in proc.stderr
    daemon.docker("rm", "-f", "napper")


def test_top_and_stats(daemon, busybox):
    daemon.docker("run", "-d", "--name", "busy", "--memory", "32m", "busybox", "sh", "-c",
                  "sleep 1000 & sleep 999; echo")
    top = daemon.docker("top", "busy").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"]
    commands = [line.split(None, 7)[-1] for line in top[1:]]
    assert sorted(commands) == ["sh -c sleep 1000 & sleep 999; echo", "sleep 1000", "sleep 999"]
    top = daemon.docker("top", "busy", "-o", "pid,comm").stdout.split()
    assert top[:2] == ["PID", "COMMAND"] and top.count("sleep") == 2
    stats = daemon.docker("stats", "--no-stream", "--format", "{{json .}}", "busy").stdout
    row = json.loads(stats)
    assert row["Name"] == "busy" and row["PIDs"] == "3"
    assert row["MemUsage"].endswith("/ 32MiB")
    # The raw API: Docker's shape with the previous reading.
    raw = json.loads(daemon.docker("stats", "--no-stream", "--format", "{{json .}}",
                                   "busy").stdout)
    assert raw["Container"]
    proc = daemon.docker("top", "nosuch", check=False)
    assert proc.returncode != 0 and "No such container: nosuch" in proc.stderr


def test_wait_and_kill_signal(daemon, busybox):
    daemon.docker("run", "-d", "--name", "w1", "busybox", "sh", "-c", "sleep 0.3; exit 6")
    assert daemon.docker("wait", "w1").stdout == "6\n"
    daemon.docker("run", "-d", "--name", "k1", "busybox", "sh", "-c",
                  "trap 'echo got-usr1; exit 9' USR1; while true; do sleep 0.1; done")
    wait_for(lambda: inspect(daemon, "k1")["State"]["Running"], what="k1 running")
    daemon.docker("kill", "-s", "USR1", "k1")
    assert daemon.docker("wait", "k1").stdout == "9\n"
    assert daemon.docker("logs", "k1").stdout == "got-usr1\n"
    proc = daemon.docker("kill", "k1", check=False)
    assert proc.returncode != 0 and "is not running" in proc.stderr
    daemon.docker("run", "-d", "--name", "k2", "busybox", "sleep", "1000")
    daemon.docker("kill", "k2")
    state = inspect(daemon, "k2")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_rename(daemon, busybox):
    cid = daemon.docker("create", "--name", "before", "busybox", "true").stdout.strip()
    daemon.docker("create", "--name", "taken", "busybox", "true")
    daemon.docker("rename", "before", "after")
    assert inspect(daemon, "after")["Name"] == "/after"
    assert inspect(daemon, cid[:8])["Name"] == "/after"
    assert daemon.docker("inspect", "before", check=False).returncode != 0
    proc = daemon.docker("rename", "after", "taken", check=False)
    assert proc.returncode != 0 and 'The container name "/taken" is already in use' in proc.stderr
    daemon.docker("create", "--name", "before", "busybox", "true")  # the old name is free


def test_ps_filters_and_format(daemon, busybox):
    a = daemon.docker("run", "--name", "ex3", "--label", "team=a", "busybox", "sh", "-c",
                      "exit 3", check=False)
    assert a.returncode == 3
    daemon.docker("run", "--name", "ex0", "--label", "team=b", "busybox", "true")
    daemon.docker("run", "-d", "--name", "up1", "--label", "team=a", "busybox", "sleep", "1000")
    daemon.docker("create", "--name", "fresh", "busybox", "true")

    def names(*args: str) -> list[str]:
        return daemon.docker("ps", *args, "--format", "{{.Names}}").stdout.split()

    assert names() == ["up1"]
    assert names("-a") == ["fresh", "up1", "ex0", "ex3"]  # newest first
    assert names("-a", "--filter", "status=exited") == ["ex0", "ex3"]
    assert names("-a", "--filter", "status=created") == ["fresh"]
    assert names("-a", "--filter", "exited=3") == ["ex3"]
    assert names("-a", "--filter", "label=team=a") == ["up1", "ex3"]
    assert names("-a", "--filter", "label=team") == ["up1", "ex0", "ex3"]
    assert names("-a", "--filter", "name=ex") == ["ex0", "ex3"]
    assert names("-a", "--filter", "name=^/ex3$") == ["ex3"]
    assert names("-a", "--filter", "ancestor=busybox") == ["fresh", "up1", "ex0", "ex3"]
    assert names("-a", "--filter", "before=up1") == ["ex0", "ex3"]
    assert names("-a", "--filter", "since=ex0") == ["fresh", "up1"]
    up1 = inspect(daemon, "up1")["Id"]
    assert names("-a", "--filter", f"id={up1[:10]}") == ["up1"]
    assert names("-n", "2") == ["fresh", "up1"]
    assert names("-l") == ["fresh"]
    assert daemon.docker("ps", "-q").stdout.split() == [up1[:12]]
    assert daemon.docker("ps", "-q", "--no-trunc").stdout.split() == [up1]
    table = daemon.docker("ps", "-a", "--format", "{{.Names}}|{{.Image}}|{{.Command}}|{{.Status}}"
                          ).stdout.splitlines()
    assert "ex3|busybox|\"sh -c 'exit 3'\"|Exited (3) " in table[3]
    assert table[0].startswith("fresh|busybox|\"true\"|Created")
    assert table[1].startswith("up1|busybox|\"sleep 1000\"|Up ")
    sized = daemon.docker("ps", "-s", "--format", "{{.Size}}").stdout
    assert "virtual" in sized
    proc = daemon.docker("ps", "--filter", "bogus=1", check=False)
    assert proc.returncode != 0 and "invalid filter 'bogus'" in proc.stderr
    proc = daemon.docker("ps", "--filter", "status=sleeping", check=False)
    assert proc.returncode != 0


def test_inspect_fields(daemon, busybox):
    cid = daemon.docker("run", "-d", "--name", "insp", "-e", "X=1", "--label", "k=v",
                        "--restart", "on-failure:3", "--memory", "64m", "--network", "none",
                        "busybox", "sleep", "1000").stdout.strip()
    info = inspect(daemon, "insp")
    assert info["Id"] == cid and info["Name"] == "/insp"
    assert info["Image"] == busybox and info["Config"]["Image"] == "busybox"
    assert info["Path"] == "sleep" and info["Args"] == ["1000"]
    assert info["Platform"] == "linux" and info["Driver"] == "overlay2"
    st = info["State"]
    assert st["Status"] == "running" and st["Running"] and st["Pid"] > 0
    assert st["StartedAt"].startswith("20") and st["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert os.path.exists(f"/proc/{st['Pid']}")
    assert info["Config"]["Env"][0] == "X=1" and info["Config"]["Labels"] == {"k": "v"}
    assert info["Config"]["Hostname"] == cid[:12]
    hc = info["HostConfig"]
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert hc["Memory"] == 64 * 1024 * 1024 and hc["NetworkMode"] == "none"
    assert hc["LogConfig"]["Type"] == "json-file"
    gd = info["GraphDriver"]
    assert gd["Name"] == "overlay2"
    assert gd["Data"]["UpperDir"].startswith(str(daemon.root))
    assert info["LogPath"].endswith(f"{cid}-json.log") and os.path.exists(info["LogPath"])
    assert list(info["NetworkSettings"]["Networks"]) == ["none"]
    assert info["RestartCount"] == 0 and info["Mounts"] == []
    for path in ("HostsPath", "HostnamePath", "ResolvConfPath"):
        assert os.path.exists(info[path])
    fmt = daemon.docker("inspect", "-f", "{{.State.Status}} {{.HostConfig.NetworkMode}}",
                        cid[:6]).stdout
    assert fmt == "running none\n"


def test_restart_on_failure_twice(daemon, busybox):
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox",
                  "sh", "-c", "echo run; exit 1")

    def settled():
        info = inspect(daemon, "flaky")
        return info if info["State"]["Status"] == "exited" and info["RestartCount"] == 2 else None

    info = wait_for(settled, what="two restarts")
    assert info["State"]["ExitCode"] == 1
    time.sleep(0.5)  # a third restart would come within 400 ms of back-off
    assert inspect(daemon, "flaky")["RestartCount"] == 2
    assert daemon.docker("logs", "flaky").stdout == "run\nrun\nrun\n"


def test_restart_always_and_stop(daemon, busybox):
    daemon.docker("run", "-d", "--name", "phoenix", "--restart", "always", "busybox",
                  "sh", "-c", "sleep 0.2; exit 0")
    wait_for(lambda: inspect(daemon, "phoenix")["RestartCount"] >= 2, what="restarts")
    daemon.docker("stop", "phoenix")
    st = inspect(daemon, "phoenix")["State"]
    assert st["Status"] == "exited" and not st["Restarting"]
    count = inspect(daemon, "phoenix")["RestartCount"]
    time.sleep(0.6)
    assert inspect(daemon, "phoenix")["RestartCount"] == count  # a stopped container stays down
    daemon.docker("restart", "phoenix")
    assert inspect(daemon, "phoenix")["State"]["Running"]
    daemon.docker("rm", "-f", "phoenix")


def test_oom_kill(daemon, busybox):
    proc = daemon.docker("run", "--name", "hog", "--memory", "8m", "--memory-swap", "8m",
                         "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done", check=False)
    assert proc.returncode == 137
    st = inspect(daemon, "hog")["State"]
    assert (st["OOMKilled"], st["ExitCode"]) == (True, 137)


def test_rm_running_needs_force(daemon, busybox):
    cid = daemon.docker("run", "-d", "--name", "keep", "busybox", "sleep", "1000").stdout.strip()
    proc = daemon.docker("rm", "keep", check=False)
    assert proc.returncode != 0
    assert (f"You cannot remove a running container {cid}. Stop the container before attempting "
            "removal or force remove") in proc.stderr
    assert inspect(daemon, "keep")["State"]["Running"]
    daemon.docker("rm", "-f", "keep")
    assert leftovers(daemon, cid) == []


def test_update_and_prune(daemon, busybox):
    daemon.docker("run", "-d", "--name", "upd", "--memory", "64m", "busybox", "sleep", "1000")
    daemon.docker("update", "--memory", "128m", "--memory-swap", "256m", "upd")
    assert inspect(daemon, "upd")["HostConfig"]["Memory"] == 128 * 1024 * 1024
    stats = json.loads(daemon.docker("stats", "--no-stream", "--format", "{{json .}}",
                                     "upd").stdout)
    assert stats["MemUsage"].endswith("/ 128MiB")
    proc = daemon.docker("update", "--memory", "1m", "upd", check=False)
    assert proc.returncode != 0 and "Minimum memory limit allowed is 6MB" in proc.stderr
    daemon.docker("run", "--name", "done1", "busybox", "true")
    daemon.docker("create", "--name", "done2", "busybox", "true")
    out = daemon.docker("container", "prune", "-f").stdout
    assert "Deleted Containers:" in out
    assert daemon.docker("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["upd"]


def test_container_outlives_its_image(daemon, busybox):
    daemon.docker("create", "--name", "orphan", "busybox", "echo", "still-here")
    proc = daemon.docker("rmi", "busybox", check=False)
    assert proc.returncode != 0 and "is using its referenced image" in proc.stderr
    daemon.docker("rmi", "-f", "busybox")
    daemon.docker("image", "prune", "-af")
    # The container's layers are kept for it; ps shows the image by ID now.
    assert daemon.docker("start", "-a", "orphan").stdout == "still-here\n"
    assert daemon.docker("ps", "-a", "--format", "{{.Image}}").stdout.strip() == busybox[7:19]
    info = json.loads(daemon.docker("info", "--format", "{{json .}}").stdout)
    assert (info["Containers"], info["ContainersStopped"]) == (1, 1)
