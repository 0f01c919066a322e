"""Route table plumbing: the ``/vX.Y`` prefix, API version checks and the
headers Docker puts on every response."""

from __future__ import annotations

import platform
from typing import Awaitable, Callable, Iterable

from aiohttp import web

from berth import __version__
from berth.config import API_VERSION, MIN_API_VERSION
from berth.errors import InvalidArgument

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

# Same shape as Docker's router: the version is optional and made of digits and dots.
VERSION_PREFIX = r"/v{api_version:[0-9]+(?:\.[0-9]+)*}"

SERVER_HEADER = f"berth/{__version__} ({platform.system().lower()})"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def add_routes(router: web.UrlDispatcher, routes: Iterable[Route]) -> None:
    """Register each route twice: bare and under ``/vX.Y``."""
    for method, path, handler in routes:
        router.add_route(method, path, handler)
        router.add_route(method, VERSION_PREFIX + path, handler)


def request_api_version(request: web.Request) -> str:
    """The API version the client asked for (the newest when it did not say)."""
    return request.match_info.get("api_version") or API_VERSION


@web.middleware
async def version_middleware(request: web.Request, handler: Handler):
    requested = request.match_info.get("api_version")
    if requested:
        if version_tuple(requested) < version_tuple(MIN_API_VERSION):
            raise InvalidArgument(
                f"client version {requested} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version")
        if version_tuple(requested) > version_tuple(API_VERSION):
            raise InvalidArgument(
                f"client version {requested} is too new. Maximum supported API version is "
                f"{API_VERSION}")
    return await handler(request)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: what Docker sends with every answer, errors included,
    so clients can negotiate from any response."""
    response.headers["Server"] = SERVER_HEADER
    response.headers.setdefault("Api-Version", API_VERSION)
    response.headers.setdefault("Ostype", "linux")
