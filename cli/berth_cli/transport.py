"""A small HTTP/1.1 client over a unix socket.

Hand-written on ``_socket`` because ``http.client`` (email parsing) and ``socket``
(enum) cost more to import than the whole request takes; the CLI runs thousands
of times in scripts. It covers what the Engine API needs: Content-Length,
chunked and close-delimited bodies, streamed request bodies (sendfile for
regular files, chunked otherwise), and hijacked connections (101 Upgrade).
"""

import _socket
import codecs

from . import lean_os
from .errors import CLIError

RECV_SIZE = 1 << 18
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class ProtocolError(CLIError):
    """The peer broke HTTP framing (bad status line, truncated chunk...)."""

    def __init__(self, message: str):
        super().__init__(f"error reading the daemon's response: {message}")


def quote(text: str, safe: str = "") -> str:
    """Percent-encode like Go's url.QueryEscape/PathEscape (space as %20)."""
    allowed = _UNRESERVED | frozenset(safe.encode())
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if byte in allowed else f"%{byte:02X}")
    return "".join(out)


def urlencode(params) -> str:
    """``{"a": 1, "b": ["x", "y"], "c": None}`` -> ``a=1&b=x&b=y``; None is left out."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool):
                v = "1" if v else "0"
            parts.append(f"{quote(key)}={quote(str(v))}")
    return "&".join(parts)


class Connection:
    """One HTTP exchange on a fresh unix-socket connection."""

    def __init__(self, path: str, timeout: float | None = None):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(path)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buf = bytearray()

    # -- sending ---------------------------------------------------------------

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body=None) -> "Response":
        self.send_request(method, target, headers, body)
        return self._read_response(method)

    def send_request(self, method: str, target: str, headers: dict[str, str] | None = None,
                     body=None) -> None:
        """Send a request without waiting for its answer (``read_response`` reads it), so
        that requests on several connections can be in flight at once (run's attach and wait)."""
        head = [f"{method} {target} HTTP/1.1", "Host: berth", "User-Agent: berth-cli"]
        chunked = False
        length = None
        if isinstance(body, (bytes, bytearray, memoryview)):
            length = len(body)
        elif body is not None:
            length = _remaining_file_size(body)
            chunked = length is None
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if chunked:
            head.append("Transfer-Encoding: chunked")
        elif length is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {length or 0}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            if isinstance(body, (bytes, bytearray, memoryview)):
                self.sock.sendall(data + bytes(body))
            else:
                self.sock.sendall(data)
                if body is not None:
                    self._send_body(body, length, chunked)
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may answer (an error) before reading the whole body;
            # its answer explains more than the broken pipe does.
            pass

    def _send_body(self, body, length: int | None, chunked: bool) -> None:
        if length is not None and hasattr(body, "fileno"):
            fd = body.fileno()
            offset = _file_position(body)
            end = offset + length
            while offset < end:
                sent = lean_os.sendfile(self.sock.fileno(), fd, offset, min(end - offset, 1 << 30))
                if sent == 0:
                    raise ProtocolError("request body file shrank while it was being sent")
                offset += sent
            return
        chunks = body if not hasattr(body, "read") else _read_chunks(body)
        for chunk in chunks:
            if not chunk:
                continue
            if chunked:
                self.sock.sendall(b"%X\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                self.sock.sendall(chunk)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")

    # -- receiving -------------------------------------------------------------

    def _fill(self) -> bool:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self._buf += data
        return True

    def readline(self, limit: int = 1 << 16) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return line
            if len(self._buf) > limit:
                raise ProtocolError("header line too long")
            if not self._fill():
                line = bytes(self._buf)
                self._buf.clear()
                return line

    def read_some(self, max_size: int = RECV_SIZE) -> bytes:
        if self._buf:
            data = bytes(self._buf[:max_size])
            del self._buf[:max_size]
            return data
        return self.sock.recv(max_size)

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise ProtocolError("connection closed in the middle of a response")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read_response(self, method: str) -> "Response":
        return self._read_response(method)

    def _read_response(self, method: str) -> "Response":
        while True:
            line = self.readline()
            if not line:
                raise ProtocolError("the daemon closed the connection without answering")
            parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ProtocolError(f"malformed status line {line[:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            while True:
                hline = self.readline()
                if hline in (b"\r\n", b"\n", b""):
                    break
                name, _, value = hline.decode("latin-1").partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if status == 100:
                continue
            return Response(self, status, parts[2] if len(parts) > 2 else "", headers, method)

    def close(self) -> None:
        self.sock.close()

    def hijack(self) -> "RawStream":
        """Take over the socket after an upgrade answer (101, or 200 raw-stream)."""
        stream = RawStream(self.sock, bytes(self._buf))
        self._buf.clear()
        return stream


class RawStream:
    """A hijacked connection (attach, exec): raw bytes both ways.

    Without a tty the daemon multiplexes stdout and stderr into frames of an
    8-byte header (stream id, 3 zero bytes, big-endian length) and a payload;
    ``frames`` splits them.
    """

    STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3

    def __init__(self, sock, buffered: bytes = b""):
        self.sock = sock
        self._pending = buffered

    def fileno(self) -> int:
        return self.sock.fileno()

    def take_buffered(self) -> bytes:
        """Bytes that arrived with the upgrade answer (read before polling the socket)."""
        data, self._pending = self._pending, b""
        return data

    def recv(self, size: int = RECV_SIZE) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return self.sock.recv(size)

    def _recv_exact(self, n: int) -> bytes | None:
        parts, have = [], 0
        while have < n:
            data = self.recv(n - have)
            if not data:
                if have:
                    raise ProtocolError("stream closed in the middle of a frame")
                return None
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def frames(self):
        """Yield (stream id, payload) until the daemon closes the stream."""
        while True:
            header = self._recv_exact(8)
            if header is None:
                return
            size = int.from_bytes(header[4:8], "big")
            payload = self._recv_exact(size) if size else b""
            if payload is None:
                raise ProtocolError("stream closed in the middle of a frame")
            yield header[0], payload

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Signal end of stdin while still reading output."""
        self.sock.shutdown(1)  # SHUT_WR

    def close(self) -> None:
        self.sock.close()


def _file_position(body) -> int:
    """The logical read position (a buffered reader's fd may be ahead of it)."""
    if hasattr(body, "tell"):
        return body.tell()
    return lean_os.lseek(body.fileno(), 0, lean_os.SEEK_CUR)


def _remaining_file_size(body) -> int | None:
    """Bytes left in a regular file (so it can go with Content-Length and sendfile)."""
    try:
        st = lean_os.fstat(body.fileno())
        if st.st_mode & 0o170000 != 0o100000:  # a pipe, tty or socket: length unknown
            return None
        return st.st_size - _file_position(body)
    except (AttributeError, OSError, ValueError):
        return None


def _read_chunks(f, size: int = 1 << 16):
    read = getattr(f, "read1", f.read)
    while True:
        chunk = read(size)
        if not chunk:
            return
        yield chunk


class Response:
    def __init__(self, conn: Connection, status: int, reason: str, headers: dict[str, str],
                 method: str):
        self.conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining = 0 if no_body else (int(length) if length and not self._chunked else None)
        self._done = no_body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def iter_content(self):
        """The body as it arrives, in pieces."""
        if self._done:
            return
        conn = self.conn
        if self._chunked:
            while True:
                line = conn.readline()
                if not line:
                    raise ProtocolError("connection closed in the middle of a chunked response")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while conn.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                while size:
                    data = conn.read_some(min(size, RECV_SIZE))
                    if not data:
                        raise ProtocolError("connection closed in the middle of a chunk")
                    size -= len(data)
                    yield data
                conn.read_exact(2)
        elif self._remaining is not None:
            while self._remaining:
                data = conn.read_some(min(self._remaining, RECV_SIZE))
                if not data:
                    raise ProtocolError("connection closed before the whole response arrived")
                self._remaining -= len(data)
                yield data
        else:
            while True:
                data = conn.read_some()
                if not data:
                    break
                yield data
        self._done = True

    def read(self) -> bytes:
        return b"".join(self.iter_content())

    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def json(self):
        from .jsonio import loads
        return loads(self.read() or b"null")

    def iter_json(self):
        """Decode a stream of JSON values (JSON lines or simply concatenated)."""
        from .jsonio import raw_decode
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        for chunk in self.iter_content():
            pending += utf8.decode(chunk)
            while True:
                pending = pending.lstrip()
                if not pending:
                    break
                try:
                    value, end = raw_decode(pending)
                except ValueError:
                    break  # incomplete: wait for more
                pending = pending[end:]
                yield value
        pending = (pending + utf8.decode(b"", final=True)).strip()
        if pending:
            try:
                value, end = raw_decode(pending)
            except ValueError as e:
                raise ProtocolError(f"malformed JSON message in the response stream: {e}") from None
            yield value
            if pending[end:].strip():
                raise ProtocolError("trailing garbage after the last JSON message")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
