"""The monitor's control protocol (see rust/monitor/src/proto.rs): frames of one
kind byte, a big-endian u32 length and a payload, over ``<dir>/monitor.sock``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any

HEADER = struct.Struct(">BI")

# Requests
STATE, START, KILL, RESIZE, WAIT, ATTACH, STDIN, STDIN_END = (
    b"S", b"G", b"K", b"R", b"W", b"A", b"i", b"c")
# Answers and stream frames
OK, ERROR, EXIT, STDOUT, STDERR = b"O", b"E", b"X", b"1", b"2"

#: Frame kind -> Docker's stream name.
STREAMS = {STDOUT[0]: "stdout", STDERR[0]: "stderr"}


class MonitorUnreachable(OSError):
    """Nothing answers on the socket: the monitor has exited (or died)."""


def socket_path(directory: str) -> str:
    return os.path.join(directory, "monitor.sock")


def connect(directory: str) -> socket.socket:
    """A connected socket to the monitor of ``directory``. A long path (sun_path
    holds 108 bytes) is reached through a /proc/self/fd link to the directory."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    path = socket_path(directory)
    try:
        if len(os.fsencode(path)) < 100:
            s.connect(path)
        else:
            fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                s.connect(f"/proc/self/fd/{fd}/monitor.sock")
            finally:
                os.close(fd)
    except OSError as e:
        s.close()
        raise MonitorUnreachable(e.errno, f"monitor of {directory} is not answering: {e.strerror}") from None
    return s


def frame(kind: bytes, payload: bytes | dict | None = None) -> bytes:
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    payload = payload or b""
    return HEADER.pack(kind[0], len(payload)) + payload


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(s: socket.socket) -> tuple[int, bytes] | None:
    """(kind, payload), or None at EOF."""
    head = _recv_exact(s, HEADER.size)
    if head is None:
        return None
    kind, length = HEADER.unpack(head)
    payload = _recv_exact(s, length) if length else b""
    if payload is None:
        return None
    return kind, payload


async def read_frame_async(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    try:
        head = await reader.readexactly(HEADER.size)
        kind, length = HEADER.unpack(head)
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        return None
    return kind, payload


async def request_async(directory: str, kind: bytes, payload: dict | None = None,
                        timeout: float = 30.0) -> tuple[int, Any]:
    """:func:`request` on the event loop (the connect and the small send do not
    block on a listening unix socket; the answer is awaited)."""
    s = connect(directory)
    loop = asyncio.get_running_loop()

    async def recv_exact(n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = await loop.sock_recv(s, n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    async def exchange() -> tuple[int, bytes] | None:
        await loop.sock_sendall(s, frame(kind, payload))
        head = await recv_exact(HEADER.size)
        if head is None:
            return None
        k, length = HEADER.unpack(head)
        data = await recv_exact(length) if length else b""
        return None if data is None else (k, data)

    try:
        s.setblocking(False)
        answer = await asyncio.wait_for(exchange(), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise MonitorUnreachable(getattr(e, "errno", 0) or 0, f"monitor of {directory}: {e}") from None
    finally:
        s.close()
    return _decoded(directory, answer)


def _decoded(directory: str, answer: tuple[int, bytes] | None) -> tuple[int, Any]:
    if answer is None:
        raise MonitorUnreachable(0, f"monitor of {directory} closed the connection")
    k, data = answer
    return k, json.loads(data) if data else {}


def request(directory: str, kind: bytes, payload: dict | None = None,
            timeout: float | None = 30.0) -> tuple[int, Any]:
    """One request, one answer: (kind, decoded JSON)."""
    s = connect(directory)
    try:
        s.settimeout(timeout)
        s.sendall(frame(kind, payload))
        answer = read_frame(s)
    except OSError as e:
        raise MonitorUnreachable(e.errno, f"monitor of {directory}: {e}") from None
    finally:
        s.close()
    return _decoded(directory, answer)
