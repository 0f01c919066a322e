"""Docker's streamed JSON answers (import, load, events): one JSON object per
line, errors as ``{"errorDetail": {"message": ...}, "error": ...}``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any, AsyncIterable, Awaitable, Callable

from aiohttp import web

from berth.api.responses import JSON


STREAMING = "berth.streaming"


def mark_streaming(request: web.Request) -> None:
    """Headers are sent: an error can no longer become a status code."""
    request[STREAMING] = True


class JSONStream:
    def __init__(self, request: web.Request):
        self.request = request
        self.response = web.StreamResponse(status=200)
        self.response.headers["Content-Type"] = JSON

    @property
    def started(self) -> bool:
        return self.response.prepared

    async def start(self) -> None:
        if not self.response.prepared:
            await self.response.prepare(self.request)
            mark_streaming(self.request)

    async def send(self, message: dict[str, Any]) -> None:
        await self.start()
        await self.response.write(json.dumps(message).encode() + b"\r\n")

    async def error(self, message: str) -> None:
        await self.send({"errorDetail": {"message": message}, "error": message})

    async def finish(self) -> web.StreamResponse:
        await self.start()
        await self.response.write_eof()
        return self.response

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()


def _human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def progress_message(status: str, current: int, total: int | None, id_: str = "") -> dict[str, Any]:
    """A progress line the docker CLI draws as a bar (``progressDetail`` plus
    a pre-rendered ``progress`` string for clients that just print it)."""
    if total:
        width = 50
        filled = min(width, int(width * current / total))
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        text = f"[{bar}] {_human_size(current)}/{_human_size(total)}"
    else:
        text = _human_size(current)
    message: dict[str, Any] = {"status": status,
                               "progressDetail": {"current": current, **({"total": total} if total else {})},
                               "progress": text}
    if id_:
        message["id"] = id_
    return message


# --- request bodies -----------------------------------------------------------------------

BODY_CHUNK = 1 << 20
SPOOL_FLUSH = 4 << 20


async def spool_body(request: web.Request, source: AsyncIterable[bytes] | None = None,
                     on_progress: Callable[[int], Awaitable[None]] | None = None) -> str:
    """Copy a request body (or another async byte source) to a private temp file
    in the data root and return its path; remove it on failure. Disk writes
    happen in a worker thread, a few MiB at a time, so a slow disk never stalls
    the event loop."""
    from berth.api.context import engine_of

    if source is None:
        source = request.content.iter_chunked(BODY_CHUNK)
    fd, path = engine_of(request).upload_file()
    try:
        with os.fdopen(fd, "wb") as out:
            pending = bytearray()
            written = 0
            async for chunk in source:
                pending += chunk
                written += len(chunk)
                if len(pending) >= SPOOL_FLUSH:
                    await asyncio.to_thread(out.write, bytes(pending))
                    pending.clear()
                if on_progress is not None:
                    await on_progress(written)
            if pending:
                await asyncio.to_thread(out.write, bytes(pending))
        return path
    except BaseException:
        remove_spooled(path)
        raise


def remove_spooled(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
