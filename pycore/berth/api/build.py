"""Build endpoints: Docker's classic builder protocol and berth's in-place variant.

- ``POST /build``: the context is the request body (a tar, plain or
  compressed); query parameters as Docker's (``t`` repeated, ``dockerfile``,
  ``buildargs`` and ``labels`` as JSON, ``target``, ``nocache``, ``pull``,
  ``q``, ``rm``/``forcerm``, ``platform``, ``networkmode``). The answer is a
  stream of JSON lines: ``{"stream": "Step 1/5 : FROM busybox\\n"}``,
  ``{"aux": {"ID": "sha256:..."}}``, and on failure ``{"errorDetail":
  {"message": ..., "code": N}, "error": ...}``. A request that is wrong
  before anything runs (bad Dockerfile, unknown target, broken
  ``.dockerignore``) gets an HTTP error instead, as from Docker.
- ``POST /berth/build?context=/abs/dir``: the same build, the daemon reading
  the context directory in place (no tar, no upload). ``context_id=DEV:INO``
  lets the CLI check that the daemon sees the directory it means (else 412,
  and the CLI uploads a tar). ``dockerfile=-`` takes the Dockerfile from the
  body.
- ``POST /build/prune`` and ``POST /build/cancel?id=``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import Any

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import parse_filters, query_bool, query_int
from berth.api.responses import JSON, json_response
from berth.api.streams import mark_streaming, remove_spooled, spool_body
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.api")

CHUNK = 1 << 20
_SERVICE_LOCK = threading.Lock()


class PreconditionFailed(BerthError):
    status = 412


def build_service(engine):
    """The engine's BuildService (created here when the engine has none yet)."""
    service = getattr(engine, "builder", None)
    if service is None:
        with _SERVICE_LOCK:
            service = getattr(engine, "builder", None)
            if service is None:
                from berth.builder import BuildService
                service = BuildService(engine.config, engine.images, engine.events,
                                       db=getattr(engine, "db", None) or engine.images.db)
                engine.builder = service
    return service


def _json_param(query, name: str, what: str) -> dict:
    raw = query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"error reading {what}: {e}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"error reading {what}: expected a JSON object")
    return value


def _build_request(request: web.Request):
    from berth.builder import BuildRequest

    query = request.query
    if query.get("remote"):
        raise InvalidArgument("remote build contexts are not supported by this daemon: "
                              "send the context as the request body")
    version = query.get("version", "1")
    if version not in ("", "1"):
        if version == "2":
            raise InvalidArgument("BuildKit (builder version 2) is not supported by this daemon; "
                                  "use the classic builder (DOCKER_BUILDKIT=0)")
        raise InvalidArgument(f'invalid version "{version}"')
    build_args = _json_param(query, "buildargs", "build args")
    for key, value in build_args.items():
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"error reading build args: the value of {key!r} is not a string")
    labels = _json_param(query, "labels", "labels")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"error reading labels: the value of {key!r} is not a string")
    for name in ("nocache", "pull", "q", "rm", "forcerm", "squash"):
        query_bool(query, name)
    if query_bool(query, "squash"):
        raise InvalidArgument("squash is only supported with experimental mode")
    for name in ("memory", "memswap", "cpushares", "cpuperiod", "cpuquota", "shmsize"):
        query_int(query, name)
    auth = None
    header = request.headers.get("X-Registry-Config")
    if header:
        import base64
        try:
            auth = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        except ValueError:
            auth = None  # Docker ignores an undecodable header too
    return BuildRequest(
        dockerfile=query.get("dockerfile", ""),
        tags=query.getall("t", []),
        build_args=build_args,
        target=query.get("target", ""),
        no_cache=query_bool(query, "nocache"),
        pull=query_bool(query, "pull"),
        labels=labels,
        platform=query.get("platform", ""),
        network=query.get("networkmode", ""),
        build_id=query.get("buildid", ""),
        auth=auth,
    )


async def build(request: web.Request) -> web.StreamResponse:
    """``POST /build``: the context tar is the body."""
    build_request = _build_request(request)
    path = await spool_body(request)
    build_request.context_tar = path
    try:
        return await _run(request, build_request)
    finally:
        remove_spooled(path)


async def berth_build(request: web.Request) -> web.StreamResponse:
    """``POST /berth/build``: the context is read in place."""
    build_request = _build_request(request)
    context = request.query.get("context", "")
    if not context or not os.path.isabs(context):
        raise InvalidArgument("missing query parameter 'context': the absolute path of the "
                              "build context directory")
    expected = request.query.get("context_id", "")
    try:
        st = os.stat(context)
    except OSError as e:
        raise PreconditionFailed(f"cannot read the build context {context}: {e.strerror}") from None
    if expected and expected != f"{st.st_dev}:{st.st_ino}":
        raise PreconditionFailed(f"the build context {context} the daemon sees is not the "
                                 "client's directory")
    build_request.context_dir = context
    build_request.allow_outside_dockerfile = True
    if build_request.dockerfile == "-":
        build_request.dockerfile = ""
        build_request.dockerfile_content = await request.read()
    return await _run(request, build_request)


def _registry_puller(engine, loop: asyncio.AbstractEventLoop):
    """FROM of an image that is not local: the daemon's registry client
    (async, on the event loop), called from a build thread."""
    try:
        from berth.api.registry import registry_of
    except ImportError:
        return None

    def pull(reference: str, platform: str | None, auth_configs: dict | None, progress) -> str:
        from berth.images.reference import parse_normalized
        from berth.registry import AuthConfig

        ref = parse_normalized(reference)
        auth = AuthConfig()
        for key, value in (auth_configs or {}).items():
            host = key.split("://", 1)[-1].split("/", 1)[0]
            if host in (ref.domain, "index.docker.io" if ref.domain == "docker.io" else ref.domain):
                try:
                    auth = AuthConfig.from_dict(value)
                except BerthError:
                    pass
                break

        async def send(message: dict) -> None:
            progress(message)

        registry = registry_of(engine)
        results = asyncio.run_coroutine_threadsafe(
            registry.pull(str(ref.tag_name_only()) if ref.digest is None else str(ref), auth,
                          platform, send), loop).result()
        return results[0].image_id

    return pull


async def _run(request: web.Request, build_request) -> web.StreamResponse:
    engine = engine_of(request)
    service = build_service(engine)
    if service.pull is None:
        service.pull = _registry_puller(engine, asyncio.get_running_loop())
    quiet = query_bool(request.query, "q")
    prepared = await asyncio.to_thread(service.prepare, build_request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()
    done = object()

    def emit(message: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, message)

    def work() -> Any:
        try:
            return prepared.run(emit, cancel)
        finally:
            prepared.close()

    future = loop.run_in_executor(None, work)
    future.add_done_callback(lambda _f: loop.call_soon_threadsafe(queue.put_nowait, done))
    response = web.StreamResponse(status=200)
    response.headers["Content-Type"] = JSON
    await response.prepare(request)
    mark_streaming(request)
    held: list[bytes] = []

    async def send(message: dict) -> None:
        data = json.dumps(message).encode() + b"\r\n"
        if quiet:
            held.append(data)
        else:
            await response.write(data)

    try:
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), 0.5)
            except asyncio.TimeoutError:
                # aiohttp does not cancel the handler of a client that went away:
                # look, so that a quiet RUN is not left running for no one.
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("the client went away") from None
                continue
            if message is done:
                break
            await send(message)
        try:
            image_id = future.result()
        except BerthError as e:
            error = {"message": e.message}
            code = getattr(e, "code", 0)
            if code:
                error["code"] = code
            for data in held:
                await response.write(data)
            await response.write(json.dumps({"errorDetail": error, "error": e.message}).encode()
                                 + b"\r\n")
        except Exception as e:  # noqa: BLE001 - headers are sent: report in the stream
            log.exception("build failed")
            message = f"internal error: {type(e).__name__}: {e}"
            await response.write(json.dumps({"errorDetail": {"message": message},
                                             "error": message}).encode() + b"\r\n")
        else:
            if quiet:
                await response.write(json.dumps({"stream": image_id + "\n"}).encode() + b"\r\n")
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError, asyncio.CancelledError):
        # The client went away: stop the build (its RUN container is killed);
        # the build thread cleans up after itself.
        cancel.set()
        log.info("build: the client went away; cancelling")
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise
    finally:
        if not future.done():
            cancel.set()
    return response


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    all_ = query_bool(request.query, "all")
    keep = query_int(request.query, "keep-storage", 0, minimum=0) or 0
    service = build_service(engine_of(request))
    report = await asyncio.to_thread(service.prune, all_, filters, keep)
    return json_response(report)


async def cancel(request: web.Request) -> web.Response:
    build_id = request.query.get("id", "")
    if not build_id:
        raise InvalidArgument("build ID not provided")
    service = build_service(engine_of(request))
    service.cancel(build_id)
    return web.Response(status=200, headers={"Content-Type": JSON})


ROUTES = [
    ("POST", "/build", build),
    ("POST", "/build/prune", prune),
    ("POST", "/build/cancel", cancel),
    ("POST", "/berth/build", berth_build),
]
