"""Network endpoints (``/networks/...``) over :class:`berth.networks.NetworkService`.

Shapes are Docker's: ``POST /networks/create`` answers 201 ``{"Id", "Warning"}``,
``connect``/``disconnect`` answer 200 with an empty body, ``DELETE`` 204,
``prune`` ``{"NetworksDeleted": [names]}``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import parse_filters, query_bool
from berth.api.responses import json_response
from berth.errors import InvalidArgument, Unavailable


def _service(request: web.Request):
    engine = engine_of(request)
    # The Engine may own the service itself; until it does, the container
    # service creates and holds it (containers cannot run without networks).
    service = getattr(engine, "networks", None)
    if service is None:
        service = getattr(getattr(engine, "containers", None), "networks", None)
    if service is None:
        raise Unavailable("the network service is not running")
    return service


async def _body(request: web.Request, what: str) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON in the {what}: {exc}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument(f"invalid {what}: expected a JSON object")
    return body


async def list_networks(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(_service(request).list(filters))


async def inspect_network(request: web.Request) -> web.Response:
    query_bool(request.query, "verbose")  # swarm-only detail; checked, nothing to add
    scope = request.query.get("scope") or ""
    if scope not in ("", "local"):
        raise InvalidArgument(f"invalid scope {scope!r}: berth has local networks only")
    return json_response(_service(request).inspect(request.match_info["id"]))


async def create_network(request: web.Request) -> web.Response:
    body = await _body(request, "network configuration")
    network_id, warning = await _service(request).create(body)
    return json_response({"Id": network_id, "Warning": warning}, status=201)


async def remove_network(request: web.Request) -> web.Response:
    await _service(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def connect_network(request: web.Request) -> web.Response:
    body = await _body(request, "connect request")
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("connect: the container to connect is missing (Container)")
    await _service(request).connect(request.match_info["id"], container,
                                    body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    body = await _body(request, "disconnect request")
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("disconnect: the container to disconnect is missing (Container)")
    await _service(request).disconnect(request.match_info["id"], container,
                                       bool(body.get("Force")))
    return web.Response(status=200)


async def prune_networks(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await _service(request).prune(filters))


ROUTES = [
    ("GET", "/networks", list_networks),
    ("POST", "/networks/create", create_network),
    ("POST", "/networks/prune", prune_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", connect_network),
    ("POST", "/networks/{id}/disconnect", disconnect_network),
]
