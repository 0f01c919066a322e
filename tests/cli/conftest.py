"""Fixtures for the CLI tests: an in-process runner with captured streams and a
fixed clock, and a scripted fake Engine API on a private unix socket."""

from __future__ import annotations

import io
import os
import time

import pytest
from cli_fakeapi import NOW, FakeAPI

from berth_cli.env import Env
from berth_cli.main import run


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
    """Local time is UTC (Go-style timestamps print in local time)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def fake_api(workdir):
    api = FakeAPI(str(workdir / "api.sock"))
    yield api
    api.close()


@pytest.fixture
def run_cli(workdir, utc):
    """run_cli(*argv, stdin=b"", host=None, env={}, stdout_tty=False) -> Result."""

    def runner(*argv, stdin: bytes = b"", host: str | None = None, env: dict | None = None,
               stdout_tty: bool = False, stdin_tty: bool = False, now: float = NOW) -> Result:
        environ = {"HOME": str(workdir), "PATH": os.environ.get("PATH", ""),
                   "BERTH_NO_AUTOSTART": "1", "BERTH_ROOT": str(workdir / "root")}
        if host:
            environ["BERTH_HOST"] = host
        environ.update(env or {})
        out, err = io.BytesIO(), io.BytesIO()
        e = Env(io.BytesIO(stdin), out, err, environ, now=now, stdin_tty=stdin_tty,
                stdout_tty=stdout_tty)
        code = run(list(argv), e)
        return Result(code, out.getvalue(), err.getvalue())

    return runner
