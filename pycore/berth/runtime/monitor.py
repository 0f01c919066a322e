"""Driving ``berth-monitor``: spawn it, start/kill/resize the process, read its
state and wait for its exit. Each function takes the monitor's directory: a
container's bundle, or an exec's directory."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal as _signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, SystemError_

from . import client
from .spec import read_spec, signal_number


class StartError(BerthError):
    """The process could not be started. ``exit_code`` is Docker's: 127 command not
    found, 126 cannot be invoked (HTTP 400, as Docker answers), 125 engine error."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
        self.status = 400 if exit_code in (126, 127) else 500


class MonitorDied(SystemError_):
    """The monitor is gone without having recorded an exit."""


def monitor_binary() -> str:
    """``$BERTH_MONITOR``, else berth-monitor beside the interpreter (the venv's
    bin, where ``make build`` installs it), else on PATH."""
    env = os.environ.get("BERTH_MONITOR")
    if env:
        return env
    beside = os.path.join(os.path.dirname(sys.executable), "berth-monitor")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("berth-monitor")
    if found:
        return found
    raise SystemError_("berth-monitor not found (run `make build`, or set BERTH_MONITOR)")


@dataclass
class MonitorHandle:
    directory: str
    monitor_pid: int
    #: Host pid of the created process (stopped before exec until start()).
    pid: int


def _error_from_monitor(stderr: str, what: str) -> BerthError:
    line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    try:
        err = json.loads(line)
        message, code = err["message"], int(err.get("exitCode", 125))
    except (ValueError, KeyError, TypeError):
        message, code = (line or f"berth-monitor failed to create {what}"), 125
    if code in (126, 127):
        return StartError(message, code)
    if message.startswith("invalid spec") or "does not exist" in message or \
            message.startswith(("unable to find user", "unable to find group")):
        return InvalidArgument(message)
    if "Not a directory" in message or "not a directory" in message:
        # Docker's hint for the usual cause.
        return InvalidArgument(message + ": Are you trying to mount a directory onto a file (or vice-versa)? "
                               "Check if the specified host path exists and is the expected type")
    if "is not running" in message or "already has a running monitor" in message:
        return Conflict(message)
    return SystemError_(message)


SPAWN_TIMEOUT = 120.0


def _spawn(args: list[str], directory: str, what: str) -> MonitorHandle:
    """Run ``berth-monitor <args>``, which forks the monitor away and reports once
    the process is created: a JSON line on stdout, or a JSON error on stderr (here
    both arrive on one pipe; the last line is the report).

    The zygote runs it without an exec; where no zygote can be had, posix_spawn
    (a vfork: no Python runs in the child, fine in a threaded daemon) with both
    streams on one pipe costs about half of subprocess.run."""
    for attempt in range(2):
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = None
        try:
            if not _zygote.request(args, w):
                pid = _spawn_direct([monitor_binary(), *args], w)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        # A zygote's monitor writes one line (its container's init, stopped before
        # exec, holds the pipe too); the command line's launcher exits after its.
        output = _read_report(r, pid, what, line=pid is None)
        if output or pid is not None or attempt:
            break
        # Not a word: the zygote died with our request unread. Once more, anew.
        _zygote.discard()
    text = output.decode(errors="replace")
    failed = False
    if pid is not None:
        _, status = os.waitpid(pid, 0)
        failed = os.waitstatus_to_exitcode(status) != 0
    # The last line is the report; from the zygote it keeps its first word.
    last = text.strip().splitlines()[-1] if text.strip() else ""
    word, _, rest = last.partition(" ")
    if word in ("ok", "error"):
        last, failed = rest, failed or word == "error"
    try:
        info = json.loads(last)
        handle = MonitorHandle(directory=directory, monitor_pid=info["monitorPid"], pid=info["pid"])
    except (ValueError, KeyError, TypeError):
        failed = True
    if failed:
        raise _error_from_monitor(last or "berth-monitor died before reporting", what)
    return handle


def _spawn_direct(argv: list[str], w: int) -> int:
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.posix_spawnp(argv[0], argv, os.environ, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1),
            (os.POSIX_SPAWN_DUP2, w, 2)])
    except OSError as e:
        raise SystemError_(f"cannot run {argv[0]}: {e.strerror}") from None
    finally:
        os.close(devnull)


class _Zygote:
    """``berth-monitor zygote``: one long-lived process that forks what
    ``berth-monitor <args>`` would do, so a container start costs no exec of the
    monitor (execve, the dynamic loader and glibc's cpuid probing: about a
    millisecond here). Requests go over a SOCK_SEQPACKET socket with the report
    pipe attached; the zygote ends when the socket closes, the monitors it made
    do not (they are reparented to init, as with a direct spawn). It runs with
    the environment it was started with, so a changed one gets a new zygote."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid = 0
        self._key: tuple | None = None

    def request(self, args: list[str], report_w: int) -> bool:
        """Hand one spawn to the zygote; False if none can take it."""
        packet = b"\0".join(os.fsencode(a) for a in args)
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, report_w.to_bytes(4, sys.byteorder))]
        key = (monitor_binary(), dict(os.environ))
        with self._lock:
            if self._sock is not None and key != self._key:
                self._stop()
            for _ in range(2):  # a zygote that died is replaced once
                if self._sock is None and not self._start(key):
                    return False
                try:
                    self._sock.sendmsg([packet], fds)
                    return True
                except OSError:
                    self._stop()
            return False

    def _start(self, key: tuple) -> bool:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                # The padding is room for each monitor to show its own arguments.
                self._pid = os.posix_spawnp(key[0], [key[0], "zygote", " " * 1024], key[1],
                                            setsid=True,
                                            file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),
                                                          (os.POSIX_SPAWN_DUP2, devnull, 1),
                                                          (os.POSIX_SPAWN_DUP2, devnull, 2)])
            finally:
                os.close(devnull)
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        self._sock, self._key = ours, key
        return True

    def discard(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        """End and reap the zygote. It holds nothing: a request it had not yet
        forked for reads as an empty report, which _spawn sends again."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._pid:
            try:
                os.kill(self._pid, _signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
            self._pid = 0


_zygote = _Zygote()


def _read_report(fd: int, pid: int | None, what: str, line: bool = False) -> bytes:
    """The report (``line``: up to its newline); ``pid`` (a directly spawned
    launcher) is killed if none comes."""
    chunks = []
    deadline = time.monotonic() + SPAWN_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                if pid is not None:
                    os.kill(pid, _signal.SIGKILL)
                    os.waitpid(pid, 0)
                raise SystemError_(f"berth-monitor did not report on {what} within "
                                   f"{SPAWN_TIMEOUT:.0f} s")
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            if line and data.endswith(b"\n"):
                return b"".join(chunks)
    finally:
        os.close(fd)


def spawn_monitor(bundle: str | os.PathLike) -> MonitorHandle:
    """Create the container of ``<bundle>/spec.json`` under a new monitor. Returns
    once the process is set up and waiting for start(); a setup error raises (and
    leaves no process behind)."""
    bundle = os.path.abspath(os.fspath(bundle))
    if not os.path.exists(os.path.join(bundle, "spec.json")):
        raise NotFound(f"no spec.json in bundle {bundle}")
    return _spawn([bundle], bundle, f"container {os.path.basename(bundle)}")


def exec_create(bundle: str | os.PathLike, exec_dir: str | os.PathLike,
                process: dict[str, Any]) -> MonitorHandle:
    """Create a process inside the running container of ``bundle`` (setns into its
    namespaces, join its cgroups), monitored from ``exec_dir``. ``process`` has the
    spec's process shape; the caller merges the container's env. Then use
    start/attach/wait_exit/state/kill/resize on ``exec_dir``."""
    bundle = os.path.abspath(os.fspath(bundle))
    exec_dir = os.path.abspath(os.fspath(exec_dir))
    args = process.get("args")
    if not isinstance(args, list) or not args or not args[0]:
        raise InvalidArgument("exec: no command given")
    from .spec import write_json_atomic
    os.makedirs(exec_dir, exist_ok=True)
    write_json_atomic(os.path.join(exec_dir, "spec.json"), {"process": process})
    return _spawn(["exec", bundle, exec_dir], exec_dir, "exec process")


def _files(directory: str) -> tuple[dict | None, dict | None, int | None]:
    def load(name: str) -> dict | None:
        try:
            with open(os.path.join(directory, name), "rb") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    try:
        with open(os.path.join(directory, "monitor.pid")) as f:
            mpid = int(f.read().strip())
    except (FileNotFoundError, ValueError):
        mpid = None
    return load("exit.json"), load("state.json"), mpid


def _alive(pid: int | None, start_time: int | None = None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] == b"Z":
        return False
    # Field 22 (starttime) tells a reused pid from the process we knew.
    return start_time is None or int(fields[19]) == start_time


def state(directory: str | os.PathLike) -> dict[str, Any]:
    """The process's state: ``status`` created | running | exited, ``pid``,
    ``monitorPid``, ``createdAt``, ``startedAt`` and, once exited, ``exit``
    (exitCode, signal, oomKilled, startedAt, finishedAt, error).

    A monitor that died without recording the exit is reported with
    ``monitorDied: True``, ``status`` "running" if the process still lives
    (unsupervised: no log, no exit code) or "exited" with ``exit: None``."""
    directory = os.path.abspath(os.fspath(directory))
    try:
        kind, st = client.request(directory, client.STATE)
        if kind == client.OK[0]:
            return st
    except client.MonitorUnreachable:
        pass
    exit_, saved, mpid = _files(directory)
    if exit_ is not None:
        base = saved or {}
        return {**base, "status": "exited", "exit": exit_, "pid": exit_.get("pid", base.get("pid")),
                "startedAt": exit_.get("startedAt")}
    if saved is None:
        raise NotFound(f"no monitor state in {directory}")
    if _alive(mpid):
        # Alive but not answering: it is between recording the exit and leaving.
        exit_, saved2, _ = _files(directory)
        if exit_ is not None:
            return {**(saved2 or saved), "status": "exited", "exit": exit_}
    running = _alive(saved.get("pid"), saved.get("pidStartTime"))
    return {**saved, "status": "running" if running else "exited",
            "exit": None, "monitorDied": True}


def _control(directory: str, kind: bytes, payload: dict | None, what: str) -> dict:
    try:
        k, data = client.request(os.path.abspath(os.fspath(directory)), kind, payload)
    except client.MonitorUnreachable:
        raise _not_running(directory, what) from None
    return _answer(k, data, kind, what)


def _not_running(directory: str, what: str) -> Conflict:
    return Conflict(f"cannot {what}: the process of {directory} is not running")


def _answer(k: int, data: dict, kind: bytes, what: str) -> dict:
    if k == client.ERROR[0]:
        message = data.get("message", f"{what} failed")
        if kind == client.START and "exitCode" in data and data.get("status") is None:
            raise StartError(message, int(data["exitCode"]))
        raise Conflict(f"cannot {what}: {message}")
    return data


def start(directory: str | os.PathLike) -> int:
    """Let the created process exec; returns its pid. Raises StartError with
    Docker's message and exit code when the command cannot run (the process has
    then exited with that code)."""
    return _control(os.fspath(directory), client.START, None, "start")["pid"]


async def start_async(directory: str | os.PathLike) -> int:
    """:func:`start` on the event loop, without a worker thread's round trip."""
    directory = os.fspath(directory)
    try:
        k, data = await client.request_async(os.path.abspath(directory), client.START)
    except client.MonitorUnreachable:
        raise _not_running(directory, "start") from None
    return _answer(k, data, client.START, "start")["pid"]


def kill(directory: str | os.PathLike, sig: int | str = _signal.SIGKILL) -> None:
    """Send ``sig`` (number or name) to the process."""
    _control(os.fspath(directory), client.KILL, {"signal": signal_number(sig)}, "kill")


def resize(directory: str | os.PathLike, height: int, width: int) -> None:
    """Set the pty size (TIOCSWINSZ); the process must have a terminal."""
    if not (0 <= height <= 65535 and 0 <= width <= 65535):
        raise InvalidArgument(f"invalid terminal size {height}x{width}")
    _control(os.fspath(directory), client.RESIZE, {"height": height, "width": width}, "resize")


def _read_exit_or_raise(directory: str) -> dict:
    st = state(directory)
    if st.get("status") == "exited" and st.get("exit") is not None:
        return st["exit"]
    if st.get("monitorDied"):
        raise MonitorDied(f"the monitor of {directory} died without recording the exit")
    return None  # type: ignore[return-value]


async def wait_exit(directory: str | os.PathLike) -> dict[str, Any]:
    """Wait until the process has exited; returns the exit record (exitCode,
    signal, oomKilled, startedAt, finishedAt, error). Survives the monitor
    finishing between calls; raises MonitorDied if it died unrecorded."""
    directory = os.path.abspath(os.fspath(directory))
    while True:
        try:
            sock = client.connect(directory)
        except client.MonitorUnreachable:
            sock = None
        if sock is not None:
            sock.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            try:
                writer.write(client.frame(client.WAIT))
                await writer.drain()
                while True:
                    fr = await client.read_frame_async(reader)
                    if fr is None:
                        break
                    if fr[0] == client.EXIT[0]:
                        return json.loads(fr[1])
            except OSError:
                pass
            finally:
                writer.close()
        exit_ = _read_exit_or_raise(directory)
        if exit_ is not None:
            return exit_
        # The monitor is alive but was finishing: ask again shortly.
        await asyncio.sleep(0.02)


def wait_exit_sync(directory: str | os.PathLike, timeout: float | None = None) -> dict[str, Any]:
    """Blocking wait_exit, for threads and tests."""
    return asyncio.run(asyncio.wait_for(wait_exit(directory), timeout))


async def stop(directory: str | os.PathLike, timeout: float = 10.0,
               sig: int | str | None = None) -> dict[str, Any]:
    """``docker stop``: the stop signal (spec's stopSignal, else SIGTERM), then
    SIGKILL after ``timeout`` seconds. Returns the exit record."""
    directory = os.path.abspath(os.fspath(directory))
    if sig is None:
        try:
            sig = read_spec(directory).get("stopSignal") or _signal.SIGTERM
        except FileNotFoundError:
            sig = _signal.SIGTERM
    try:
        kill(directory, sig)
    except Conflict:
        pass
    try:
        return await asyncio.wait_for(wait_exit(directory), timeout)
    except asyncio.TimeoutError:
        try:
            kill(directory, _signal.SIGKILL)
        except Conflict:
            pass
        return await wait_exit(directory)
