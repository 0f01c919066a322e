"""Fixtures for the CLI's container and volume commands: an in-process runner
(captured streams, fixed clock, UTC), the scripted engine, and a real berthd
with the busybox image for the end-to-end tests."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakeengine import NOW, FakeEngine  # noqa: E402

from berth_cli.env import Env  # noqa: E402
from berth_cli.main import run  # noqa: E402


class Result:
    def __init__(self, code: int, out: bytes, err: bytes):
        self.code = code
        self.out_bytes = out
        self.out = out.decode("utf-8", "replace")
        self.err = err.decode("utf-8", "replace")

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def engine(workdir):
    fake = FakeEngine(str(workdir / "engine.sock"))
    yield fake
    fake.close()


@pytest.fixture
def berth(workdir, utc, engine):
    """berth(*argv, stdin=b"", env={}, stdout_tty=False) -> Result, run in process against the engine."""

    def runner(*argv, stdin: bytes = b"", env: dict | None = None, stdout_tty: bool = False,
               stdin_tty: bool = False, now: float = NOW) -> Result:
        environ = {"HOME": str(workdir), "PATH": os.environ.get("PATH", ""), "BERTH_NO_AUTOSTART": "1",
                   "BERTH_ROOT": str(workdir / "root"), "BERTH_HOST": engine.host}
        environ.update(env or {})
        out, err = io.BytesIO(), io.BytesIO()
        e = Env(io.BytesIO(stdin), out, err, environ, now=now, stdin_tty=stdin_tty, stdout_tty=stdout_tty)
        code = run(list(argv), e)
        return Result(code, out.getvalue(), err.getvalue())

    return runner


@pytest.fixture
def busybox(daemon, busybox_rootfs):
    """A real daemon with busybox:latest (CMD sh) imported through the CLI; the image ID."""
    r = daemon.berth("import", "--change", 'CMD ["sh"]', str(busybox_rootfs), "busybox:latest")
    return r.stdout.strip()
