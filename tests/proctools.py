"""Processes the tests start (ended by PID), and what a starting berthd holds."""

import fcntl
import os
import signal
import socket
import subprocess
from contextlib import contextmanager


def end(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM (after SIGCONT, for one the test left stopped), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def starting_daemon(path):
    """What a starting berthd holds: the socket's lock, with its pid, and a bound
    socket that does not listen yet. Yields release(), to let go early."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    sock = socket.socket(socket.AF_UNIX)
    held = [fd]

    def release():
        sock.close()
        if held:
            os.close(held.pop())

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        sock.bind(str(path))
        yield release
    finally:
        release()
