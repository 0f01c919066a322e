"""Attaching to a process's stdio through its monitor.

An attachment sees output from the moment the monitor accepts it (earlier output
is in the log only), so ``docker run`` attaches before ``start``. Events read from
an attachment are ``("stdout", bytes)``, ``("stderr", bytes)`` (all output is
``stdout`` with a tty) and finally ``("exit", record)``; after that, None.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any, AsyncIterator, Iterator

from berth.errors import Conflict

from . import client

Event = tuple[str, Any]


def _decode(fr: tuple[int, bytes] | None) -> Event | None:
    if fr is None:
        return None
    kind, payload = fr
    if kind in client.STREAMS:
        return client.STREAMS[kind], payload
    if kind == client.EXIT[0]:
        return "exit", json.loads(payload)
    if kind == client.ERROR[0]:
        return "error", json.loads(payload)
    return "ok", json.loads(payload) if payload else {}


def _attach_request(stdin: bool, stdout: bool, stderr: bool) -> bytes:
    return client.frame(client.ATTACH, {"stdin": stdin, "stdout": stdout, "stderr": stderr})


class Attachment:
    """A blocking attachment (threads, tests). Use as a context manager."""

    def __init__(self, sock: socket.socket, info: dict):
        self.sock = sock
        #: {"terminal": bool, "stdin": bool (stdin accepted)}
        self.info = info

    def read(self) -> Event | None:
        while True:
            ev = _decode(client.read_frame(self.sock))
            # Answers to our own resize requests are not output.
            if ev is None or ev[0] not in ("ok", "error"):
                return ev

    def __iter__(self) -> Iterator[Event]:
        while (ev := self.read()) is not None:
            yield ev
            if ev[0] == "exit":
                return

    def collect(self) -> tuple[bytes, bytes, dict | None]:
        """Read to the end: (stdout, stderr, exit record)."""
        out, err, exit_ = bytearray(), bytearray(), None
        for kind, data in self:
            if kind == "stdout":
                out += data
            elif kind == "stderr":
                err += data
            elif kind == "exit":
                exit_ = data
        return bytes(out), bytes(err), exit_

    def write_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), 32768):
            self.sock.sendall(client.frame(client.STDIN, data[i:i + 32768]))

    def close_stdin(self) -> None:
        """Our stdin ended: the process's stdin closes if the spec says stdinOnce."""
        self.sock.sendall(client.frame(client.STDIN_END))

    def resize(self, height: int, width: int) -> None:
        self.sock.sendall(client.frame(client.RESIZE, {"height": height, "width": width}))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def attach(directory: str | os.PathLike, stdin: bool = False, stdout: bool = True,
           stderr: bool = True) -> Attachment:
    directory = os.path.abspath(os.fspath(directory))
    try:
        s = client.connect(directory)
    except client.MonitorUnreachable:
        raise Conflict(f"cannot attach: the process of {directory} is not running") from None
    s.sendall(_attach_request(stdin, stdout, stderr))
    ev = _decode(client.read_frame(s))
    if ev is None or ev[0] != "ok":
        s.close()
        raise Conflict(f"cannot attach: the process of {directory} is not running")
    return Attachment(s, ev[1])


class AsyncAttachment:
    """An attachment on asyncio streams, for the daemon. ``reader``/``writer`` are
    the raw streams if a handler wants to splice them itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: dict):
        self.reader = reader
        self.writer = writer
        self.info = info

    async def read(self) -> Event | None:
        while True:
            ev = _decode(await client.read_frame_async(self.reader))
            if ev is None or ev[0] not in ("ok", "error"):
                return ev

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (ev := await self.read()) is not None:
            yield ev
            if ev[0] == "exit":
                return

    async def write_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), 32768):
            self.writer.write(client.frame(client.STDIN, data[i:i + 32768]))
        await self.writer.drain()

    async def close_stdin(self) -> None:
        self.writer.write(client.frame(client.STDIN_END))
        await self.writer.drain()

    async def resize(self, height: int, width: int) -> None:
        self.writer.write(client.frame(client.RESIZE, {"height": height, "width": width}))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def __aenter__(self) -> "AsyncAttachment":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def attach_async(directory: str | os.PathLike, stdin: bool = False, stdout: bool = True,
                       stderr: bool = True) -> AsyncAttachment:
    directory = os.path.abspath(os.fspath(directory))
    try:
        s = client.connect(directory)
    except client.MonitorUnreachable:
        raise Conflict(f"cannot attach: the process of {directory} is not running") from None
    s.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=s)
    writer.write(_attach_request(stdin, stdout, stderr))
    await writer.drain()
    ev = _decode(await client.read_frame_async(reader))
    if ev is None or ev[0] != "ok":
        writer.close()
        raise Conflict(f"cannot attach: the process of {directory} is not running")
    return AsyncAttachment(reader, writer, ev[1])
