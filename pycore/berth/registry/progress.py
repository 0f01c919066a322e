"""Docker's JSON progress messages for pull and push.

Each message is ``{"status", "id", "progressDetail", "progress"}`` as the
docker CLI renders them: one line per layer id, redrawn in place on a
terminal; plain lines otherwise (progress bars are dropped there).
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

Send = Callable[[dict[str, Any]], Awaitable[None]]

BAR_WIDTH = 50


def human_size(n: float) -> str:
    """Docker's units.HumanSize: decimal units, 4 significant digits."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def bar(current: int, total: int | None) -> str:
    if not total or total <= 0:
        return human_size(current) if current > 0 else ""
    current = min(current, total)
    filled = int(BAR_WIDTH * current / total)
    arrow = ">" if filled < BAR_WIDTH else ""
    pad = " " * max(BAR_WIDTH - filled - len(arrow), 0)
    return f"[{'=' * filled}{arrow}{pad}] {human_size(current):>8}/{human_size(total)}"


class Progress:
    """Progress of one operation. Bars are rate-limited per id (a message
    every ``interval`` seconds at most, and always the last one)."""

    def __init__(self, send: Send | None, interval: float = 0.1):
        self._send = send
        self.interval = interval
        self._last: dict[str, float] = {}

    async def emit(self, message: dict[str, Any]) -> None:
        if self._send is not None:
            await self._send(message)

    async def status(self, text: str, id_: str | None = None) -> None:
        message: dict[str, Any] = {"status": text}
        if id_:
            message["id"] = id_
        await self.emit(message)

    async def layer(self, id_: str, status: str) -> None:
        """A per-layer line without a bar (``Waiting``, ``Pull complete``)."""
        self._last.pop(id_, None)
        await self.emit({"status": status, "progressDetail": {}, "id": id_})

    async def bar(self, id_: str, status: str, current: int, total: int | None,
                  final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last.get(id_, 0.0) < self.interval:
            return
        self._last[id_] = now
        detail: dict[str, Any] = {"current": current}
        if total:
            detail["total"] = total
        await self.emit({"status": status, "progressDetail": detail,
                         "progress": bar(current, total), "id": id_})

    async def aux(self, data: dict[str, Any]) -> None:
        await self.emit({"progressDetail": {}, "aux": data})


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12]
