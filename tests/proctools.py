"""Ending processes a test started, by PID."""

import signal
import subprocess


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
