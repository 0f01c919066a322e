"""Start berthd in the background when nothing answers on its socket.

The "embedded default": one command works on a fresh machine. The daemon gets
its own session (it outlives the CLI and ignores the terminal's signals), its
output goes to ``<root>/berthd.log``, and a lock file in the root makes CLIs
that start at the same moment share one daemon instead of racing. A berthd that
holds ``<socket>.lock`` is starting (bound, not yet listening: connects are
refused) or serving: the CLI waits for it rather than start a second one.
"""

from __future__ import annotations

import os
import sys
import time

from .errors import ConnectionFailed

START_TIMEOUT = 15.0
LOG_NAME = "berthd.log"
LOCK_NAME = "berthd.autostart.lock"


def find_berthd(environ: dict[str, str]) -> str | None:
    """The berthd installed beside this Python (the venv), else the first on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "berthd")
    if os.access(beside, os.X_OK):
        return beside
    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", "berthd")
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def answers(socket_path: str) -> bool:
    """Whether a daemon answers GET /_ping with 200 on this socket."""
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(2)
        sock.connect(socket_path)
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        head = b""
        while len(head) < 12:
            data = sock.recv(64)
            if not data:
                break
            head += data
        return head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    except OSError:
        return False
    finally:
        sock.close()


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def socket_lock_holder(socket_path: str) -> str | None:
    """The pid written in ``<socket>.lock`` if a berthd holds that lock, else None."""
    import fcntl  # only here: the normal path, where the daemon answers, never needs it
    try:
        fd = os.open(socket_path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (or not ours to read): no daemon we can see
        return None
    try:
        # Shared and momentary: berthd retries its LOCK_EX briefly, so this probe
        # never makes a starting daemon fail.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # releases the probe's lock
    return None


def start_daemon(host: str, socket_path: str, root: str, environ: dict[str, str],
                 notify=None, timeout: float | None = None) -> int | None:
    """Start berthd for (root, host) unless one already answers or is starting
    on that socket; return its pid (None if we started none).

    Raises ConnectionFailed, naming the log, if it cannot be started or does not
    answer /_ping in time.
    """
    if timeout is None:
        timeout = START_TIMEOUT  # read at call time: tests shorten it
    root = os.path.abspath(root)
    berthd = find_berthd(environ)
    if berthd is None:
        raise ConnectionFailed(f"Cannot connect to the berth daemon at {host}, and no berthd "
                               "executable was found next to python or on PATH to start one")
    try:
        os.makedirs(root, 0o711, exist_ok=True)
        lock_fd = os.open(os.path.join(root, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise ConnectionFailed(f"Cannot connect to the berth daemon at {host}, and cannot start "
                               f"one with data root {root}: {e.strerror}") from e
    log_path = os.path.join(root, LOG_NAME)
    try:
        import fcntl
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if answers(socket_path):  # another CLI started it while we waited for the lock
            return None
        holder = socket_lock_holder(socket_path)
        if holder is not None:
            if notify:
                notify(f"waiting for berthd (pid {holder}) starting on {host}")
            if _wait_for_holder(holder, host, socket_path, timeout):
                return None
            # It let go without answering (it failed or stopped): start our own.
        if notify:
            notify(f"starting berthd (root {root}, log {log_path})")
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                berthd, [berthd, "--root", root, "--host", host], environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, null_fd, 0),
                              (os.POSIX_SPAWN_DUP2, log_fd, 1),
                              (os.POSIX_SPAWN_DUP2, log_fd, 2)],
                setsid=True)
        except OSError as e:
            raise ConnectionFailed(f"cannot start {berthd}: {e.strerror}") from e
        finally:
            os.close(log_fd)
            os.close(null_fd)
        _wait_until_ready(pid, host, socket_path, log_path, timeout)
        return pid
    finally:
        os.close(lock_fd)  # releases the lock


def _wait_for_holder(holder: str, host: str, socket_path: str, timeout: float) -> bool:
    """Wait for the berthd holding the socket's lock to answer: True once it does,
    False if it lets go of the lock first."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if answers(socket_path):
            return True
        if socket_lock_holder(socket_path) is None:
            return answers(socket_path)
        if time.monotonic() >= deadline:
            raise ConnectionFailed(f"berthd (pid {holder}) holds {socket_path}.lock but did not "
                                   f"answer on {host} within {timeout:g} seconds")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def _wait_until_ready(pid: int, host: str, socket_path: str, log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            how = f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"
            tail = _log_tail(log_path)
            raise ConnectionFailed(f"berthd {how} before answering on {host}; see {log_path}"
                                   + (f":\n{tail}" if tail else ""))
        if answers(socket_path):
            return
        if time.monotonic() >= deadline:
            raise ConnectionFailed(f"berthd (pid {pid}) did not answer on {host} within "
                                   f"{timeout:g} seconds; see {log_path}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
