"""The Docker Engine API (v1.41 shapes) served by berthd.

:func:`make_app` builds the aiohttp application for an Engine. Handlers live
one module per group (system, images, events) and each module exports its
``ROUTES``; every route answers with and without the ``/vX.Y`` prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from berth.api import (archive, build, containers, events, images, networks, registry, system,
                       volumes)
from berth.api import exec as exec_
from berth.api.context import ENGINE, engine_of
from berth.api.errors import error_middleware
from berth.api.routing import add_common_headers, add_routes, version_middleware

if TYPE_CHECKING:
    from berth.daemon.engine import Engine

ROUTE_GROUPS = (system.ROUTES, images.ROUTES, events.ROUTES, containers.ROUTES, exec_.ROUTES,
                registry.ROUTES, volumes.ROUTES, archive.ROUTES, build.ROUTES, networks.ROUTES)

__all__ = ["make_app", "ENGINE", "engine_of"]


def make_app(engine: "Engine") -> web.Application:
    # error_middleware is outermost so version errors get Docker's body too.
    # Bodies are streamed by the handlers that take them, so no size cap applies
    # to those; the cap below only bounds bodies read whole (JSON requests).
    app = web.Application(middlewares=[error_middleware, version_middleware],
                          client_max_size=64 << 20)
    app[ENGINE] = engine
    for routes in ROUTE_GROUPS:
        add_routes(app.router, routes)
    app.on_response_prepare.append(add_common_headers)

    async def end_event_streams(app: web.Application) -> None:
        engine.events.close()

    app.on_shutdown.append(end_event_streams)

    # Services with work on the event loop (container exit watchers, restart
    # policies) start once the loop serves and stop before it closes.
    async def start_background(app: web.Application) -> None:
        await engine.start_background()

    async def stop_background(app: web.Application) -> None:
        await engine.stop_background()

    app.on_startup.append(start_background)
    app.on_cleanup.append(stop_background)
    return app
