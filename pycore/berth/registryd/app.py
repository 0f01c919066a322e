"""The HTTP side of the registry: the OCI distribution spec's endpoints over
:class:`berth.registryd.storage.Storage`.

Paths are matched the way distribution's router does it (a repository name
may contain slashes, so the operation is found from the end of the path).
Blob bodies stream to and from disk (``sendfile`` for downloads, Range
included); file work that may block runs in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
import weakref
from typing import Awaitable, Callable

from aiohttp import web

from berth.registryd.errors import RegistryError
from berth.registryd.htpasswd import Htpasswd
from berth.registryd.storage import (COPY_CHUNK, MAX_MANIFEST_SIZE, OCI_INDEX, Storage,
                                     check_digest, check_name)

log = logging.getLogger("berth.registryd")

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
WRITE_BATCH = 4 << 20
DEFAULT_PAGE = 1000
MAX_PAGE = 10000
REALM = "berth-registry"

STORAGE: web.AppKey[Storage] = web.AppKey("storage")
HTPASSWD: web.AppKey[Htpasswd | None] = web.AppKey("htpasswd")
UPLOAD_LOCKS: web.AppKey["weakref.WeakValueDictionary[str, asyncio.Lock]"] = web.AppKey("upload_locks")

Handler = Callable[..., Awaitable[web.StreamResponse]]

_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^_catalog$"), "catalog"),
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
    (re.compile(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?(?P<uuid>[^/]*)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$"), "referrers"),
]


def _storage(request: web.Request) -> Storage:
    return request.app[STORAGE]


async def _run(func, *args):
    return await asyncio.to_thread(func, *args)


# -- plumbing ----------------------------------------------------------------

@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        response = await handler(request)
    except RegistryError as e:
        response = e.response()
        if request.method == "HEAD":
            response = web.Response(status=e.status, headers=e.headers)
    except web.HTTPException as e:
        if e.status == 405:
            response = RegistryError("UNSUPPORTED", {"method": request.method}).response()
        elif e.status == 404:
            response = web.json_response({"errors": [{"code": "NOT_FOUND", "message": "page not found"}]},
                                         status=404)
        else:
            raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:  # noqa: BLE001 - a client must get the spec's body, not a traceback
        log.exception("%s %s failed", request.method, request.path)
        response = web.json_response(
            {"errors": [{"code": "UNKNOWN", "message": "unknown error"}]}, status=500)
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler):
    htpasswd = request.app[HTPASSWD]
    if htpasswd is not None:
        user = await _run(htpasswd.check, request.headers.get("Authorization"))
        if user is None:
            raise RegistryError("UNAUTHORIZED", headers={
                "WWW-Authenticate": f'Basic realm="{REALM}",charset="UTF-8"'})
        request["user"] = user
    return await handler(request)


async def dispatch(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    if tail == "":
        if request.method not in ("GET", "HEAD"):
            raise RegistryError("UNSUPPORTED", {"method": request.method})
        return web.json_response({})
    for pattern, kind in _ROUTES:
        m = pattern.match(tail)
        if m is None:
            continue
        params = m.groupdict()
        if "name" in params:
            check_name(params["name"])
        handler = _HANDLERS.get((kind, request.method))
        if handler is None:
            raise RegistryError("UNSUPPORTED", {"method": request.method, "path": request.path})
        return await handler(request, **params)
    raise RegistryError("NAME_INVALID", {"path": request.path}, status=404,
                        message="no such endpoint")


def _page(request: web.Request) -> tuple[int | None, str]:
    raw = request.query.get("n")
    n = None
    if raw is not None and raw != "":
        try:
            n = int(raw)
        except ValueError:
            raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": raw}) from None
        if n < 0:
            raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": raw})
        n = min(n, MAX_PAGE)
    return n, request.query.get("last", "")


def _paginate(items: list[str], n: int | None, last: str, path: str
              ) -> tuple[list[str], dict[str, str]]:
    if last:
        items = [i for i in items if i > last]
    limit = DEFAULT_PAGE if n is None else n
    page = items[:limit]
    headers = {}
    if page and len(items) > len(page):
        query = urllib.parse.urlencode({"n": limit, "last": page[-1]})
        headers["Link"] = f'<{path}?{query}>; rel="next"'
    return page, headers


def _json(data, status: int = 200, headers: dict[str, str] | None = None,
          content_type: str = "application/json") -> web.Response:
    out = {"Content-Type": content_type}
    out.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode(), headers=out)


# -- listings ----------------------------------------------------------------

async def catalog(request: web.Request) -> web.Response:
    n, last = _page(request)
    repos = await _run(_storage(request).repositories)
    page, headers = _paginate(repos, n, last, "/v2/_catalog")
    return _json({"repositories": page}, headers=headers)


async def tags_list(request: web.Request, name: str) -> web.Response:
    storage = _storage(request)
    n, last = _page(request)
    if not storage.repo_exists(name):
        raise RegistryError("NAME_UNKNOWN", {"name": name})
    tags = await _run(storage.tags, name)
    page, headers = _paginate(tags, n, last, f"/v2/{name}/tags/list")
    return _json({"name": name, "tags": page}, headers=headers)


async def referrers(request: web.Request, name: str, digest: str) -> web.Response:
    check_digest(digest)
    artifact_type = request.query.get("artifactType") or None
    found = await _run(_storage(request).referrers, name, digest, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found},
                 headers=headers, content_type=OCI_INDEX)


# -- blobs -------------------------------------------------------------------

async def blob_head(request: web.Request, name: str, digest: str) -> web.Response:
    check_digest(digest)
    size = _storage(request).blob_size(name, digest)
    if size is None:
        raise RegistryError("BLOB_UNKNOWN", {"digest": digest})
    return web.Response(status=200, headers={
        "Content-Length": str(size), "Docker-Content-Digest": digest,
        "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"'})


async def blob_get(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    check_digest(digest)
    storage = _storage(request)
    if storage.blob_size(name, digest) is None:
        raise RegistryError("BLOB_UNKNOWN", {"digest": digest})
    # FileResponse answers Range (206, 416) and uses sendfile.
    return web.FileResponse(storage.blob_path(digest), chunk_size=COPY_CHUNK, headers={
        "Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000"})


async def blob_delete(request: web.Request, name: str, digest: str) -> web.Response:
    check_digest(digest)
    if not await _run(_storage(request).unlink_blob, name, digest):
        raise RegistryError("BLOB_UNKNOWN", {"digest": digest})
    return web.Response(status=202, headers={"Content-Length": "0"})


# -- uploads -----------------------------------------------------------------

def _upload_lock(request: web.Request, upload_id: str) -> asyncio.Lock:
    locks = request.app[UPLOAD_LOCKS]
    lock = locks.get(upload_id)
    if lock is None:
        lock = asyncio.Lock()
        locks[upload_id] = lock
    return lock


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": upload_id,
            "Content-Length": "0"}


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                             "Docker-Content-Digest": digest,
                                             "Content-Length": "0"})


def _content_range(request: web.Request) -> tuple[int, int] | None:
    raw = request.headers.get("Content-Range")
    if not raw:
        return None
    m = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$", raw.strip())
    if m is None:
        raise RegistryError("RANGE_INVALID", {"Content-Range": raw})
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError("RANGE_INVALID", {"Content-Range": raw})
    return start, end


async def _receive(request: web.Request, storage: Storage, upload) -> int:
    """Append the request body to an upload; returns the upload's new size.
    Bytes received before a broken connection stay in the upload, so the
    client can ask for its status and continue."""
    size = await _run(upload.size)
    rng = _content_range(request)
    if rng is not None:
        start, end = rng
        if start != size:
            raise RegistryError("RANGE_INVALID", {"expected_start": size, "got": start},
                                status=416, headers=_upload_headers(upload.repo, upload.uuid, size))
        length = request.content_length
        if length is not None and length != end - start + 1:
            raise RegistryError("SIZE_INVALID", {"Content-Range": f"{start}-{end}",
                                                 "Content-Length": length})
    pending = bytearray()
    offset = size
    try:
        async for chunk in request.content.iter_chunked(COPY_CHUNK):
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                offset = await _run(storage.append, upload, offset, bytes(pending))
                pending.clear()
    finally:
        if pending:
            offset = await _run(storage.append, upload, offset, bytes(pending))
    if request.content_length is not None and offset - size != request.content_length:
        raise RegistryError("SIZE_INVALID", {"Content-Length": request.content_length,
                                             "received": offset - size})
    return offset


async def upload_start(request: web.Request, name: str, uuid: str) -> web.Response:
    if uuid:
        raise RegistryError("UNSUPPORTED", {"method": "POST", "path": request.path})
    storage = _storage(request)
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount:
        check_digest(mount)
        if source and await _run(storage.mount_blob, name, mount, source):
            return _blob_created(name, mount)
    digest = request.query.get("digest")
    upload = await _run(storage.new_upload, name)
    if digest:
        # Monolithic upload in one request: POST ?digest= with the body.
        check_digest(digest)
        try:
            async with _upload_lock(request, upload.uuid):
                await _receive(request, storage, upload)
                await _run(storage.commit_upload, upload, digest)
        except BaseException:
            await _run(storage.cancel_upload, upload)
            raise
        return _blob_created(name, digest)
    return web.Response(status=202, headers=_upload_headers(name, upload.uuid, 0))


async def upload_patch(request: web.Request, name: str, uuid: str) -> web.Response:
    storage = _storage(request)
    upload = await _run(storage.get_upload, name, uuid)
    async with _upload_lock(request, uuid):
        size = await _receive(request, storage, upload)
    return web.Response(status=202, headers=_upload_headers(name, uuid, size))


async def upload_put(request: web.Request, name: str, uuid: str) -> web.Response:
    storage = _storage(request)
    upload = await _run(storage.get_upload, name, uuid)
    digest = request.query.get("digest")
    if not digest:
        raise RegistryError("DIGEST_INVALID", {"reason": "the digest query parameter is missing"})
    check_digest(digest)
    async with _upload_lock(request, uuid):
        await _receive(request, storage, upload)
        await _run(storage.commit_upload, upload, digest)
    return _blob_created(name, digest)


async def upload_status(request: web.Request, name: str, uuid: str) -> web.Response:
    storage = _storage(request)
    upload = await _run(storage.get_upload, name, uuid)
    size = await _run(upload.size)
    return web.Response(status=204, headers=_upload_headers(name, uuid, size))


async def upload_cancel(request: web.Request, name: str, uuid: str) -> web.Response:
    storage = _storage(request)
    upload = await _run(storage.get_upload, name, uuid)
    async with _upload_lock(request, uuid):
        await _run(storage.cancel_upload, upload)
    return web.Response(status=204, headers={"Content-Length": "0"})


# -- manifests ---------------------------------------------------------------

async def manifest_put(request: web.Request, name: str, reference: str) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_MANIFEST_SIZE:
        raise RegistryError("MANIFEST_INVALID", {"size": request.content_length},
                            message=f"manifest too large ({request.content_length} bytes, "
                                    f"limit {MAX_MANIFEST_SIZE})", status=413)
    body = bytearray()
    async for chunk in request.content.iter_chunked(COPY_CHUNK):
        body += chunk
        if len(body) > MAX_MANIFEST_SIZE:
            raise RegistryError("MANIFEST_INVALID", {"limit": MAX_MANIFEST_SIZE},
                                message="manifest too large", status=413)
    digest, subject = await _run(_storage(request).put_manifest, name, reference, bytes(body),
                                 request.headers.get("Content-Type", ""))
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest,
               "Content-Length": "0"}
    if subject:
        headers["OCI-Subject"] = subject
    return web.Response(status=201, headers=headers)


async def manifest_head(request: web.Request, name: str, reference: str) -> web.Response:
    digest, media_type, size = await _run(_storage(request).manifest_info, name, reference)
    return web.Response(status=200, headers={
        "Content-Type": media_type, "Content-Length": str(size),
        "Docker-Content-Digest": digest, "ETag": f'"{digest}"'})


async def manifest_get(request: web.Request, name: str, reference: str) -> web.Response:
    # Stored manifests are served as they are: no conversion to what Accept
    # lists (schema1 is gone), which is what clients verify digests against.
    stored = await _run(_storage(request).get_manifest, name, reference)
    return web.Response(status=200, body=stored.body, headers={
        "Content-Type": stored.media_type, "Docker-Content-Digest": stored.digest,
        "ETag": f'"{stored.digest}"'})


async def manifest_delete(request: web.Request, name: str, reference: str) -> web.Response:
    await _run(_storage(request).delete_manifest, name, reference)
    return web.Response(status=202, headers={"Content-Length": "0"})


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("catalog", "GET"): catalog,
    ("tags", "GET"): tags_list,
    ("referrers", "GET"): referrers,
    ("blob", "HEAD"): blob_head,
    ("blob", "GET"): blob_get,
    ("blob", "DELETE"): blob_delete,
    ("upload", "POST"): upload_start,
    ("upload", "PATCH"): upload_patch,
    ("upload", "PUT"): upload_put,
    ("upload", "GET"): upload_status,
    ("upload", "DELETE"): upload_cancel,
    ("manifest", "PUT"): manifest_put,
    ("manifest", "HEAD"): manifest_head,
    ("manifest", "GET"): manifest_get,
    ("manifest", "DELETE"): manifest_delete,
}


def make_app(root: str, htpasswd: str | None = None, fsync: bool = True) -> web.Application:
    """The registry as an aiohttp application (``client_max_size`` does not
    apply: bodies are streamed)."""
    storage = Storage(root, fsync=fsync)
    storage.remove_stale_uploads()
    app = web.Application(middlewares=[errors_middleware, auth_middleware])
    app[STORAGE] = storage
    app[HTPASSWD] = Htpasswd(htpasswd) if htpasswd else None
    app[UPLOAD_LOCKS] = weakref.WeakValueDictionary()
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)

    async def v2_root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/v2/")

    app.router.add_route("GET", "/v2", v2_root)
    return app
