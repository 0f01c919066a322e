"""Helpers of the container tests: a raw HTTP client for the API, stream
demultiplexing, bounded waits, and the leftovers check for removed containers
(mounts, cgroups, directories)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path


def _root_daemon_class():
    # The repository's tests/conftest.py, loaded by path: a bare `import conftest`
    # would find whichever conftest directory pytest put first on sys.path.
    import importlib.util
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("berth_tests_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Daemon


Daemon = _root_daemon_class()

CGROUP_ROOT = "/sys/fs/cgroup"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("berth", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class API:
    """Raw requests: the status, headers and body a client really gets."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def call(self, method: str, path: str, body=None, timeout: float = 60):
        conn = UnixHTTP(self.socket_path, timeout)
        try:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                decoded = json.loads(raw) if raw.strip() else None
            except ValueError:
                decoded = raw
            return resp.status, decoded, resp.headers
        finally:
            conn.close()

    def hijack(self, path: str, upgrade: bool = True, timeout: float = 30,
               body: bytes | None = None) -> tuple[socket.socket, bytes]:
        """POST ``path`` as a hijacked connection (or, with a JSON ``body``, as a
        stream that ends with the connection); returns the socket and the
        status line + headers."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket_path)
        extra = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
        if body is not None:
            extra += f"Connection: close\r\nContent-Length: {len(body)}\r\n"
        ctype = "text/plain" if body is None else "application/json"
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: berth\r\n{extra}"
                  f"Content-Type: {ctype}\r\n\r\n".encode() + (body or b""))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                break
            head += chunk
        return s, head


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def demux(data: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed stream into (stdout, stderr)."""
    out, err = b"", b""
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        payload, data = data[8:8 + size], data[8 + size:]
        if kind == 1:
            out += payload
        elif kind == 2:
            err += payload
    return out, err


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    """Poll until ``predicate()`` is truthy (not a timing assertion: the bound
    only keeps a broken build from hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def inspect(daemon, name: str) -> dict:
    return json.loads(daemon.docker("inspect", name).stdout)[0]


def leftovers(daemon, container_id: str) -> list[str]:
    """What a removed container could have left behind."""
    found = []
    bundle = str(daemon.root / "containers" / container_id)
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.strip()}" for line in f if container_id in line]
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        if container_id in dirnames:
            found.append(f"cgroup: {os.path.join(dirpath, container_id)}")
        # Container cgroups sit two or three levels down; do not walk the whole tree.
        if dirpath.count("/") - CGROUP_ROOT.count("/") >= 2:
            dirnames.clear()
    if os.path.exists(bundle):
        found.append(f"directory: {bundle}")
    # A removed container's directory is renamed here and deleted in the background.
    trash = daemon.root / "tmp" / "removed-containers" / container_id
    deadline = time.monotonic() + 30
    while trash.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if trash.exists():
        found.append(f"directory: {trash}")
    db = sqlite3.connect(daemon.root / "metadata.db")
    try:
        if db.execute("SELECT 1 FROM containers WHERE id=?", (container_id,)).fetchone():
            found.append("record in metadata.db")
    finally:
        db.close()
    return found


