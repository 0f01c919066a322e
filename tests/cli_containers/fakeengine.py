"""A scripted Engine API for the container commands of the CLI: exact daemon
answers (errors, odd framings, fixed clocks) and hijacked streams, without berthd.

Unlike a plain HTTP test server it speaks the parts of the protocol `run` relies
on: keep-alive (connections are counted), answers whose headers go out before
their body (wait), and upgrades to a raw stream (attach, exec start). A
``FakeContainer`` plays a container's side of `run`: it produces output only once
started, can echo its stdin, and reports its exit code to the waiters.
"""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import parse_qs, urlsplit

NOW = 1704164645  # 2024-01-02T03:04:05Z, the CLI's clock in these tests


class Reply:
    def __init__(self, status: int = 200, json_body=None, body: bytes = b"", headers=None,
                 content_type: str | None = None):
        self.status = status
        self.headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type:
            self.headers["Content-Type"] = content_type
        self.body = body


class Streamed:
    """Headers now; then the chunks ``produce()`` yields, chunked, as they come."""

    def __init__(self, produce, status: int = 200, content_type: str = "application/json"):
        self.produce, self.status, self.content_type = produce, status, content_type


class Hijack:
    """101 UPGRADED, then ``session(sock)`` owns the raw connection."""

    def __init__(self, session):
        self.session = session


class Request:
    def __init__(self, method, path, query, headers, body, connection):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.connection = headers, body, connection

    def param(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self):
        return json.loads(self.body)


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


class FakeEngine:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.host = f"unix://{socket_path}"
        self.routes: dict = {}
        self.requests: list[Request] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(socket_path)
        self._server.listen(64)
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # -- scripting ---------------------------------------------------------------------

    def route(self, method: str, path: str, handler) -> None:
        """handler: a Reply/Streamed/Hijack, or a callable(Request) returning one."""
        self.routes[(method, path)] = handler if callable(handler) else (lambda r, h=handler: h)

    def handler(self, method: str, path: str):
        return self.routes[(method, path)]

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def last(self, method: str, path: str) -> Request:
        for req in reversed(self.requests):
            if (req.method, req.path) == (method, path):
                return req
        raise AssertionError(f"no {method} {path}: {self.calls()}")

    def close(self) -> None:
        self._closing = True
        self._server.close()

    # -- serving ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = reader.readline().decode().rstrip("\r\n")
                    if not h:
                        break
                    name, _, value = h.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = self._read_body(reader, headers)
                url = urlsplit(target)
                path = url.path
                if path.startswith("/v1."):
                    path = "/" + path.split("/", 2)[2]
                req = Request(method, path, parse_qs(url.query, keep_blank_values=True), headers,
                              body, number)
                with self._lock:
                    self.requests.append(req)
                handler = self.routes.get((method, path))
                reply = handler(req) if handler else Reply(404, {"message": f"page not found: {path}"})
                if isinstance(reply, Hijack):
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    reply.session(conn, reader)
                    return
                if isinstance(reply, Streamed):
                    conn.sendall(f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n".encode())
                    for chunk in reply.produce():
                        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    conn.sendall(b"0\r\n\r\n")
                    continue
                head = [f"HTTP/1.1 {reply.status} X"] + [f"{k}: {v}" for k, v in reply.headers.items()]
                if method == "HEAD":
                    head.append("Content-Length: 0")
                    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
                    continue
                head.append(f"Content-Length: {len(reply.body)}")
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
        except (OSError, ValueError):
            return
        finally:
            reader.close()
            conn.close()

    @staticmethod
    def _read_body(reader, headers) -> bytes:
        if "chunked" in headers.get("transfer-encoding", ""):
            data = bytearray()
            while True:
                size = int(reader.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    reader.readline()
                    return bytes(data)
                data += reader.read(size)
                reader.readline()
        length = int(headers.get("content-length") or 0)
        return reader.read(length) if length else b""


class FakeContainer:
    """One container's part in `run`/`start -a`/`attach`: created with ``cid``, its
    output (``frames``: (stream, bytes) pairs, or raw bytes with a tty) goes out only
    after /start, optionally followed by what it read on stdin (``echo_stdin``),
    and /wait answers ``exit_code`` once the attached session ended."""

    def __init__(self, engine: FakeEngine, cid: str, *, frames=(), exit_code: int = 0, tty: bool = False,
                 echo_stdin: bool = False, start_error: tuple[int, str] | None = None,
                 one_request: bool = True):
        self.engine, self.cid, self.frames, self.exit_code = engine, cid, list(frames), exit_code
        self.tty, self.echo_stdin, self.start_error = tty, echo_stdin, start_error
        self.started = threading.Event()
        self.exited = threading.Event()
        self.stdin = b""
        self.killed: list[str] = []
        base = f"/containers/{cid}"
        engine.route("POST", "/containers/create", self._create)
        if one_request:  # berthd's; without it the CLI falls back to docker's sequence
            engine.route("POST", "/berth/containers/run", self._run)
        engine.route("POST", f"{base}/attach", lambda r: Hijack(self._attach))
        engine.route("POST", f"{base}/wait", lambda r: Streamed(self._wait))
        engine.route("POST", f"{base}/start", self._start)
        engine.route("POST", f"{base}/kill", self._kill)
        engine.route("POST", f"{base}/resize", Reply(200))
        engine.route("GET", f"{base}/json", lambda r: Reply(json_body=self.inspect()))

    def inspect(self) -> dict:
        return {"Id": self.cid, "Name": "/fake", "State": {"Running": True, "Paused": False,
                                                           "Restarting": False},
                "Config": {"Tty": self.tty, "OpenStdin": self.echo_stdin},
                "HostConfig": {"AutoRemove": False}}

    def _create(self, req: Request) -> Reply:
        self.config = req.json()
        return Reply(201, {"Id": self.cid, "Warnings": []})

    def _run(self, req: Request):
        """/berth/containers/run: create (through whatever answers /containers/create),
        then the frame stream with berth's control frames (stream 16)."""
        self.run_query = req
        created = self.engine.handler("POST", "/containers/create")(req)
        if created.status >= 400:
            return created
        return Hijack(lambda sock, reader: self._run_stream(sock, created.body))

    def _run_stream(self, sock: socket.socket, created) -> None:
        def control(message: dict) -> None:
            sock.sendall(frame(16, json.dumps(message).encode()))
        try:
            control(created if isinstance(created, dict) else json.loads(created))
            if self.start_error:
                status, message = self.start_error
                control({"StartError": message, "StartStatus": status})
                return
            self.started.set()
            self.while_running()
            for item in self.frames:
                sock.sendall(frame(*item))
            control({"StatusCode": self.exit_code, "Error": None})
        finally:
            sock.shutdown(socket.SHUT_RDWR)
            self.exited.set()

    def while_running(self) -> None:
        """Tests replace this to act while the one-request run is streaming."""

    def _start(self, req: Request) -> Reply:
        if self.start_error:
            status, message = self.start_error
            self.exited.set()
            return Reply(status, {"message": message})
        self.started.set()
        return Reply(204)

    def _kill(self, req: Request) -> Reply:
        self.killed.append(req.param("signal"))
        return Reply(204)

    def _attach(self, sock: socket.socket, reader) -> None:
        self.attach_query = None
        try:
            if not self.started.wait(10):
                return
            for item in self.frames:
                sock.sendall(item if self.tty else frame(*item))
            if self.echo_stdin:
                while True:
                    data = reader.read1(65536)
                    if not data:
                        break
                    self.stdin += data
                    sock.sendall(data if self.tty else frame(1, data))
        finally:
            sock.shutdown(socket.SHUT_RDWR)
            self.exited.set()

    def _wait(self):
        self.exited.wait(10)
        yield json.dumps({"StatusCode": self.exit_code, "Error": None}).encode() + b"\n"
