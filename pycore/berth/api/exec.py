"""Exec endpoints: ``POST /containers/{id}/exec``, ``POST /exec/{id}/start``
(hijacked like attach, or detached), ``POST /exec/{id}/resize``,
``GET /exec/{id}/json``."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from berth import runtime
from berth.api.containers import (DEFAULT_DETACH_KEYS, Hijacked, _service, parse_detach_keys,
                                  read_json, run_session)
from berth.api.params import query_int
from berth.api.responses import json_response
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.api")

#: Pause between the 101 and the exec's first output, for clients that lose
#: bytes read together with the headers (see start_exec).
CLIENT_SETTLE = 0.05


def _buffers_hijacked_reads(request: web.Request) -> bool:
    """Go clients (the docker CLI) and berth's CLI keep the bytes read past the headers."""
    agent = request.headers.get("User-Agent", "")
    return agent.startswith(("Docker-Client/", "Go-http-client/", "berth-cli"))


async def create_exec(request: web.Request) -> web.Response:
    body = await read_json(request, "exec config")
    e = _service(request).exec_create(request.match_info["id"], body)
    if e.detach_keys:
        parse_detach_keys(e.detach_keys)
    return json_response({"Id": e.id}, status=201)


async def start_exec(request: web.Request) -> web.StreamResponse:
    svc = _service(request)
    body = await read_json(request, "exec start config")
    if not isinstance(body, dict):
        raise InvalidArgument("invalid exec start config: expected a JSON object")
    e = svc.exec_get(request.match_info["id"])
    tty = body.get("Tty")
    await svc.exec_prepare(e, bool(tty) if tty is not None else None, body.get("ConsoleSize"))
    if body.get("Detach"):
        await svc.exec_run(e)
        svc.spawn_task(svc.exec_watch(e))
        return web.Response(status=200)
    try:
        attachment = await runtime.attach_async(e.directory, stdin=e.attach_stdin,
                                                stdout=e.attach_stdout, stderr=e.attach_stderr)
    except BerthError:
        await asyncio.to_thread(runtime.kill, e.directory, 9)
        await svc.exec_watch(e)
        raise
    hj = Hijacked(request, multiplexed=not e.tty)
    try:
        await hj.start()
        if not _buffers_hijacked_reads(request):
            # docker-py reads the status line through a buffered file and then the
            # raw socket: output arriving together with the headers would be lost
            # in that buffer. Docker's own exec start is slow enough to hide this.
            await asyncio.sleep(CLIENT_SETTLE)
        try:
            await svc.exec_run(e)
        except runtime.StartError as exc:
            # As Docker: the message goes to the client in the stream; the exec's
            # exit code (126/127) is what `docker exec` reports.
            await hj.write("stdout", (exc.message + "\r\n").encode())
            await attachment.close()
            return hj.response
        record = await run_session(hj, attachment, stdin=e.attach_stdin, tty=e.tty,
                                   detach_keys=parse_detach_keys(e.detach_keys
                                                                 or DEFAULT_DETACH_KEYS))
        if record is not None:
            # Recorded before the stream ends: the client asks for ExitCode next.
            await svc.exec_finished(e, record)
        else:
            svc.spawn_task(svc.exec_watch(e))
        return hj.response
    finally:
        await hj.close()


async def resize_exec(request: web.Request) -> web.Response:
    h = query_int(request.query, "h", 0, minimum=0)
    w = query_int(request.query, "w", 0, minimum=0)
    await _service(request).exec_resize(request.match_info["id"], h, w)
    return web.Response(status=200)


async def inspect_exec(request: web.Request) -> web.Response:
    return json_response(_service(request).exec_get(request.match_info["id"]).inspect())


ROUTES = [
    ("POST", "/containers/{id}/exec", create_exec),
    ("POST", "/exec/{id}/start", start_exec),
    ("POST", "/exec/{id}/resize", resize_exec),
    ("GET", "/exec/{id}/json", inspect_exec),
]
