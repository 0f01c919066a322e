"""Image endpoints (``/images/...``) over :class:`berth.images.ImageService`.

The service is synchronous; every call runs in a worker thread so the event
loop keeps serving. Request bodies (import, load) are spooled to a private
file in the data root first; archives (save) are streamed through a pipe, so
neither direction holds a whole image in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

from aiohttp import web

from berth.api.context import engine_of
from berth.api.responses import json_response
from berth.api.params import parse_filters, query_bool
from berth.api.streams import JSONStream, mark_streaming, progress_message, remove_spooled, spool_body
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.api")

CHUNK = 1 << 20


def _service(request: web.Request):
    return engine_of(request).images


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(func, *args)


async def list_images(request: web.Request) -> web.Response:
    query = request.query
    all_ = query_bool(query, "all")
    digests = query_bool(query, "digests")
    filters = parse_filters(query.get("filters"))
    if query.get("filter"):  # API < 1.28 spelled the reference filter this way
        filters.setdefault("reference", []).append(query["filter"])
    images = await _call(_service(request).list, all_, filters, digests)
    return json_response(images)


async def inspect_image(request: web.Request) -> web.Response:
    return json_response(await _call(_service(request).inspect, request.match_info["name"]))


async def image_history(request: web.Request) -> web.Response:
    return json_response(await _call(_service(request).history, request.match_info["name"]))


async def tag_image(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("missing query parameter 'repo': the repository to tag "
                              f"{request.match_info['name']} as")
    tag = request.query.get("tag") or "latest"
    await _call(_service(request).tag, request.match_info["name"], repo, tag)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    force = query_bool(request.query, "force")
    noprune = query_bool(request.query, "noprune")
    deleted = await _call(_service(request).remove, request.match_info["name"], force, noprune)
    return json_response(deleted)


async def prune_images(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    # Docker's CLI asks for `prune -a` as the filter dangling=false.
    dangling = filters.get("dangling", ["true"])
    if any(v.lower() not in ("true", "false", "1", "0") for v in dangling):
        raise InvalidArgument(f"invalid filter 'dangling={dangling[0]}': use true or false")
    all_ = all(v.lower() in ("false", "0") for v in dangling)
    report = await _call(_service(request).prune, all_, filters)
    return json_response({"ImagesDeleted": report.get("ImagesDeleted") or None,
                              "SpaceReclaimed": report.get("SpaceReclaimed", 0)})


# --- import and load: bodies in, JSON progress out -------------------------------------

def _reference(repo: str, tag: str) -> str | None:
    """``repo`` and ``tag`` query values -> one reference, checked before any
    body is read (``tag`` replaces a tag given in ``repo``, as in Docker)."""
    from berth.images.reference import parse_normalized, parse_tag

    if not repo:
        if tag:
            raise InvalidArgument(f"tag {tag!r} given without a repository (repo=)")
        return None
    ref = parse_normalized(repo)
    if tag:
        if ref.digest is not None:
            raise InvalidArgument(f"cannot tag {repo!r} with {tag!r}: the reference has a digest")
        ref = ref.trim().with_tag(parse_tag(tag))
    return str(ref)


async def create_image(request: web.Request) -> web.StreamResponse:
    query = request.query
    if query.get("fromImage"):
        from berth.api.registry import pull_image
        return await pull_image(request)
    source = query.get("fromSrc")
    if not source:
        raise InvalidArgument("missing query parameter: fromSrc (import) or fromImage (pull)")
    reference = _reference(query.get("repo", ""), query.get("tag", ""))
    options = {"changes": query.getall("changes", []), "message": query.get("message", ""),
               "platform": query.get("platform") or None}
    if source == "-":
        return await _import_body(request, reference, options)
    return await _import_url(request, source, reference, options)


def _import(request: web.Request, path: str, reference: str | None, source_name: str,
            options: dict[str, Any]) -> str:
    return _service(request).import_image(path, reference, options["changes"], options["message"],
                                          platform=options["platform"], source_name=source_name)


async def _import_body(request, reference, options) -> web.StreamResponse:
    # Nothing is sent before the import is done, so any failure is an ordinary
    # HTTP error (status code + message) that every client reports cleanly.
    path = await spool_body(request)
    try:
        image_id = await _call(_import, request, path, reference, "-", options)
    finally:
        remove_spooled(path)
    stream = JSONStream(request)
    await stream.send({"status": image_id})
    return await stream.finish()


async def _import_url(request, url, reference, options) -> web.StreamResponse:
    if not url.startswith(("http://", "https://")):
        raise InvalidArgument(f"invalid fromSrc {url!r}: expected '-' (request body) "
                              "or an http:// or https:// URL")
    import aiohttp  # the client side is only needed here

    stream = JSONStream(request)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as remote:
                if remote.status != 200:
                    raise InvalidArgument(f"cannot download {url}: the server answered "
                                          f"{remote.status} {remote.reason}")
                await stream.send({"status": f"Downloading from {url}"})
                total = remote.content_length
                last_sent = 0

                async def progress(done: int) -> None:
                    nonlocal last_sent
                    if done - last_sent >= 8 * CHUNK or (total and done == total):
                        last_sent = done
                        await stream.send(progress_message("Importing", done, total))

                path = await spool_body(request, remote.content.iter_chunked(CHUNK), progress)
    except aiohttp.ClientError as exc:
        error = f"cannot download {url}: {exc or type(exc).__name__}"
        if not stream.started:
            raise InvalidArgument(error) from None
        await stream.error(error)
        return await stream.finish()
    except BerthError as exc:
        if not stream.started:
            raise
        await stream.error(exc.message)
        return await stream.finish()
    try:
        image_id = await _call(_import, request, path, reference, url, options)
        await stream.send({"status": image_id})
    except BerthError as exc:
        await stream.error(exc.message)
    except Exception as exc:  # noqa: BLE001 - progress was sent: report in the stream
        log.exception("import from %s failed", url)
        await stream.error(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        remove_spooled(path)
    return await stream.finish()


async def load_images(request: web.Request) -> web.StreamResponse:
    query_bool(request.query, "quiet")  # validated; the answer is the same either way
    path = await spool_body(request)
    stream = JSONStream(request)
    try:
        # Docker answers 200 and reports a bad archive inside the stream.
        try:
            messages = await _call(_service(request).load, path)
        except BerthError as exc:
            await stream.error(exc.message)
        else:
            for line in messages:
                await stream.send({"stream": line.rstrip("\n") + "\n"})
    finally:
        remove_spooled(path)
    return await stream.finish()


# --- save: an archive streamed through a pipe ------------------------------------------

async def save_images(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("missing query parameter 'names': the images to save")
    return await _stream_save(request, names)


async def save_image(request: web.Request) -> web.StreamResponse:
    return await _stream_save(request, [request.match_info["name"]])


async def _stream_save(request: web.Request, names: list[str]) -> web.StreamResponse:
    service = _service(request)
    # A missing image must be a 404, not a truncated archive.
    for name in names:
        await _call(service.resolve, name)

    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
    read_file = os.fdopen(read_fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), read_file)

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as out:
            service.save(names, out)

    producer = loop.run_in_executor(None, produce)
    # Consumed here so an abandoned producer (client gone) never logs
    # "exception was never retrieved".
    producer.add_done_callback(lambda f: f.cancelled() or f.exception())
    response = web.StreamResponse(status=200)
    response.content_type = "application/x-tar"
    try:
        chunk = await reader.read(CHUNK)
        if not chunk:
            await producer  # raises the service's error while we can still send a status
            raise BerthError(f"saving {', '.join(names)} produced an empty archive")
        await response.prepare(request)
        mark_streaming(request)
        try:
            while chunk:
                await response.write(chunk)
                chunk = await reader.read(CHUNK)
        except (ConnectionResetError, BrokenPipeError):
            log.info("save %s: client went away mid-stream", names)
            return response
        try:
            await producer
        except Exception as exc:  # noqa: BLE001
            # Headers are gone: the only honest signal left is a broken transfer.
            log.error("save %s failed mid-stream: %s", names, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        transport.close()  # the producer gets EPIPE if it is still writing


def _routes() -> list:
    # Fixed paths first: "{name:.+}" would swallow them (image names contain "/").
    return [
        ("GET", "/images/json", list_images),
        ("POST", "/images/create", create_image),
        ("POST", "/images/load", load_images),
        ("GET", "/images/get", save_images),
        ("POST", "/images/prune", prune_images),
        ("GET", "/images/{name:.+}/json", inspect_image),
        ("GET", "/images/{name:.+}/history", image_history),
        ("GET", "/images/{name:.+}/get", save_image),
        ("POST", "/images/{name:.+}/tag", tag_image),
        ("DELETE", "/images/{name:.+}", remove_image),
    ]


ROUTES = _routes()
