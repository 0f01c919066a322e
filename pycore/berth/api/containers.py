"""Container endpoints (``/containers/...``) over
:class:`berth.containers.ContainerService`, and the hijacked-connection plumbing
that attach and exec share.

Hijacking: Docker answers ``101 UPGRADED`` (``Upgrade: tcp``) and then both
sides speak raw bytes over the request's connection: stdin from the client,
stdout/stderr to it (in 8-byte-header frames when there is no tty). With
aiohttp, the response is prepared with the 101 status and no body framing,
and the connection's incoming bytes are redirected to an in-memory queue with
the same mechanism aiohttp uses for WebSockets (``protocol.set_parser``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from berth import runtime
from berth.api.context import engine_of
from berth.api.params import parse_filters, parse_timestamp, query_bool, query_int
from berth.api.responses import JSON, json_response
from berth.api.streams import mark_streaming
from berth.containers import logs as logmod
from berth.errors import BerthError, Conflict, InvalidArgument

log = logging.getLogger("berth.api")

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
STREAM_IDS = {"stdout": 1, "stderr": 2}
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"

# Sentinels in a hijacked connection's input queue.
_HALF_CLOSED = object()
_LOST = object()


def _service(request: web.Request):
    return engine_of(request).containers


async def read_json(request: web.Request, what: str = "request body") -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON in the {what}: {exc}") from None


# --- hijacked connections ------------------------------------------------------------------

class _RawStreamResponse(web.StreamResponse):
    # Raw bytes follow the headers: no chunked framing, no length (as WebSocketResponse).
    _length_check = False


class Hijacked:
    """A request's connection taken over after the status line."""

    def __init__(self, request: web.Request, multiplexed: bool):
        self.request = request
        self.multiplexed = multiplexed
        self.upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        self.queue: asyncio.Queue = asyncio.Queue()
        self.response: web.StreamResponse | None = None
        self.gone = False
        self.lost = asyncio.Event()

    async def start(self) -> None:
        ctype = MULTIPLEXED_STREAM if self.multiplexed else RAW_STREAM
        if self.upgrade:
            resp = _RawStreamResponse(status=101, reason="UPGRADED")
            resp.headers["Connection"] = "Upgrade"
            resp.headers["Upgrade"] = "tcp"
        else:
            # The legacy form: 200 and raw output; the client's input is not read.
            resp = _RawStreamResponse(status=200)
        resp.headers["Content-Type"] = ctype
        resp.force_close()
        await resp.prepare(self.request)
        mark_streaming(self.request)
        self.response = resp
        transport = self.request.transport
        if self.upgrade and self.request.protocol is not None and transport is not None:
            protocol = self.request.protocol
            # Bytes aiohttp has already read past the headers come through here...
            protocol.set_parser(self)
            # ...and the rest straight from the transport, so that a client that
            # closes its sending side (end of stdin) keeps reading our output
            # (aiohttp's protocol would let asyncio close the transport).
            transport.set_protocol(_HijackProtocol(self, protocol))

    # aiohttp's payload-parser interface, fed from the connection.
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.lost.set()
        self.queue.put_nowait(_LOST)

    def _eof_received(self) -> bool:
        self.queue.put_nowait(_HALF_CLOSED)
        return True

    async def write(self, stream: str, data: bytes) -> bool:
        """False once the client is gone."""
        if self.gone or self.response is None:
            return False
        if self.multiplexed:
            data = logmod.frame(STREAM_IDS.get(stream, 1), data)
        try:
            await self.response.write(data)
            return True
        except (ConnectionError, RuntimeError):
            self.gone = True
            return False

    async def close(self) -> None:
        if self.response is not None and not self.gone:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                pass
        transport = self.request.transport
        if transport is not None:
            transport.close()


class _HijackProtocol(asyncio.Protocol):
    """The connection's protocol once hijacked: input to the queue; write flow
    control and the final connection_lost still reach aiohttp's protocol."""

    def __init__(self, hj: Hijacked, inner: asyncio.Protocol):
        self.hj = hj
        self.inner = inner

    def data_received(self, data: bytes) -> None:
        self.hj.feed_data(data)

    def eof_received(self) -> bool:
        return self.hj._eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hj.feed_eof()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def parse_detach_keys(spec: str) -> bytes:
    """Docker's ``--detach-keys`` (``ctrl-p,ctrl-q``, ``a``, ``ctrl-@``...)."""
    out = bytearray()
    for part in spec.split(","):
        p = part.strip()
        if len(p) == 1:
            out.append(ord(p))
        elif p.lower().startswith("ctrl-") and len(p) == 6:
            ch = p[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise InvalidArgument(f"invalid detach keys {spec!r}: unknown key {p!r}")
        else:
            raise InvalidArgument(f"invalid detach keys {spec!r}: unknown key {p!r}")
    return bytes(out)


class _EscapeDetector:
    """Finds the detach sequence in a tty's input; bytes of a partial match are
    held back until it is clear they are not the sequence."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for b in data:
            candidate = self.held + bytes([b])
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    return bytes(out), True
                continue
            out += candidate
            self.held = b""
        return bytes(out), False


async def run_session(hj: Hijacked, attachment: runtime.AsyncAttachment, *, stdin: bool,
                      tty: bool, detach_keys: bytes | None) -> dict | None:
    """Pump output to the client and its input to the process until the process
    exits (returns its exit record), the client detaches or goes away (None)."""
    detector = _EscapeDetector(detach_keys) if tty and detach_keys else None
    stdin_open = stdin and bool(attachment.info.get("stdin"))

    async def pump_input() -> None:
        nonlocal stdin_open
        while True:
            item = await hj.queue.get()
            if item is _LOST:
                return
            if item is _HALF_CLOSED:
                if stdin_open:
                    stdin_open = False
                    await attachment.close_stdin()
                continue
            if not stdin_open:
                continue
            if detector is not None:
                item, detached = detector.feed(item)
                if item:
                    await attachment.write_stdin(item)
                if detached:
                    return
            else:
                await attachment.write_stdin(item)

    async def pump_output() -> dict | None:
        async for kind, data in attachment:
            if kind in STREAM_IDS:
                if not await hj.write(kind, data):
                    return None
            elif kind == "exit":
                return data
        return None

    output = asyncio.ensure_future(pump_output())
    inputs = asyncio.ensure_future(pump_input()) if hj.upgrade else None
    try:
        waiting = [output] + ([inputs] if inputs is not None else [])
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if output.done():
            return output.result()
        return None  # detached or the client went away: the process goes on
    except (ConnectionError, OSError):
        return None
    finally:
        for task in (output, inputs):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (output, inputs) if t is not None),
                             return_exceptions=True)
        await attachment.close()


# --- handlers ------------------------------------------------------------------------------

async def create_container(request: web.Request) -> web.Response:
    name = request.query.get("name") or None
    body = await read_json(request, "container config")
    cid, warnings = await _service(request).create(name, body)
    return json_response({"Id": cid, "Warnings": warnings}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    q = request.query
    filters = parse_filters(q.get("filters"))
    all_ = query_bool(q, "all")
    limit = query_int(q, "limit")
    size = query_bool(q, "size")
    items = await asyncio.to_thread(_service(request).list, all_, limit, size, filters)
    return json_response(items)


async def inspect_container(request: web.Request) -> web.Response:
    size = query_bool(request.query, "size")
    data = await asyncio.to_thread(_service(request).inspect, request.match_info["id"], size)
    return json_response(data)


async def start_container(request: web.Request) -> web.Response:
    await request.read()  # API < 1.24 sent a HostConfig here; it is ignored
    await _service(request).start(request.match_info["id"])
    return web.Response(status=204)


def _timeout(request: web.Request) -> int | None:
    return query_int(request.query, "t", None, minimum=-1)


async def stop_container(request: web.Request) -> web.Response:
    await _service(request).stop(request.match_info["id"], _timeout(request),
                                 request.query.get("signal") or None)
    return web.Response(status=204)


async def restart_container(request: web.Request) -> web.Response:
    await _service(request).restart(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


async def kill_container(request: web.Request) -> web.Response:
    await _service(request).kill(request.match_info["id"],
                                 request.query.get("signal") or "SIGKILL")
    return web.Response(status=204)


async def pause_container(request: web.Request) -> web.Response:
    await _service(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause_container(request: web.Request) -> web.Response:
    await _service(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def remove_container(request: web.Request) -> web.Response:
    q = request.query
    await _service(request).remove(request.match_info["id"], force=query_bool(q, "force"),
                                   volumes=query_bool(q, "v"))
    return web.Response(status=204)


async def rename_container(request: web.Request) -> web.Response:
    await _service(request).rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


def _size(request: web.Request) -> tuple[int, int]:
    h = query_int(request.query, "h", 0, minimum=0)
    w = query_int(request.query, "w", 0, minimum=0)
    return h, w


async def resize_container(request: web.Request) -> web.Response:
    h, w = _size(request)
    await _service(request).resize(request.match_info["id"], h, w)
    return web.Response(status=200)


async def update_container(request: web.Request) -> web.Response:
    body = await read_json(request, "update config")
    warnings = await _service(request).update(request.match_info["id"], body)
    return json_response({"Warnings": warnings})


async def wait_container(request: web.Request) -> web.StreamResponse:
    result = _service(request).wait_future(request.match_info["id"],
                                           request.query.get("condition") or "not-running")
    # Headers go out before waiting: `docker run` starts the container once the
    # wait is registered, and it learns that from the status line.
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = JSON
    await resp.prepare(request)
    mark_streaming(request)
    code, _error = result if isinstance(result, tuple) else await asyncio.shield(result)
    try:
        # With the terminating chunk, in one write: the client's wait ends at once.
        await resp.write_eof(json.dumps({"Error": None, "StatusCode": code}).encode() + b"\n")
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def top_container(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args", "")
    data = await asyncio.to_thread(_service(request).top, request.match_info["id"], ps_args)
    return json_response(data)


def _with_pre(sample: dict, previous: dict | None) -> dict:
    if previous is None:
        sample["preread"] = "0001-01-01T00:00:00Z"
        sample["precpu_stats"] = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                                "usage_in_usermode": 0},
                                  "throttling_data": {"periods": 0, "throttled_periods": 0,
                                                      "throttled_time": 0}}
    else:
        sample["preread"] = previous["read"]
        sample["precpu_stats"] = previous["cpu_stats"]
    return sample


async def container_stats(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    c = svc.get(request.match_info["id"])
    stream = query_bool(request.query, "stream", True)
    one_shot = query_bool(request.query, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    first = await asyncio.to_thread(svc.stats_sample, c)
    if not stream:
        if one_shot or not c.running:
            return json_response(_with_pre(first, None))
        # CPU usage is a rate: Docker's answer carries a reading one second earlier.
        await asyncio.sleep(1)
        second = await asyncio.to_thread(svc.stats_sample, c)
        return json_response(_with_pre(second, first))
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = JSON
    await resp.prepare(request)
    mark_streaming(request)
    previous, sample = None, first
    try:
        while True:
            await resp.write(json.dumps(_with_pre(sample, previous)).encode() + b"\n")
            if not c.running or c.id not in {x.id for x in svc.all()}:
                break
            await asyncio.sleep(1)
            previous, sample = sample, await asyncio.to_thread(svc.stats_sample, c)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


def _log_options(request: web.Request) -> tuple[logmod.LogOptions, bool]:
    q = request.query
    stdout, stderr = query_bool(q, "stdout"), query_bool(q, "stderr")
    if not stdout and not stderr:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_raw = q.get("tail", "all").strip()
    tail = None
    if tail_raw and tail_raw != "all":
        try:
            tail = int(tail_raw)
        except ValueError:
            raise InvalidArgument(f"invalid value for query parameter 'tail': {tail_raw!r} "
                                  "(a number of lines or \"all\")") from None
        if tail < 0:
            tail = None
    opts = logmod.LogOptions(stdout=stdout, stderr=stderr, since_ns=parse_timestamp(q, "since"),
                             until_ns=parse_timestamp(q, "until"), tail=tail,
                             timestamps=query_bool(q, "timestamps"))
    if opts.since_ns == 0:
        opts.since_ns = None
    return opts, query_bool(q, "follow")


async def container_logs(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    c = svc.get(request.match_info["id"])
    opts, follow = _log_options(request)
    if not c.log_path:
        raise InvalidArgument("configured logging driver does not support reading")
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = RAW_STREAM
    await resp.prepare(request)
    mark_streaming(request)

    def render(stream: int, data: bytes) -> bytes:
        return data if c.tty else logmod.frame(stream, data)

    try:
        if follow and c.running:
            stopped = svc.exit_future(c)
            async for batch in logmod.follow(c.log_path, opts, stopped):
                await resp.write(b"".join(render(s, d) for s, d in batch))
        else:
            batch = await asyncio.to_thread(lambda: list(logmod.read_all(c.log_path, opts)))
            if batch:
                await resp.write(b"".join(render(s, d) for s, d in batch))
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def attach_container(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    c = svc.get(request.match_info["id"])
    q = request.query
    stream, logs = query_bool(q, "stream"), query_bool(q, "logs")
    stdin, stdout, stderr = query_bool(q, "stdin"), query_bool(q, "stdout"), query_bool(q, "stderr")
    detach_keys = parse_detach_keys(q.get("detachKeys") or DEFAULT_DETACH_KEYS)
    if c.status in ("removing", "dead"):
        raise Conflict(f"cannot attach to container {c.id}: it is being removed")
    # Registered before the 101 goes out: `docker run` starts the container as soon
    # as it has it, and start() must find this attach waiting.
    pending = svc.pending_attach(c) if stream and not c.running else None
    hj = Hijacked(request, multiplexed=not c.tty)
    try:
        await hj.start()
        svc._event(c, "attach")
        if logs and c.log_path:
            opts = logmod.LogOptions(stdout=stdout, stderr=stderr)
            for s, data in await asyncio.to_thread(lambda: list(logmod.read_all(c.log_path, opts))):
                await hj.write("stdout" if s == 1 else "stderr", data)
        if not stream:
            return hj.response
        if pending is not None:
            lost = asyncio.ensure_future(hj.lost.wait())
            try:
                await asyncio.wait([pending.armed, lost], return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
            if not pending.armed.done() or pending.armed.cancelled() \
                    or pending.armed.exception() is not None:
                return hj.response
        try:
            attachment = await runtime.attach_async(c.bundle, stdin=stdin, stdout=stdout,
                                                    stderr=stderr)
        except BerthError as exc:
            log.info("attach %s: %s", c.id[:12], exc.message)
            return hj.response
        finally:
            if pending is not None:
                pending.cancel()
        await run_session(hj, attachment, stdin=stdin, tty=c.tty, detach_keys=detach_keys)
        return hj.response
    finally:
        if pending is not None:
            svc.drop_pending_attach(c, pending)
            pending.cancel()
        await hj.close()


#: Stream id of berth's control frames in a /berth/containers/run answer (JSON).
CONTROL_STREAM = 16


async def run_container(request: web.Request) -> web.StreamResponse:
    """berth-only: `run` without stdin or tty in one exchange. The body and query
    are /containers/create's; a create error is answered as there (nothing made).
    Then a raw stream of docker's 8-byte-header frames: a control frame (stream
    16, JSON) with the Id and Warnings, the output (1, 2), and a last control
    frame with StatusCode and Error, sent once the container exited (and, with
    AutoRemove, is removed: docker's wait conditions). A failed start is that
    last frame with ``StartError`` (docker's start answer). The docker CLI's
    sequence (create, attach, wait, start) costs this client three more requests
    and a round trip on every run."""
    svc = _service(request)
    q = request.query
    stdout, stderr = query_bool(q, "stdout", True), query_bool(q, "stderr", True)
    body = await read_json(request, "container config")
    if isinstance(body, dict) and (body.get("Tty") or body.get("OpenStdin")):
        raise InvalidArgument("/berth/containers/run takes no tty and no stdin: attach instead")
    cid, warnings = await svc.create(q.get("name") or None, body)
    c = svc.get(cid)
    done = svc.wait_future(cid, "removed" if c.host_config.get("AutoRemove") else "next-exit")
    pending = svc.pending_attach(c)
    resp = _RawStreamResponse(status=200)
    resp.headers["Content-Type"] = MULTIPLEXED_STREAM
    resp.force_close()
    await resp.prepare(request)
    mark_streaming(request)

    async def control(message: dict) -> None:
        await resp.write(logmod.frame(CONTROL_STREAM, json.dumps(message).encode()))

    final: dict = {}
    try:
        await control({"Id": cid, "Warnings": warnings})
        starting = asyncio.ensure_future(svc.start(cid))
        await asyncio.wait([pending.armed, starting], return_when=asyncio.FIRST_COMPLETED)
        attachment = None
        armed = pending.armed
        if armed.done() and not armed.cancelled() and armed.exception() is None:
            try:
                attachment = await runtime.attach_async(c.bundle, stdin=False, stdout=stdout,
                                                        stderr=stderr)
            except BerthError as exc:
                log.info("run %s: attach: %s", cid[:12], exc.message)
            finally:
                pending.cancel()
        try:
            await starting
        except BerthError as exc:
            final["StartError"] = exc.message
            final["StartStatus"] = exc.status
        if attachment is not None:
            try:
                async for kind, data in attachment:
                    if kind in STREAM_IDS:
                        await resp.write(logmod.frame(STREAM_IDS[kind], data))
                    elif kind == "exit":
                        break
            finally:
                await attachment.close()
        if "StartError" not in final or c.host_config.get("AutoRemove"):
            # (A failed start with AutoRemove: the answer waits for the removal.)
            code, _error = done if isinstance(done, tuple) else await asyncio.shield(done)
            # Error: as /wait answers (a failed wait, not the container's own error)
            final.setdefault("StatusCode", code)
            final.setdefault("Error", None)
        await control(final)
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client went away: the container goes on, as after a detach
    finally:
        svc.drop_pending_attach(c, pending)
        pending.cancel()
        if request.transport is not None:
            request.transport.close()
    return resp


async def prune_containers(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    return json_response(await _service(request).prune(filters))


ROUTES = [
    ("POST", "/containers/create", create_container),
    ("POST", "/berth/containers/run", run_container),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune_containers),
    ("GET", "/containers/{id}/json", inspect_container),
    ("POST", "/containers/{id}/start", start_container),
    ("POST", "/containers/{id}/stop", stop_container),
    ("POST", "/containers/{id}/restart", restart_container),
    ("POST", "/containers/{id}/kill", kill_container),
    ("POST", "/containers/{id}/pause", pause_container),
    ("POST", "/containers/{id}/unpause", unpause_container),
    ("POST", "/containers/{id}/wait", wait_container),
    ("POST", "/containers/{id}/rename", rename_container),
    ("POST", "/containers/{id}/resize", resize_container),
    ("POST", "/containers/{id}/update", update_container),
    ("POST", "/containers/{id}/attach", attach_container),
    ("GET", "/containers/{id}/logs", container_logs),
    ("GET", "/containers/{id}/top", top_container),
    ("GET", "/containers/{id}/stats", container_stats),
    ("DELETE", "/containers/{id}", remove_container),
]
