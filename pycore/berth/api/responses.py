"""JSON answers with Docker's exact ``Content-Type``.

The Go client decodes an error body only when the header is exactly
``application/json``; aiohttp's default adds ``; charset=utf-8``, which makes
the docker CLI print the raw JSON instead of the message.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode() + b"\n",
                        headers={"Content-Type": JSON})
