"""Raw HTTP over a unix socket: status codes, headers and bodies exactly as a
client receives them (no client library smoothing anything over)."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("berth", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def json_lines(self) -> list:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


class API:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:
        conn = UnixHTTPConnection(self.socket_path, timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: bytes | None = None, **kw) -> Reply:
        return self.request("POST", path, body=body, **kw)

    def delete(self, path: str, **kw) -> Reply:
        return self.request("DELETE", path, **kw)

    def open_stream(self, path: str, timeout: float = 30) -> tuple[UnixHTTPConnection, http.client.HTTPResponse]:
        """A request whose response is read incrementally (events)."""
        conn = UnixHTTPConnection(self.socket_path, timeout)
        conn.request("GET", path)
        return conn, conn.getresponse()
