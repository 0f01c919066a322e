"""Errors as the Docker API reports them: a status code and ``{"message": ...}``.

Every way a request can fail ends here, so a client never sees an HTML page
or a Python traceback: berth errors keep their category's status, aiohttp's
own HTTP errors (unknown route, wrong method, oversized body) are rewritten
into Docker's body, and anything unexpected is logged and answered as a 500
with a one-line message.
"""

from __future__ import annotations

import logging

from aiohttp import web

from berth.api.responses import json_response
from berth.api.streams import STREAMING
from berth.errors import BerthError

log = logging.getLogger("berth.api")


class NotImplementedYet(BerthError):
    """An endpoint whose engine part has not landed (Docker's 501)."""

    status = 501


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status=status)


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "page not found"
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return (f"method {request.method} is not allowed on {request.path}"
                + (f" (allowed: {allowed})" if allowed else ""))
    if exc.status == 413:
        return f"request body too large for {request.path}"
    text = (exc.text or exc.reason or "").strip()
    if text.startswith(f"{exc.status}:"):
        text = exc.reason
    return text or exc.reason


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except (ConnectionResetError, BrokenPipeError):
        raise  # the client went away; nothing to answer
    except Exception as exc:  # noqa: BLE001 - the API must not leak tracebacks
        if request.get(STREAMING):
            # The status line is gone; cut the transfer so the client sees it fail.
            log.error("%s %s failed mid-stream: %s", request.method, request.path, exc)
            if request.transport is not None:
                request.transport.close()
            raise
        if isinstance(exc, BerthError):
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.path, exc.message)
            return error_response(exc.status, exc.message)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise
            return error_response(exc.status, _http_exception_message(request, exc))
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
