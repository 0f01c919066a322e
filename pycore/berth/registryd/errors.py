"""The distribution spec's error codes and their JSON bodies.

Every failure answers ``{"errors": [{"code", "message", "detail"}]}`` with the
status the spec gives the code, so clients (docker, skopeo, containerd) can
tell "blob unknown" from "denied" without reading prose.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

# code -> (HTTP status, the spec's message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
}


class RegistryError(Exception):
    """An answer in the spec's error format. ``status`` overrides the code's
    default where the spec asks for another (413 for a huge manifest...)."""

    def __init__(self, code: str, detail: Any = None, *, message: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        default_status, default_message = CODES[code]
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}" + (f" ({detail})" if detail else ""))

    def response(self) -> web.Response:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        body = json.dumps({"errors": [entry]}).encode()
        headers = {"Content-Type": "application/json"}
        headers.update(self.headers)
        return web.Response(status=self.status, body=body, headers=headers)
