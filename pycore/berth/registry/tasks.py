"""Running a set of transfers together: the first failure cancels the rest
and waits for them to clean up before it is raised (``asyncio.gather``
alone would leave them running after the caller has given up)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Iterable


async def run_all(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
