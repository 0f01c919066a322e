"""Reading a container's json-file log (written by its monitor) for
``GET /containers/{id}/logs`` and ``attach?logs=1``: since/until/tail filters,
timestamps, and following new records through inotify (no polling).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import os
import struct
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

from berth.images.timefmt import parse_rfc3339

CHUNK = 1 << 16
_IN_MODIFY = 0x00000002
_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000

STDOUT, STDERR = 1, 2


@dataclass
class Record:
    stream: int       # 1 stdout, 2 stderr
    data: bytes
    time_ns: int
    time: str         # as written


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed stream frame: type, 3 zero bytes, big-endian size."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def format_timestamp(ns: int) -> str:
    """RFC 3339 with a fixed 9-digit fraction, as ``docker logs -t`` prints."""
    import time
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def parse_line(line: bytes) -> Record | None:
    try:
        doc = json.loads(line)
        stream = STDERR if doc.get("stream") == "stderr" else STDOUT
        text = doc.get("log", "")
        t = doc.get("time", "")
        ns = parse_rfc3339(t) or 0
    except (ValueError, AttributeError, TypeError):
        return None  # a torn last line while the monitor writes: read again later
    return Record(stream, text.encode("utf-8", "surrogateescape"), ns, t)


@dataclass
class LogOptions:
    stdout: bool = True
    stderr: bool = True
    since_ns: int | None = None
    until_ns: int | None = None
    tail: int | None = None     # None: all
    timestamps: bool = False

    def wants(self, r: Record) -> bool:
        if r.stream == STDOUT and not self.stdout or r.stream == STDERR and not self.stderr:
            return False
        if self.since_ns is not None and r.time_ns < self.since_ns:
            return False
        return True

    def past_until(self, r: Record) -> bool:
        return self.until_ns is not None and r.time_ns > self.until_ns

    def render(self, r: Record) -> bytes:
        if self.timestamps:
            return format_timestamp(r.time_ns).encode() + b" " + r.data
        return r.data


def _tail_offset(f, lines: int) -> int:
    """The offset of the last ``lines`` lines, read backwards in blocks."""
    if lines <= 0:
        f.seek(0, os.SEEK_END)
        return f.tell()
    end = f.seek(0, os.SEEK_END)
    pos, count, block = end, 0, 1 << 16
    # A trailing newline ends the last line; it does not start another.
    skip_last = True
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step)
        for i in range(len(data) - 1, -1, -1):
            if data[i] == 0x0A:
                if skip_last and pos + i == end - 1:
                    continue
                count += 1
                if count == lines:
                    return pos + i + 1
        skip_last = False
    return 0


class LogReader:
    """Complete records of a log file from an offset on (a partial last line
    stays for the next read)."""

    def __init__(self, path: str, opts: LogOptions):
        self.path = path
        self.opts = opts
        self.file = None
        self.buffer = b""
        self.done = False  # `until` passed

    def open(self) -> bool:
        try:
            self.file = open(self.path, "rb")
        except FileNotFoundError:
            return False
        if self.opts.tail is not None:
            self.file.seek(_tail_offset(self.file, self.opts.tail))
        return True

    def read_available(self) -> list[bytes]:
        """Rendered records that have arrived since the last call."""
        if self.file is None and not self.open():
            return []
        out = []
        while not self.done:
            chunk = self.file.read(CHUNK)
            if not chunk:
                break
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                if not line:
                    continue
                r = parse_line(line)
                if r is None:
                    continue
                if self.opts.past_until(r):
                    self.done = True
                    break
                if self.opts.wants(r):
                    out.append((r.stream, self.opts.render(r)))
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def read_all(path: str, opts: LogOptions) -> Iterator[tuple[int, bytes]]:
    reader = LogReader(path, opts)
    try:
        yield from reader.read_available()
    finally:
        reader.close()


class _Inotify:
    """One inotify watch on a file, readable through the event loop."""

    _libc = None

    def __init__(self, path: str):
        if _Inotify._libc is None:
            _Inotify._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc = _Inotify._libc
        self.fd = libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MODIFY) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


async def follow(path: str, opts: LogOptions, stopped: "asyncio.Future") -> AsyncIterator[list]:
    """Batches of rendered records: what is there, then what the monitor
    appends, until ``stopped`` completes (the container exited; its monitor
    has flushed the log by then) and the rest is read."""
    loop = asyncio.get_running_loop()
    reader = LogReader(path, opts)
    wake = asyncio.Event()
    watch = None
    try:
        if os.path.exists(path):
            watch = _Inotify(path)
            loop.add_reader(watch.fd, lambda: (watch.drain(), wake.set()))
        while True:
            batch = await asyncio.to_thread(reader.read_available)
            if batch:
                yield batch
            if reader.done or stopped.done():
                batch = await asyncio.to_thread(reader.read_available)
                if batch:
                    yield batch
                return
            wake.clear()
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait([waiter, stopped], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
    finally:
        if watch is not None:
            loop.remove_reader(watch.fd)
            watch.close()
        reader.close()
