"""The monitor: log and attach streams, stdin, pty, signals, state, surviving the
process that spawned it, and exec into a running container."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from berth import runtime as rt
from berth.errors import Conflict, InvalidArgument

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def test_output_reaches_the_log_and_an_attached_client(boxes):
    r = boxes.run(["sh", "-c", "echo hello; echo oops >&2; echo bye"])
    assert r.stdout == b"hello\nbye\n"
    assert r.stderr == b"oops\n"
    recs = r.log_records()
    assert [(x["stream"], x["log"]) for x in recs if x["stream"] == "stdout"] == [("stdout", "hello\n"), ("stdout", "bye\n")]
    assert [(x["stream"], x["log"]) for x in recs if x["stream"] == "stderr"] == [("stderr", "oops\n")]
    for x in recs:
        assert set(x) == {"log", "stream", "time"}
        assert x["time"].endswith("Z") and "T" in x["time"]


def test_output_before_attach_is_in_the_log_only(boxes):
    bundle = boxes.create(["sh", "-c", "echo early; read x < /signal/go; echo late"],
                          mounts=[{"destination": "/signal", "type": "bind",
                                   "source": str(_fifo_dir(boxes)), "options": ["rbind"]}])
    rt.start(bundle)
    _wait_for_log(bundle, "early\n")
    with rt.attach(bundle) as a:
        _open_fifo(boxes)
        out, _, exit_ = a.collect()
    assert out == b"late\n"
    assert exit_["exitCode"] == 0
    logs = [json.loads(line)["log"] for line in (bundle / "container.log").read_text().splitlines()]
    assert logs == ["early\n", "late\n"]


def _fifo_dir(boxes):
    d = boxes.workdir / "fifo"
    d.mkdir(exist_ok=True)
    if not (d / "go").exists():
        os.mkfifo(d / "go")
    return d


def _open_fifo(boxes):
    with open(boxes.workdir / "fifo" / "go", "w") as f:
        f.write("go\n")


def _wait_for_log(bundle, text, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = bundle / "container.log"
        if p.exists() and text in "".join(json.loads(x)["log"] for x in p.read_text().splitlines()):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never reached the log")


def test_long_lines_and_unterminated_output(boxes):
    r = boxes.run(["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' a; echo; printf tail"])
    assert len(r.stdout) == 40000 + 1 + 4
    logs = [x["log"] for x in r.log_records()]
    assert "".join(logs) == r.stdout.decode()
    assert max(len(x) for x in logs) <= 16 * 1024
    assert logs[-1] == "tail"


def test_stdin_is_forwarded_and_closed(boxes):
    r = boxes.run(["sh", "-c", "cat; echo done"], stdin=b"abc\ndef\n")
    assert r.stdout == b"abc\ndef\ndone\n"


def test_without_open_stdin_the_process_reads_dev_null(boxes):
    r = boxes.run(["sh", "-c", "cat; echo eof"])
    assert r.stdout == b"eof\n"


def test_pty_mode(boxes):
    r = boxes.run(["sh", "-c", "tty; stty size; test -t 0 && echo interactive; ls -l /dev/console"],
                  process={"terminal": True, "consoleSize": {"height": 33, "width": 99}})
    lines = r.stdout.decode().replace("\r", "").splitlines()
    assert lines[0] == "/dev/pts/0"
    assert lines[1] == "33 99"
    assert lines[2] == "interactive"
    assert r.stderr == b""
    assert all(x["stream"] == "stdout" for x in r.log_records())


def test_pty_resize_and_input(boxes):
    bundle = boxes.create(["sh", "-c", "read x; stty size; echo got:$x"],
                          process={"terminal": True, "openStdin": True, "stdinOnce": True})
    with rt.attach(bundle, stdin=True) as a:
        assert a.info == {"terminal": True, "stdin": True}
        rt.start(bundle)
        rt.resize(bundle, 40, 120)
        a.write_stdin(b"hi\r")
        out, _, exit_ = a.collect()
    text = out.decode().replace("\r", "")
    assert "40 120" in text and "got:hi" in text
    assert exit_["exitCode"] == 0


def test_resize_without_a_tty_is_refused(boxes):
    bundle = boxes.create(["true"])
    with pytest.raises(Conflict, match="no terminal"):
        rt.resize(bundle, 10, 10)


def test_sigterm_reaches_the_process(boxes):
    bundle = boxes.create(["sh", "-c", "trap 'echo term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"])
    with rt.attach(bundle) as a:
        rt.start(bundle)
        assert a.read() == ("stdout", b"ready\n")
        rt.kill(bundle, "SIGTERM")
        out, _, exit_ = a.collect()
    assert out == b"term\n"
    assert exit_["exitCode"] == 42 and exit_["signal"] is None


def test_sigkill_gives_137(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    assert rt.state(bundle)["status"] == "running"
    rt.kill(bundle, signal.SIGKILL)
    exit_ = rt.wait_exit_sync(bundle, timeout=30)
    assert exit_["exitCode"] == 137 and exit_["signal"] == 9
    with pytest.raises(Conflict):
        rt.kill(bundle, "TERM")


def test_stop_escalates_to_sigkill(boxes):
    # pid 1 ignores SIGTERM without a handler: stop must fall back to SIGKILL.
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    exit_ = asyncio.run(rt.stop(bundle, timeout=0.5))
    assert exit_["exitCode"] == 137


def test_state_through_the_lifecycle(boxes):
    bundle = boxes.create(["sleep", "1000"])
    st = rt.state(bundle)
    assert st["status"] == "created" and st["startedAt"] is None and st["pid"] > 0
    assert int((bundle / "monitor.pid").read_text()) == st["monitorPid"]
    rt.start(bundle)
    assert rt.state(bundle)["status"] == "running"
    assert rt.state(bundle)["startedAt"] >= st["createdAt"]
    with pytest.raises(Conflict, match="already started"):
        rt.start(bundle)
    rt.kill(bundle, "KILL")
    rt.wait_exit_sync(bundle, timeout=30)
    st = rt.state(bundle)
    assert st["status"] == "exited" and st["exit"]["exitCode"] == 137
    assert not (bundle / "monitor.sock").exists()


def test_kill_before_start(boxes):
    bundle = boxes.create(["true"])
    rt.kill(bundle, "KILL")
    assert rt.wait_exit_sync(bundle, timeout=30)["exitCode"] == 137


def test_async_attach_and_wait(boxes):
    bundle = boxes.create(["sh", "-c", "echo one; echo two >&2; exit 5"])

    async def main():
        a = await rt.attach_async(bundle)
        waiter = asyncio.ensure_future(rt.wait_exit(bundle))
        await asyncio.sleep(0)
        await asyncio.to_thread(rt.start, bundle)
        events = [ev async for ev in a]
        await a.close()
        return events, await waiter

    events, exit_ = asyncio.run(main())
    assert ("stdout", b"one\n") in events and ("stderr", b"two\n") in events
    assert events[-1][0] == "exit" and events[-1][1]["exitCode"] == 5
    assert exit_["exitCode"] == 5


def test_long_bundle_paths_work(boxes, workdir):
    deep = workdir / ("d" * 60) / ("e" * 60)
    bundle, spec = boxes.spec(["echo", "deep"])
    deep.mkdir(parents=True)
    bundle = deep / "bundle"
    spec["logPath"] = str(bundle / "container.log")
    spec["root"]["mountpoint"] = str(bundle / "rootfs")
    boxes.dirs.append(bundle)
    rt.write_spec(bundle, spec)
    rt.spawn_monitor(bundle)
    assert len(str(bundle / "monitor.sock")) > 108
    with rt.attach(bundle) as a:
        rt.start(bundle)
        out, _, exit_ = a.collect()
    assert out == b"deep\n" and exit_["exitCode"] == 0


SPAWNER = """
import sys, os
sys.path.insert(0, {pycore!r})
from berth import runtime as rt
rt.spawn_monitor({bundle!r})
rt.start({bundle!r})
print("started", flush=True)
sys.stdin.read()
"""


def test_monitor_survives_kill_9_of_its_spawner(boxes):
    import berth
    fifo_dir = _fifo_dir(boxes)
    bundle, spec = boxes.spec(["sh", "-c", "echo before; read x < /signal/go; echo after; exit 7"],
                              mounts=[{"destination": "/signal", "type": "bind", "source": str(fifo_dir),
                                       "options": ["rbind"]}])
    rt.write_spec(bundle, spec)
    pycore = os.path.dirname(os.path.dirname(berth.__file__))
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER.format(pycore=pycore, bundle=str(bundle))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert spawner.stdout.readline() == "started\n"
    finally:
        spawner.kill()
        spawner.wait()
    st = rt.state(bundle)
    assert st["status"] == "running"
    # Not a child of the dead spawner: reparented away from it.
    with open(f"/proc/{st['monitorPid']}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid != spawner.pid
    _open_fifo(boxes)
    exit_ = rt.wait_exit_sync(bundle, timeout=30)
    assert exit_["exitCode"] == 7
    logs = [json.loads(x)["log"] for x in (bundle / "container.log").read_text().splitlines()]
    assert logs == ["before\n", "after\n"]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_monitors_come_from_one_zygote_and_outlive_it(boxes):
    from berth.runtime import monitor
    first = boxes.create(["sleep", "1000"])
    zygote = monitor._zygote._pid
    assert zygote and open(f"/proc/{zygote}/cmdline", "rb").read().split(b"\0")[1] == b"zygote"
    second = boxes.create(["sh", "-c", "exit 3"])
    assert monitor._zygote._pid == zygote          # one zygote for every spawn
    monitors = [rt.state(bundle)["monitorPid"] for bundle in (first, second)]
    assert [_ppid(m) for m in monitors] == [zygote, zygote]   # forked by it, no exec
    monitor._zygote._stop()                        # as when the daemon goes away
    assert _gone(zygote)
    # Reparented away from the zygote (to init or a subreaper), and still there.
    assert all(_ppid(m) not in (zygote, os.getpid()) for m in monitors)
    rt.start(first)
    rt.start(second)
    assert rt.wait_exit_sync(second, timeout=30)["exitCode"] == 3
    assert rt.state(first)["status"] == "running"
    rt.kill(first, signal.SIGKILL)
    assert rt.wait_exit_sync(first, timeout=30)["exitCode"] == 137
    boxes.create(["true"])                         # the next spawn starts a new zygote
    assert monitor._zygote._pid not in (0, zygote)


def test_a_killed_zygote_is_replaced(boxes):
    from berth.runtime import monitor
    boxes.create(["true"])
    zygote = monitor._zygote._pid
    os.kill(zygote, signal.SIGKILL)
    result = boxes.run(["echo", "again"])
    assert result.stdout == b"again\n" and result.exit["exitCode"] == 0
    assert monitor._zygote._pid != zygote and _gone(zygote)


def test_a_changed_environment_gets_a_new_zygote(boxes, monkeypatch):
    # The zygote's environment is the monitors' (BERTH_OVERLAY_LEGACY...).
    from berth.runtime import monitor
    boxes.create(["true"])
    zygote = monitor._zygote._pid
    monkeypatch.setenv("BERTH_ZYGOTE_TEST", "1")
    boxes.create(["true"])
    assert monitor._zygote._pid != zygote and _gone(zygote)
    with open(f"/proc/{monitor._zygote._pid}/environ", "rb") as f:
        assert b"BERTH_ZYGOTE_TEST=1" in f.read().split(b"\0")


def test_a_dead_monitor_is_reported(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    st = rt.state(bundle)
    os.kill(st["monitorPid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{st['monitorPid']}") and time.monotonic() < deadline:
        with open(f"/proc/{st['monitorPid']}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    after = rt.state(bundle)
    assert after["monitorDied"] is True
    assert after["status"] == "running"          # the container outlived its monitor
    os.kill(st["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while rt.state(bundle)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    gone = rt.state(bundle)
    assert gone["status"] == "exited" and gone["exit"] is None and gone["monitorDied"] is True
    with pytest.raises(rt.MonitorDied):
        rt.wait_exit_sync(bundle, timeout=30)


# exec


def test_exec_sees_the_containers_pid_namespace_and_files(boxes):
    bundle = boxes.create(["sh", "-c", "echo hi > /tmp/mark; exec sleep 1000"], hostname="exec-box")
    rt.start(bundle)
    _wait_file(bundle.parent / "upper" / "tmp" / "mark")
    ex = bundle / "execs" / "e1"
    rt.exec_create(bundle, ex, {"args": ["sh", "-c", "cat /tmp/mark; hostname; cat /proc/1/comm; pwd; "
                                                     "ls /proc/$$/fd; exit 5"],
                                "env": ["PATH=/bin"], "cwd": "/etc"})
    with rt.attach(ex) as a:
        rt.start(ex)
        out, err, exit_ = a.collect()
    assert out.decode().splitlines() == ["hi", "exec-box", "sleep", "/etc", "0", "1", "2"], err
    assert exit_["exitCode"] == 5
    assert json.loads((ex / "exit.json").read_text())["exitCode"] == 5
    assert rt.state(bundle)["status"] == "running"          # the container goes on
    # exec output is not in the container's log
    assert "exec-box" not in (bundle / "container.log").read_text()


def test_exec_with_a_tty_user_and_missing_command(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    ex = bundle / "execs" / "tty"
    rt.exec_create(bundle, ex, {"args": ["sh", "-c", "tty; id -u"], "terminal": True, "user": {"uid": 1}})
    with rt.attach(ex) as a:
        rt.start(ex)
        out, _, exit_ = a.collect()
    lines = out.decode().replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "1"
    bad = bundle / "execs" / "bad"
    rt.exec_create(bundle, bad, {"args": ["nope"]})
    with pytest.raises(rt.StartError) as ei:
        rt.start(bad)
    assert ei.value.exit_code == 127


def test_detached_exec_runs_in_the_background(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    ex = bundle / "execs" / "d"
    rt.exec_create(bundle, ex, {"args": ["sh", "-c", "echo lots; touch /tmp/detached"]})
    rt.start(ex)
    assert rt.wait_exit_sync(ex, timeout=30)["exitCode"] == 0
    assert (bundle.parent / "upper" / "tmp" / "detached").exists()


def test_exec_into_a_stopped_container_is_refused(boxes):
    bundle = boxes.create(["true"])
    with pytest.raises(Conflict, match="is not running"):
        rt.exec_create(bundle, bundle / "execs" / "x", {"args": ["true"]})   # created, not started
    rt.start(bundle)
    rt.wait_exit_sync(bundle, timeout=30)
    with pytest.raises(Conflict, match="is not running"):
        rt.exec_create(bundle, bundle / "execs" / "y", {"args": ["true"]})


def _wait_file(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


# restart, cgroups


def test_a_bundle_can_run_again_and_keeps_its_upper_dir(boxes):
    bundle = boxes.create(["sh", "-c", "cat /count 2>/dev/null || echo none; echo again >> /count"])
    with rt.attach(bundle) as a:
        rt.start(bundle)
        assert a.collect()[0] == b"none\n"
    rt.spawn_monitor(bundle)                 # `docker restart`: same bundle, new monitor
    assert rt.state(bundle)["status"] == "created"
    with rt.attach(bundle) as a:
        rt.start(bundle)
        out, _, exit_ = a.collect()
    assert out == b"again\n" and exit_["exitCode"] == 0
    logs = [json.loads(x)["log"] for x in (bundle / "container.log").read_text().splitlines()]
    assert logs == ["none\n", "again\n"]


def test_a_second_monitor_for_a_live_bundle_is_refused(boxes):
    bundle = boxes.create(["sleep", "1000"])
    first = rt.state(bundle)["monitorPid"]
    with pytest.raises(Conflict, match="already has a running monitor"):
        rt.spawn_monitor(bundle)
    assert rt.state(bundle)["monitorPid"] == first
    rt.start(bundle)
    assert rt.state(bundle)["status"] == "running"


def test_cgroup_join_and_oom_kill_is_recorded(boxes, memory_cgroup):
    with open(os.path.join(memory_cgroup, "memory.limit_in_bytes"), "w") as f:
        f.write(str(16 * 1024 * 1024))
    name = os.path.basename(memory_cgroup)
    r = boxes.run(["sh", "-c", "grep memory /proc/self/cgroup; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
                  cgroupPaths=[memory_cgroup])
    assert f"memory:/{name}" in r.out
    assert "survived" not in r.out
    assert r.exit["oomKilled"] is True
    assert r.code == 137 and r.exit["signal"] == 9


def test_no_oom_flag_without_an_oom(boxes, memory_cgroup):
    r = boxes.run(["true"], cgroupPaths=[memory_cgroup])
    assert r.code == 0 and r.exit["oomKilled"] is False


def test_several_clients_see_the_same_output(boxes):
    bundle = boxes.create(["sh", "-c", "echo a; echo b >&2"])
    with rt.attach(bundle) as both, rt.attach(bundle, stderr=False) as out_only, \
            rt.attach(bundle, stdout=False, stderr=False) as none:
        rt.start(bundle)
        assert both.collect()[:2] == (b"a\n", b"b\n")
        assert out_only.collect()[:2] == (b"a\n", b"")
        assert none.collect()[:2] == (b"", b"")


def test_without_stdin_once_stdin_outlives_an_attach(boxes):
    bundle = boxes.create(["sh", "-c", "read a; read b; echo $a$b"], process={"openStdin": True})
    with rt.attach(bundle) as watcher:
        with rt.attach(bundle, stdin=True) as first:
            rt.start(bundle)
            first.write_stdin(b"one\n")
            first.close_stdin()              # the container's stdin stays open
        with rt.attach(bundle, stdin=True) as second:
            second.write_stdin(b"two\n")
        out, _, exit_ = watcher.collect()
    assert out == b"onetwo\n" and exit_["exitCode"] == 0


def test_large_output_is_not_lost(boxes):
    r = boxes.run(["sh", "-c", "head -c 3000000 /dev/urandom | od -An -tx1 -v"])
    assert r.code == 0
    logged = "".join(x["log"] for x in r.log_records())
    assert logged == r.out
    assert len(r.stdout) == 3000000 // 16 * 49


def test_cgroup_v1_and_v2_together(boxes):
    v2_root = "/sys/fs/cgroup/unified"
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        if not os.path.exists(os.path.join(v2_root, "cgroup.procs")):
            pytest.skip("no cgroup v2 hierarchy")
    else:
        v2_root = "/sys/fs/cgroup"
    name = f"berth-rt-test-{os.getpid()}-{time.monotonic_ns()}"
    v2 = os.path.join(v2_root, name)
    paths = [v2]
    v1 = os.path.join("/sys/fs/cgroup/pids", name)
    os.mkdir(v2)
    if os.path.exists("/sys/fs/cgroup/pids/cgroup.procs"):
        os.mkdir(v1)
        paths.append(v1)
    try:
        r = boxes.run(["cat", "/proc/self/cgroup"], cgroupPaths=paths)
        lines = r.out.splitlines()
        assert f"0::/{name}" in lines
        if len(paths) == 2:
            assert any(line.endswith(f"pids:/{name}") for line in lines)
        # In a private cgroup namespace the container's cgroups are its roots.
        r = boxes.run(["cat", "/proc/self/cgroup"], cgroupPaths=paths, namespaces={"cgroup": "new"})
        lines = r.out.splitlines()
        assert "0::/" in lines
        if len(paths) == 2:
            assert any(line.endswith("pids:/") for line in lines)
    finally:
        for p in paths:
            for _ in range(200):
                try:
                    os.rmdir(p)
                    break
                except OSError:
                    time.sleep(0.05)


def test_exit_is_recorded_while_a_client_lags_and_the_client_still_gets_everything(boxes):
    bundle = boxes.create(["sh", "-c", "head -c 800000 /dev/zero | tr '\\0' x; exit 4"])
    with rt.attach(bundle) as a:
        rt.start(bundle)
        _wait_file(bundle / "exit.json")     # nothing read from the attachment yet
        assert json.loads((bundle / "exit.json").read_text())["exitCode"] == 4
        out, _, exit_ = a.collect()
    assert out == b"x" * 800000 and exit_["exitCode"] == 4


@pytest.mark.parametrize("argv,needle", [
    ([], "usage: berth-monitor"),
    (["--bogus"], "usage: berth-monitor"),
    (["/nonexistent/bundle"], "/nonexistent/bundle: No such file or directory"),
    (["exec", "/nonexistent/bundle", "/tmp"], "/nonexistent/bundle: No such file or directory"),
])
def test_monitor_command_line_errors(argv, needle):
    proc = subprocess.run([rt.monitor_binary(), *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    err = json.loads(proc.stderr.strip().splitlines()[-1])
    assert needle in err["message"] and err["exitCode"] == 125


def test_corrupt_spec_is_an_invalid_argument(boxes):
    bundle, _ = boxes.spec(["true"])
    (bundle / "spec.json").write_text('{"process": {"args": ["true"]}, "root": ')
    with pytest.raises(InvalidArgument, match="invalid spec"):
        rt.spawn_monitor(bundle)
    (bundle / "spec.json").write_text('{"process": {"args": ["true"], "colour": "red"}, '
                                      '"root": {"path": "/", "mountpoint": "/x"}}')
    with pytest.raises(InvalidArgument, match="unknown field `colour`"):
        rt.spawn_monitor(bundle)


def test_exec_into_a_missing_working_directory_fails(boxes):
    bundle = boxes.create(["sleep", "1000"])
    rt.start(bundle)
    with pytest.raises(Exception, match=r'chdir to cwd \("/nope"\) set in config.json failed: no such file or directory'):
        rt.exec_create(bundle, bundle / "execs" / "w", {"args": ["pwd"], "cwd": "/nope"})
    assert not (bundle / "execs" / "w" / "monitor.sock").exists()


def test_start_on_the_event_loop(boxes):
    # start_async: the daemon's start without a worker thread; same answers as start.
    ok = boxes.create(["sh", "-c", "exit 6"])
    missing = boxes.create(["nosuchcommand"])

    async def both():
        pid = await rt.start_async(ok)
        with pytest.raises(rt.StartError) as err:
            await rt.start_async(missing)
        return pid, err.value

    pid, err = asyncio.run(both())
    assert pid > 0 and rt.wait_exit_sync(ok, timeout=30)["exitCode"] == 6
    assert err.exit_code == 127 and "executable file not found" in err.message
    with pytest.raises(Conflict):
        asyncio.run(rt.start_async(ok))  # exited: nothing answers any more
