"""The daemon's event bus: what `berth events` / `GET /events` report.

Components publish from any thread; API handlers subscribe from the event loop.
A bounded history lets `--since` replay recent events.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any


class EventBus:
    def __init__(self, history: int = 1024):
        self._lock = threading.Lock()
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._last_ns = 0

    def publish(self, type_: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> dict[str, Any]:
        """Record an event in Docker's /events shape and wake subscribers."""
        event: dict[str, Any] = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
        }
        # Pre-1.22 fields that the docker CLI still reads for containers and images.
        if type_ in ("container", "image"):
            event["status"] = action
            event["id"] = actor_id
            if "image" in event["Actor"]["Attributes"]:
                event["from"] = event["Actor"]["Attributes"]["image"]
        with self._lock:
            # Strictly increasing times under the lock: history order, delivery
            # order and since/until windows all agree, even across threads.
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
            event["time"] = now // 1_000_000_000
            event["timeNano"] = now
            self._history.append(event)
            for loop, queue in self._subscribers:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                except RuntimeError:  # the subscriber's loop is closed
                    pass
        return event

    def history(self, since_ns: int = 0, until_ns: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._history
                    if e["timeNano"] >= since_ns and (until_ns is None or e["timeNano"] <= until_ns)]

    def subscribe(self) -> asyncio.Queue:
        """A queue receiving every event published from now on (call from the loop)."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def close(self) -> None:
        """Daemon shutdown: every subscriber receives ``None`` (end of stream)."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:
                pass

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}


from berth.events.filters import EventFilter  # noqa: E402  (re-exported)

__all__ = ["EventBus", "EventFilter"]
