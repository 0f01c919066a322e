"""What a handler may reach from its request: the daemon's Engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from berth.daemon.engine import Engine

ENGINE: web.AppKey["Engine"] = web.AppKey("engine")


def engine_of(request: web.Request) -> "Engine":
    return request.app[ENGINE]
