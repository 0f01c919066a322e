"""Moving a downloaded blob to disk off the event loop, and unpacking it
while it downloads.

:class:`BlobSink` takes the bytes the loop receives and, on a thread of its
own, appends them to a content-store ingest (hashed as written) and, for a
layer, writes them into a pipe that the Rust unpacker reads on another
thread (:func:`start_unpack`): one pass over the network bytes, no second
read of the blob. Back-pressure: the loop waits when too many bytes are
queued, so a slow disk slows the download instead of filling memory.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import threading
from typing import Any, Callable

from berth.content import Writer

HIGH_WATER = 16 << 20
LOW_WATER = 4 << 20
REPLAY_CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20

_END = object()
_ABORT = object()


def make_pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # the default size works, only with more wake-ups
    return read_fd, write_fd


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any,
            error: BaseException | None) -> None:
    def apply() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    try:
        loop.call_soon_threadsafe(apply)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


class BlobSink:
    def __init__(self, writer: Writer, pipe_fd: int | None = None, name: str = "blob"):
        self._loop = asyncio.get_running_loop()
        self._writer = writer
        self._pipe = pipe_fd
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._room = asyncio.Event()
        self._room.set()
        self._done: asyncio.Future = self._loop.create_future()
        self._done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"berth-sink-{name}", daemon=True)
        self._thread.start()

    async def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:
            raise RuntimeError("blob sink is closed")
        with self._lock:
            self._pending += len(data)
            if self._pending > HIGH_WATER:
                self._room.clear()
        self._queue.put(data)
        if not self._room.is_set():
            await self._room.wait()
        if self._error is not None:
            raise self._error

    async def finish(self) -> None:
        """All bytes are in: flush them, close the pipe (EOF for the
        unpacker) and wait. Raises what went wrong on the thread."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(_END)
        await asyncio.shield(self._done)

    async def abort(self) -> None:
        """Stop without writing what is still queued; close the pipe."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(_ABORT)
        try:
            await asyncio.shield(self._done)
        except Exception:  # noqa: BLE001 - the caller is already failing
            pass

    def _write_pipe(self, data: bytes | memoryview) -> None:
        if self._pipe is None:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._pipe, view)
                view = view[n:]
        except BrokenPipeError:
            # The unpacker stopped reading (it failed, or the snapshot
            # already existed); the blob itself is still wanted.
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def _replay(self) -> None:
        """A resumed ingest: the unpacker needs the bytes an earlier attempt
        already stored before the new ones."""
        if self._pipe is None or self._writer.offset == 0:
            return
        remaining = self._writer.offset
        with open(self._writer.path, "rb") as f:
            while remaining > 0 and self._pipe is not None:
                chunk = f.read(min(REPLAY_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                self._write_pipe(chunk)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._replay()
            while True:
                item = self._queue.get()
                if item is _END or item is _ABORT:
                    break
                if error is None:
                    try:
                        self._writer.write(item)
                        self._write_pipe(item)
                    except BaseException as e:  # noqa: BLE001 - reported to the loop
                        error = e
                        self._error = e
                with self._lock:
                    self._pending -= len(item)
                    wake = self._pending <= LOW_WATER or error is not None
                if wake:
                    try:
                        self._loop.call_soon_threadsafe(self._room.set)
                    except RuntimeError:
                        pass
        except BaseException as e:  # noqa: BLE001
            error = error or e
            self._error = error
        finally:
            self._close_pipe()
            try:
                self._loop.call_soon_threadsafe(self._room.set)
            except RuntimeError:
                pass
            _settle(self._loop, self._done, None, error)


def start_unpack(prepare: Callable[[int], Any], read_fd: int, name: str) -> asyncio.Future:
    """Run ``prepare(read_fd)`` (a snapshot unpack reading the pipe) on a
    thread of its own, so it can never wait behind the sink that feeds it in
    a shared pool; the read end is closed when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def run() -> None:
        result, error = None, None
        try:
            result = prepare(read_fd)
        except BaseException as e:  # noqa: BLE001 - reported to the loop
            error = e
        finally:
            os.close(read_fd)
        _settle(loop, future, result, error)

    threading.Thread(target=run, name=f"berth-unpack-{name}", daemon=True).start()
    return future
