"""Start berthd in the background when nothing answers on its socket.

The "embedded default": one command works on a fresh machine. The daemon gets
its own session (it outlives the CLI and ignores the terminal's signals), its
output goes to ``<root>/berthd.log``, and a lock file in the root makes CLIs
that start at the same moment share one daemon instead of racing.
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


def start_daemon(host: str, socket_path: str, root: str, environ: dict[str, str],
                 notify=None, timeout: float = START_TIMEOUT) -> int | None:
    """Start berthd for (root, host) unless one already answers; return its pid.

    Raises ConnectionFailed, naming the log, if it cannot be started or does not
    answer /_ping in time.
    """
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
