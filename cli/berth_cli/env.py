"""The CLI's environment: streams, variables, config dir and clock.

Commands only touch the outside world through an Env, so tests can run them in
process with byte buffers and a fixed clock instead of spawning a subprocess.
"""

import sys
import time

from . import lean_os

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_ROOT = "/var/lib/berth"


class Stream:
    """A binary stream that also takes text (UTF-8), with a tty flag."""

    __slots__ = ("raw", "_tty")

    def __init__(self, raw, tty: bool | None = None):
        self.raw = raw
        self._tty = tty

    def write(self, text: str) -> None:
        self.raw.write(text.encode("utf-8", "surrogateescape"))

    def write_bytes(self, data: bytes) -> None:
        self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        if self._tty is None:
            try:
                self._tty = lean_os.isatty(self.raw.fileno())
            except (AttributeError, OSError, ValueError):
                self._tty = False
        return self._tty

    def readline(self) -> str:
        return self.raw.readline().decode("utf-8", "replace")


class Env:
    def __init__(self, stdin, stdout, stderr, environ: dict[str, str] | None = None,
                 now: float | None = None, stdin_tty: bool | None = None,
                 stdout_tty: bool | None = None, stderr_tty: bool | None = None):
        """Binary streams; a tty flag of None means "ask the stream's file descriptor"."""
        self.stdin = Stream(stdin, stdin_tty)
        self.out = Stream(stdout, stdout_tty)
        self.err = Stream(stderr, stderr_tty)
        self.environ = lean_os.environ() if environ is None else environ
        self._now = now

    @classmethod
    def from_process(cls) -> "Env":
        # A stream the parent closed (cron, `<&-`) is None in sys: use /dev/null instead.
        def binary(stream, mode):
            return stream.buffer if stream is not None else open(lean_os.devnull, mode)
        return cls(binary(sys.stdin, "rb"), binary(sys.stdout, "wb"), binary(sys.stderr, "wb"))

    def now(self) -> float:
        """Seconds since the epoch (fixed in tests, so "2 minutes ago" is stable)."""
        return self._now if self._now is not None else time.time()

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name)
        return value if value else default

    @property
    def config_dir(self) -> str:
        return self.get("BERTH_CONFIG") or self.get("HOME", "/root").rstrip("/") + "/.berth"
