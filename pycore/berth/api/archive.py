"""A container's filesystem over the API: ``docker cp`` (``/containers/{id}/archive``
HEAD/GET/PUT), ``docker export``, ``docker diff`` (``/changes``) and
``docker commit`` (``POST /commit``).

The work is done by :mod:`berth.volumes` on a confined view of the container's
``/`` (see :mod:`berth.volumes.rootview`): the running container's own root,
or for a stopped one an overlay of its layers with its volumes and binds in
place, mounted in a private namespace while the request lasts. Tar streams
are produced in a worker thread and sent as they come; uploaded archives are
spooled to a private file and checked entry by entry before anything is
written into the container.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import contextlib
import gzip
import json
import logging
import lzma
import os
import shutil
import tarfile
from typing import Any, AsyncIterator, BinaryIO, Callable

from aiohttp import web

from berth.api.context import engine_of
from berth.api.params import query_bool
from berth.api.responses import json_response
from berth.api.streams import mark_streaming, remove_spooled, spool_body
from berth.errors import BerthError, InvalidArgument, NotFound, SystemError_, Unavailable
from berth.volumes import containerfs
from berth.volumes.rootview import RootView, ViewMount

log = logging.getLogger("berth.api")

CHUNK = 1 << 20
PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"

def _zstd_open(path: str, mode: str):
    import zstandard
    return zstandard.open(path, mode)


_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open),
          (b"\x28\xb5\x2f\xfd", _zstd_open))


# -- containers and their views ---------------------------------------------------------

def _containers(request: web.Request):
    service = engine_of(request).containers
    if service is None:
        raise Unavailable("the container service is not running")
    return service


def _container(request: web.Request, name: str | None = None):
    return _containers(request).get(name if name is not None else request.match_info["id"])


def _event(request: web.Request, c: Any, action: str, **attrs: str) -> None:
    attributes = c.event_attributes(**attrs) if hasattr(c, "event_attributes") else {
        "name": c.name, **attrs}
    engine_of(request).events.publish("container", action, c.id, attributes)


def _view_mounts(request: web.Request, c: Any) -> list[ViewMount]:
    """The container's mounts as its runtime sets them up: the /etc files the
    daemon writes, then its volumes, binds and tmpfs mounts."""
    mounts = []
    for dest, attr in (("/etc/resolv.conf", "resolv_conf_path"),
                       ("/etc/hostname", "hostname_path"), ("/etc/hosts", "hosts_path")):
        source = getattr(c, attr, None)
        if source and os.path.exists(source):
            mounts.append(ViewMount(dest, "bind", source, ("rbind", "rprivate")))
    specs = getattr(c, "spec_mounts", None)
    if specs is None:
        volumes = engine_of(request).volumes
        specs = [mp.spec() for mp in volumes.mount_records(c.id)] if volumes else []
    mounts += [ViewMount.from_spec(m) for m in specs]
    return mounts


@contextlib.asynccontextmanager
async def _container_view(request: web.Request, c: Any) -> AsyncIterator[RootView]:
    """The container's ``/`` as it sees it. A stopped container's overlay is
    mounted and used while the container's operation lock is held (its state
    checked again under it), so it cannot start on the same upper dir
    meanwhile."""
    mounts = _view_mounts(request, c)
    readonly_root = bool((c.host_config or {}).get("ReadonlyRootfs"))
    description = f"container {c.id[:12]}"
    if c.running and c.pid:
        view = await _process_view(c, mounts, readonly_root, description)
        if view is not None:
            try:
                yield view
            finally:
                await asyncio.to_thread(view.close)
            return
    async with _op_lock(request, c.id):
        if not (c.running and c.pid):
            view = await asyncio.to_thread(
                RootView.of_layers, engine_of(request).tmp_dir, list(c.lowerdirs), c.upperdir,
                c.workdir, mounts=mounts, readonly_root=readonly_root, description=description)
            try:
                yield view
            finally:
                await asyncio.to_thread(view.close)
            return
    # It started while we waited for the lock.
    view = await _process_view(c, mounts, readonly_root, description)
    if view is None:
        raise SystemError_(f"container {c.id[:12]} changed state during the request; try again")
    try:
        yield view
    finally:
        await asyncio.to_thread(view.close)


async def _process_view(c: Any, mounts: list[ViewMount], readonly_root: bool,
                        description: str) -> RootView | None:
    try:
        return await asyncio.to_thread(RootView.of_process, c.pid, mounts, readonly_root,
                                       description)
    except ProcessLookupError:
        return None  # it stopped meanwhile


def _op_lock(request: web.Request, cid: str):
    service = _containers(request)
    lock_of = getattr(service, "op_lock", None) or getattr(service, "_op_lock", None)
    return lock_of(cid) if lock_of is not None else contextlib.nullcontext()


def _path_param(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    return path


def _not_found(path: str, name: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {name}")


def _stat_header(path_stat: containerfs.PathStat) -> str:
    return base64.b64encode(json.dumps(path_stat.as_json()).encode()).decode()


def _os_error(what: str, exc: OSError) -> BerthError:
    return SystemError_(f"{what}: {exc.strerror or exc}")


# -- HEAD / GET archive --------------------------------------------------------------------

async def head_archive(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    path = _path_param(request)
    c = _container(request)
    async with _container_view(request, c) as view:
        try:
            st = await asyncio.to_thread(containerfs.stat_path, view,
                                         containerfs.container_path(path))
        except containerfs.PathNotFound:
            raise _not_found(path, name) from None
        except OSError as exc:
            raise _os_error(f"stat {path} in container {name}", exc) from None
    return web.Response(status=200, headers={PATH_STAT_HEADER: _stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    name = request.match_info["id"]
    path = _path_param(request)
    c = _container(request)
    abs_path = containerfs.container_path(path)
    async with _container_view(request, c) as view:
        try:
            st = await asyncio.to_thread(containerfs.stat_path, view, abs_path)
        except containerfs.PathNotFound:
            raise _not_found(path, name) from None
        except OSError as exc:
            raise _os_error(f"stat {path} in container {name}", exc) from None
        def produce(out: BinaryIO) -> None:
            try:
                containerfs.write_archive(view, abs_path, st, out)
            except containerfs.PathNotFound:
                raise _not_found(path, name) from None  # removed since the stat

        response = await _stream(request, produce, {PATH_STAT_HEADER: _stat_header(st),
                                                    "Content-Type": "application/x-tar"})
    _event(request, c, "archive-path")
    return response


async def export_container(request: web.Request) -> web.StreamResponse:
    c = _container(request)
    tmp = engine_of(request).tmp_dir
    # The filesystem alone, as Docker exports it: no volumes, no mounts. The
    # upper dir is read as the top layer of a read-only overlay, so this works
    # the same on a running container.
    view = await asyncio.to_thread(RootView.of_layers, tmp, list(c.lowerdirs), c.upperdir,
                                   readonly=True, description=f"container {c.id[:12]}")
    try:
        response = await _stream(request, lambda out: containerfs.write_export(view, out),
                                 {"Content-Type": "application/x-tar"})
    finally:
        await asyncio.to_thread(view.close)
    _event(request, c, "export")
    return response


async def _stream(request: web.Request, produce: Callable[[BinaryIO], None],
                  headers: dict[str, str]) -> web.StreamResponse:
    """Send what ``produce(out)`` writes (in a worker thread) as the body. An
    error before the first byte is still an HTTP error; after it, the only
    honest signal left is a cut transfer."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
    read_file = os.fdopen(read_fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), read_file)

    def run() -> None:
        with os.fdopen(write_fd, "wb", buffering=CHUNK) as out:
            produce(out)

    producer = loop.run_in_executor(None, run)
    producer.add_done_callback(lambda f: f.cancelled() or f.exception())
    response = web.StreamResponse(status=200, headers=headers)
    try:
        chunk = await reader.read(CHUNK)
        if not chunk:
            await producer  # its error, while a status can still say so
            raise SystemError_("the archive is empty")
        await response.prepare(request)
        mark_streaming(request)
        try:
            while chunk:
                await response.write(chunk)
                chunk = await reader.read(CHUNK)
        except (ConnectionResetError, BrokenPipeError):
            log.info("%s: client went away mid-stream", request.path)
            transport.close()
            await asyncio.wait([producer])
            return response
        try:
            await producer
        except Exception as exc:  # noqa: BLE001
            log.error("%s failed mid-stream: %s", request.path, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    except BaseException:
        transport.close()  # the producer gets EPIPE if it is still writing
        await asyncio.wait([producer])
        raise
    finally:
        transport.close()


# -- PUT archive ------------------------------------------------------------------------------

def _decompressed(engine: Any, path: str) -> str:
    """A plain tar next to ``path`` if it is gzip, bzip2, xz or zstd (read twice
    later, which a compressed stream cannot do cheaply); else ``path``."""
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            fd, plain = engine.upload_file()
            try:
                with os.fdopen(fd, "wb") as out, opener(path, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
            except Exception as exc:  # noqa: BLE001 - every codec has its own error type
                remove_spooled(plain)
                raise InvalidArgument(f"invalid archive: cannot decompress it ({exc})") from None
            except BaseException:
                remove_spooled(plain)
                raise
            return plain
    return path


def _owner(view: RootView, user: str, name: str) -> tuple[int, int] | None:
    """``copyUIDGID``: the container's user and group, resolved in its own
    /etc/passwd and /etc/group (None: root, or no user configured)."""
    if not user:
        return None
    user_part, _, group_part = user.partition(":")

    def entries(path: str) -> list[list[str]]:
        try:
            fd = view.open(path, os.O_RDONLY)
        except OSError:
            return []
        with os.fdopen(fd, "r", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if not line.startswith("#")]

    uid = gid = None
    if user_part.isdigit():
        uid = int(user_part)
    for fields in entries("/etc/passwd"):
        if len(fields) >= 4 and (fields[0] == user_part or (uid is not None and fields[2] == str(uid))):
            uid, gid = int(fields[2]), int(fields[3])
            break
    if uid is None:
        raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd "
                              f"file of container {name}")
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            gid = next((int(f[2]) for f in entries("/etc/group")
                        if len(f) >= 3 and f[0] == group_part), None)
            if gid is None:
                raise InvalidArgument(f"unable to find group {group_part}: no matching entries "
                                      f"in group file of container {name}")
    return uid, gid if gid is not None else 0


def _extract(view: RootView, c: Any, name: str, path: str, tar_path: str,
             no_overwrite: bool, copy_owner: bool) -> None:
    try:
        with tarfile.open(tar_path, "r:") as tar:
            members = tar.getmembers()
            containerfs.check_archive(members)
            try:
                dfd = view.open(path, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                raise _not_found(path, name) from None
            except NotADirectoryError:
                raise InvalidArgument("extraction point is not a directory") from None
            os.close(dfd)
            dest = containerfs.resolve_in_scope(view, path)
            mount = view.mount_for(dest)
            if mount is not None and mount.destination != "/":
                if mount.readonly:
                    raise InvalidArgument("mounted volume is marked read-only")
            elif view.readonly_root:
                raise InvalidArgument("container rootfs is marked read-only")
            owner = _owner(view, (c.config or {}).get("User") or "", name) if copy_owner else None
            containerfs.extract_archive(view, dest, tar, members,
                                        no_overwrite_dir_non_dir=no_overwrite, owner=owner)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid tar archive: {exc}") from None
    except OSError as exc:
        if exc.errno == 30:  # EROFS
            raise InvalidArgument(f"cannot write to {path} in container {name}: read-only "
                                  "file system") from None
        raise _os_error(f"extract archive to {path} in container {name}", exc) from None


async def put_archive(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    path = _path_param(request)
    no_overwrite = query_bool(request.query, "noOverwriteDirNonDir")
    copy_owner = query_bool(request.query, "copyUIDGID")
    c = _container(request)
    engine = engine_of(request)
    spooled = await spool_body(request)
    plain = spooled
    try:
        plain = await asyncio.to_thread(_decompressed, engine, spooled)
        async with _container_view(request, c) as view:
            await asyncio.to_thread(_extract, view, c, name, path, plain, no_overwrite,
                                    copy_owner)
    finally:
        remove_spooled(spooled)
        if plain != spooled:
            remove_spooled(plain)
    _event(request, c, "extract-to-dir")
    return web.Response(status=200)


# -- diff -------------------------------------------------------------------------------------

async def container_changes(request: web.Request) -> web.Response:
    from berth.volumes.changes import upper_changes

    c = _container(request)
    tmp = engine_of(request).tmp_dir

    def run() -> list[dict[str, Any]]:
        lowerdirs = [d for d in c.lowerdirs if os.path.isdir(d)]
        if not lowerdirs:
            return upper_changes(c.upperdir, None)
        with RootView.of_layers(tmp, lowerdirs, readonly=True, description="image") as lower:
            return upper_changes(c.upperdir, lower)

    try:
        changes = await asyncio.to_thread(run)
    except OSError as exc:
        raise _os_error(f"changes of container {c.name}", exc) from None
    return json_response(changes or None)


# -- commit -----------------------------------------------------------------------------------

def _commit_reference(repo: str, tag: str) -> str | None:
    from berth.images.reference import parse_normalized, parse_tag

    if not repo:
        if tag:
            raise InvalidArgument(f"tag {tag!r} given without a repository (repo=)")
        return None
    ref = parse_normalized(repo)
    if ref.digest is not None:
        raise InvalidArgument(f"cannot commit to {repo!r}: a digest reference cannot be tagged")
    if tag:
        ref = ref.trim().with_tag(parse_tag(tag))
    return str(ref.tag_name_only())


async def commit_container(request: web.Request) -> web.Response:
    from berth.volumes.commit import CommitRequest, commit

    query = request.query
    name = query.get("container", "")
    if not name:
        raise InvalidArgument("missing query parameter 'container': the container to commit")
    ref = _commit_reference(query.get("repo", ""), query.get("tag", ""))
    pause = query_bool(query, "pause", default=True)
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise InvalidArgument(f"invalid container config: the body is not JSON ({exc})") from None
    if body is not None and not isinstance(body, dict):
        raise InvalidArgument("invalid container config: expected a JSON object")
    containers = _containers(request)
    c = containers.get(name)
    if c.status in ("removing", "dead"):
        raise InvalidArgument(f"You cannot commit container {c.id} which is {c.status}")
    engine = engine_of(request)
    req = CommitRequest(container_id=c.id, image_id=c.image_id, upperdir=c.upperdir,
                        lowerdirs=list(c.lowerdirs), container_config=dict(c.config or {}), config=body or None,
                        changes=tuple(query.getall("changes", [])),
                        comment=query.get("comment", ""), author=query.get("author", ""),
                        tag=ref)
    paused = False
    if pause and c.status == "running":
        try:
            await containers.pause(c.id)
            paused = True
        except BerthError as exc:
            log.info("commit %s: not paused (%s)", c.id[:12], exc.message)
    try:
        image_id = await asyncio.to_thread(commit, engine.images, engine.tmp_dir, req)
    finally:
        if paused:
            try:
                await containers.unpause(c.id)
            except BerthError as exc:
                log.error("commit %s: cannot unpause: %s", c.id[:12], exc.message)
    _event(request, c, "commit", comment=req.comment, imageID=image_id,
           imageRef=_familiar(ref))
    return json_response({"Id": image_id}, status=201)


def _familiar(ref: str | None) -> str:
    if not ref:
        return ""
    from berth.images.reference import parse_normalized

    return parse_normalized(ref).familiar()


ROUTES = [
    ("HEAD", "/containers/{id}/archive", head_archive),
    ("GET", "/containers/{id}/archive", get_archive),
    ("PUT", "/containers/{id}/archive", put_archive),
    ("GET", "/containers/{id}/export", export_container),
    ("GET", "/containers/{id}/changes", container_changes),
    ("POST", "/commit", commit_container),
]
