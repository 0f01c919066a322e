"""Volume endpoints (``/volumes/...``) over :class:`berth.volumes.VolumeService`.

The service is synchronous; every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import parse_filters, query_bool
from berth.api.responses import json_response
from berth.errors import InvalidArgument, Unavailable


def _service(request: web.Request):
    service = engine_of(request).volumes
    if service is None:
        raise Unavailable("the volume service is not running")
    return service


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(func, *args)


async def list_volumes(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await _call(_service(request).list, filters))


async def create_volume(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidArgument(f"invalid volume configuration: the body is not JSON ({exc})") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid volume configuration: expected a JSON object")
    if body.get("ClusterVolumeSpec"):
        raise InvalidArgument("cluster volumes are not supported: this node is not a swarm manager")
    name = body.get("Name") or ""
    driver = body.get("Driver") or ""
    volume = await _call(_service(request).create, name, driver, body.get("DriverOpts"),
                         body.get("Labels"))
    return json_response(volume, status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    return json_response(await _call(_service(request).inspect, request.match_info["name"]))


async def remove_volume(request: web.Request) -> web.Response:
    force = query_bool(request.query, "force")
    await _call(_service(request).remove, request.match_info["name"], force)
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await _call(_service(request).prune, filters))


ROUTES = [
    ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/create", create_volume),
    ("POST", "/volumes/prune", prune_volumes),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
]
