"""Registry endpoints: pull (the ``fromImage`` branch of ``POST
/images/create``), ``POST /images/{name}/push``, ``POST /auth`` and ``GET
/distribution/{name}/json``, over :class:`berth.registry.RegistryService`.

Pull and push stream Docker's JSON progress. Nothing is sent before the
first progress message, so a failure before it (no such manifest, image not
local, bad credentials) is an ordinary HTTP error that every client reports;
after it, errors travel in the stream as ``errorDetail``.

berth-only options (push ``compression`` and ``chunk_size``) are taken on
``/berth/images/{name}/push`` only, so the Docker path keeps Docker's meaning.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import query_int
from berth.api.responses import json_response
from berth.api.streams import JSONStream
from berth.errors import BerthError, InvalidArgument

if TYPE_CHECKING:
    from berth.daemon.engine import Engine
    from berth.registry import RegistryOptions, RegistryService

log = logging.getLogger("berth.api")

AUTH_HEADER = "X-Registry-Auth"

_options: "weakref.WeakKeyDictionary[Engine, RegistryOptions]" = weakref.WeakKeyDictionary()
_services: "weakref.WeakKeyDictionary[Engine, RegistryService]" = weakref.WeakKeyDictionary()


def configure(engine: "Engine", options: "RegistryOptions") -> None:
    """The daemon's registry options (``--registry-mirror``,
    ``--insecure-registry``), set once at start-up."""
    _options[engine] = options
    _services.pop(engine, None)


def registry_of(engine: "Engine") -> "RegistryService":
    """The engine's RegistryService, created on first use."""
    service = _services.get(engine)
    if service is None:
        from berth.registry import RegistryOptions, RegistryService
        service = RegistryService(engine.images, engine.events,
                                  _options.get(engine) or RegistryOptions())
        _services[engine] = service
    return service


def registry_info(engine: "Engine") -> dict[str, Any]:
    """``RegistryConfig`` for ``GET /info``: mirrors and insecure registries
    as configured with ``--registry-mirror`` / ``--insecure-registry``."""
    from berth.registry import RegistryOptions
    return (_options.get(engine) or RegistryOptions()).info()


def _auth(request: web.Request):
    from berth.registry import AuthConfig
    return AuthConfig.from_header(request.headers.get(AUTH_HEADER))


async def _stream(request: web.Request,
                  operation: Callable[[Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[Any]]
                  ) -> web.StreamResponse:
    stream = JSONStream(request)
    try:
        await operation(stream.send)
    except BerthError as exc:
        if not stream.started:
            raise
        await stream.error(exc.message)
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as exc:  # noqa: BLE001 - progress was sent: report in the stream
        if not stream.started:
            raise
        log.exception("%s %s failed", request.method, request.path)
        await stream.error(f"internal error: {type(exc).__name__}: {exc}")
    return await stream.finish()


# --- pull ---------------------------------------------------------------------------

def pull_reference(from_image: str, tag: str) -> tuple[str, bool]:
    """``fromImage`` and ``tag`` -> (reference, all tags). ``tag`` may be a
    digest (the docker CLI sends one there) and replaces a tag in
    ``fromImage``; neither tag nor digest means every tag, as in moby."""
    from berth.images.reference import is_digest, parse_normalized, parse_tag

    ref = parse_normalized(from_image)
    if tag:
        if is_digest(tag):
            ref = ref.trim().with_digest(tag)
        else:
            if ref.digest is not None:
                raise InvalidArgument(f"cannot pull {from_image} with tag {tag!r}: the reference "
                                      "has a digest")
            ref = ref.trim().with_tag(parse_tag(tag))
    return str(ref), ref.is_name_only


async def pull_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=NAME[&tag=TAG][&platform=P]``."""
    query = request.query
    if query.get("fromSrc"):
        raise InvalidArgument("fromImage and fromSrc are exclusive: pull or import, not both")
    reference, all_tags = pull_reference(query["fromImage"], query.get("tag", ""))
    auth = _auth(request)
    platform = query.get("platform") or None
    service = registry_of(engine_of(request))

    async def run(send):
        await service.pull(reference, auth, platform, send, all_tags=all_tags)

    return await _stream(request, run)


# --- push ---------------------------------------------------------------------------

async def _push(request: web.Request, extensions: bool) -> web.StreamResponse:
    name = request.match_info["name"]
    tag = request.query.get("tag") or None
    compression = chunk_size = None
    if extensions:
        compression = request.query.get("compression") or None
        if compression not in (None, "gzip", "zstd"):
            raise InvalidArgument(f"invalid value for query parameter 'compression': "
                                  f"{compression!r} (use gzip or zstd)")
        chunk_size = query_int(request.query, "chunk_size", None, minimum=1)
    auth = _auth(request)
    service = registry_of(engine_of(request))

    async def run(send):
        await service.push(name, tag, auth, send, compression=compression, chunk_size=chunk_size)

    return await _stream(request, run)


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=TAG``: without a tag, every local tag."""
    return await _push(request, extensions=False)


async def push_image_berth(request: web.Request) -> web.StreamResponse:
    """``POST /berth/images/{name}/push?tag=&compression=gzip|zstd&chunk_size=N``."""
    return await _push(request, extensions=True)


# --- login and distribution ---------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    from berth.registry import AuthConfig

    try:
        body = await request.json(loads=_loads)
    except ValueError as exc:
        raise InvalidArgument(f"invalid auth configuration: {exc}") from None
    auth = AuthConfig.from_dict(body)
    result = await registry_of(engine_of(request)).login(auth)
    return json_response(result)


def _loads(text: str) -> Any:
    import json
    if not text.strip():
        raise ValueError("the request body is empty")
    return json.loads(text)


async def distribution_inspect(request: web.Request) -> web.Response:
    service = registry_of(engine_of(request))
    return json_response(await service.inspect_distribution(request.match_info["name"], _auth(request)))


ROUTES = [
    ("POST", "/images/{name:.+}/push", push_image),
    ("POST", "/berth/images/{name:.+}/push", push_image_berth),
    ("POST", "/auth", login),
    ("GET", "/distribution/{name:.+}/json", distribution_inspect),
]

__all__ = ["ROUTES", "configure", "registry_info", "registry_of", "pull_image", "pull_reference"]
