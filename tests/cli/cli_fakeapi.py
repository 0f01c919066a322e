"""A scripted Engine API server on a unix socket, for CLI tests that need exact
daemon answers (fixed timestamps, odd framings, error bodies) without berthd."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

# 2024-01-02T03:04:05Z: "now" for in-process CLI runs, so ages ("2 minutes ago") are stable.
NOW = 1704164645


class Reply:
    def __init__(self, status=200, json_body=None, body=b"", headers=None, chunks=None,
                 close_delimited=False, content_type=None):
        self.status = status
        self.headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        self.body = body
        self.chunks = chunks
        self.close_delimited = close_delimited
        if content_type:
            self.headers["Content-Type"] = content_type


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def param(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        url = urlsplit(self.path)
        path = url.path
        versioned = path.startswith("/v1.")
        if versioned:
            path = "/" + path.split("/", 2)[2]
        req = Request(self.command, path, parse_qs(url.query, keep_blank_values=True),
                      dict(self.headers), self._read_body())
        req.versioned = versioned
        self.server.api.requests.append(req)
        handler = self.server.api.routes.get((self.command, path))
        reply = handler(req) if handler else Reply(404, {"message": f"page not found: {path}"})
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in reply.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif reply.close_delimited:
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _dispatch


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client closed a response it did not need in full
        super().handle_error(request, client_address)


class FakeAPI:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.host = f"unix://{socket_path}"
        self.routes: dict = {}
        self.requests: list[Request] = []
        self.route("GET", "/_ping", lambda r: Reply(body=b"OK", content_type="text/plain",
                                                    headers={"API-Version": "1.41"}))
        self._server = _Server(socket_path, _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def route(self, method: str, path: str, handler) -> None:
        """handler: a Reply, or a callable(Request) -> Reply."""
        self.routes[(method, path)] = handler if callable(handler) else (lambda r, h=handler: h)

    def last(self, method: str, path: str) -> Request:
        for req in reversed(self.requests):
            if req.method == method and req.path == path:
                return req
        raise AssertionError(f"no {method} {path} request was made: "
                             f"{[(r.method, r.path) for r in self.requests]}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
