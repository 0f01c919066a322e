"""Low-level Engine API client: one method per endpoint, no presentation.

Methods return decoded JSON, or a ``Response`` for streamed bodies (import, load,
save, events). HTTP errors become ``APIError`` with the daemon's message.
"""

import errno

from . import API_VERSION
from .errors import APIError, ConnectionFailed
from .transport import Connection, ProtocolError, RawStream, Response, quote, urlencode


def socket_path(host: str) -> str:
    """``unix:///run/x.sock`` or a bare path -> ``/run/x.sock``."""
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if "://" in host:
        raise ConnectionFailed(f"unsupported host {host!r}: berth speaks to its daemon over "
                               "unix:// sockets only")
    return host


def encode_filters(filters: dict[str, list[str]] | None) -> str | None:
    """Docker's filter encoding: ``{"key": {"value": true}}``."""
    if not filters:
        return None
    from .jsonio import quote
    # sorted like Go's map marshalling, so the query is the docker CLI's
    return "{" + ",".join(quote(k) + ":{" + ",".join(quote(v) + ":true" for v in sorted(set(vs))) + "}"
                          for k, vs in sorted(filters.items())) + "}"


class APIClient:
    def __init__(self, host: str, *, version: str = API_VERSION, autostart=None, debug=None):
        self.host = host
        self.socket = socket_path(host)
        self.version = version
        self._autostart = autostart  # called once when nothing listens on the socket
        self._debug = debug          # callable(str) for -D
        self._idle: Connection | None = None  # kept alive for the next request

    # -- plumbing --------------------------------------------------------------

    def _connect(self) -> Connection:
        try:
            return Connection(self.socket, timeout=30)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            start, self._autostart = self._autostart, None
            if start is None:
                raise ConnectionFailed(f"Cannot connect to the berth daemon at {self.host}. "
                                       "Is the berth daemon running?") from e
            start()
            return self._connect()
        except PermissionError as e:
            raise ConnectionFailed(f"permission denied while trying to connect to the berth daemon "
                                   f"socket at {self.host}: {e.strerror}") from e
        except OSError as e:
            if e.errno == errno.ENOTSOCK:
                raise ConnectionFailed(f"Cannot connect to the berth daemon at {self.host}: "
                                       f"{self.socket} is not a socket") from e
            raise ConnectionFailed(f"Cannot connect to the berth daemon at {self.host}: "
                                   f"{e.strerror or e}") from e

    def _target(self, path: str, params: dict | None, versioned: bool) -> str:
        target = (f"/v{self.version}" if versioned else "") + path
        query = urlencode(params) if params else ""
        return target + "?" + query if query else target

    def send(self, method: str, path: str, params: dict | None = None, body=None,
             headers: dict[str, str] | None = None, versioned: bool = True) -> "Pending":
        """Send a request and return before its answer arrives (``Pending.response``).

        The connection kept alive from an earlier exchange is reused; if the daemon
        has closed it meanwhile, a request whose body can be sent again is sent once
        more on a fresh connection.
        """
        target = self._target(path, params, versioned)
        replayable = body is None or isinstance(body, (bytes, bytearray, memoryview))
        if self._debug:
            self._debug(f"{method} {target}")
        conn, self._idle = self._idle, None
        if conn is not None:
            try:
                conn.send_request(method, target, headers, body)
                return Pending(self, conn, method, target, headers, body, retry=replayable)
            except OSError:
                conn.close()
                if not replayable:
                    raise ConnectionFailed(f"error during connect: {method} {target}: "
                                           "the daemon closed the connection") from None
        return Pending(self, self._send_fresh(method, target, headers, body), method, target,
                       headers, body, retry=False)

    def _send_fresh(self, method: str, target: str, headers, body) -> Connection:
        conn = self._connect()
        try:
            conn.send_request(method, target, headers, body)
        except OSError as e:
            conn.close()
            raise ConnectionFailed(f"error during connect: {method} {target}: {e.strerror or e}") from e
        return conn

    def request(self, method: str, path: str, params: dict | None = None, body=None,
                headers: dict[str, str] | None = None, versioned: bool = True) -> Response:
        """Send a request; return the response if its status is a success."""
        return self.send(method, path, params, body, headers, versioned).response()

    def release(self, resp: Response) -> None:
        """Read what is left of a response and keep its connection for the next request."""
        try:
            for _ in resp.iter_content():
                pass
        except (ProtocolError, OSError):
            resp.close()
            return
        headers = resp.headers
        delimited = ("content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
                     or resp.status in (204, 304))
        if not delimited or headers.get("connection", "").lower() == "close":
            resp.close()
            return
        if self._idle is not None:
            self._idle.close()
        self._idle = resp.conn

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def _call(self, method: str, path: str, params: dict | None = None, body=None,
              headers: dict[str, str] | None = None) -> Response:
        """A request whose answer body does not matter; returns the (finished) response."""
        resp = self.request(method, path, params, body, headers)
        self.release(resp)
        return resp

    def _post_json(self, path: str, params: dict | None, obj):
        from .jsonio import dumps
        # a trailing newline, as Go's json.Encoder writes it (docker's bodies, byte for byte)
        resp = self.request("POST", path, params, (dumps(obj) + "\n").encode("utf-8"),
                            {"Content-Type": "application/json"})
        try:
            return resp.json()
        finally:
            self.release(resp)

    def hijack(self, method: str, path: str, params: dict | None = None, body=None) -> RawStream:
        """An endpoint that upgrades the connection to a raw stream (attach, exec start)."""
        return self.upgraded(self.send(method, path, params, body, UPGRADE_HEADERS), method, path)

    def upgraded(self, pending: "Pending", method: str, path: str) -> RawStream:
        """The raw stream of a hijack request sent with ``send(..., UPGRADE_HEADERS)``."""
        resp = pending.response()
        if resp.status not in (101, 200):
            resp.close()
            raise ConnectionFailed(f"the daemon did not upgrade {method} {path}: "
                                   f"{resp.status} {resp.reason}")
        return resp.conn.hijack()

    def _json(self, method: str, path: str, params: dict | None = None, body=None):
        resp = self.request(method, path, params, body)
        try:
            return resp.json()
        finally:
            self.release(resp)

    # -- system ----------------------------------------------------------------

    def ping(self) -> dict[str, str]:
        with self.request("GET", "/_ping", versioned=False) as resp:
            resp.read()
            return resp.headers

    def version_info(self) -> dict:
        return self._json("GET", "/version")

    def info(self) -> dict:
        return self._json("GET", "/info")

    def system_df(self) -> dict:
        return self._json("GET", "/system/df")

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Response:
        return self.request("GET", "/events", {"since": since or None, "until": until or None,
                                               "filters": encode_filters(filters)})

    # -- images ----------------------------------------------------------------

    def images(self, all: bool = False, filters: dict[str, list[str]] | None = None,
               digests: bool = False) -> list[dict]:
        params = {"filters": encode_filters(filters)}
        if all:
            params["all"] = True
        if digests:
            params["digests"] = True
        return self._json("GET", "/images/json", params)

    def image_inspect(self, name: str) -> dict:
        return self._json("GET", f"/images/{quote(name, '/:@')}/json")

    def image_history(self, name: str) -> list[dict]:
        return self._json("GET", f"/images/{quote(name, '/:@')}/history")

    def image_tag(self, name: str, repo: str, tag: str | None) -> None:
        self.request("POST", f"/images/{quote(name, '/:@')}/tag",
                     {"repo": repo, "tag": tag or None}).close()

    def image_remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        params = {}
        if force:
            params["force"] = True
        if noprune:
            params["noprune"] = True
        return self._json("DELETE", f"/images/{quote(name, '/:@')}", params)

    def image_import(self, source: str, body=None, repo: str | None = None,
                     message: str | None = None, changes=(), platform: str | None = None) -> Response:
        """POST /images/create?fromSrc=...; source "-" means the body is the tarball."""
        params = {"fromSrc": source, "repo": repo or None, "message": message or None,
                  "changes": list(changes) or None, "platform": platform or None}
        headers = {"Content-Type": "application/x-tar"} if body is not None else None
        return self.request("POST", "/images/create", params, body, headers)

    def image_load(self, body, quiet: bool = False) -> Response:
        return self.request("POST", "/images/load", {"quiet": quiet}, body,
                            {"Content-Type": "application/x-tar"})

    def image_save(self, names: list[str]) -> Response:
        return self.request("GET", "/images/get", {"names": list(names)})

    def images_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._json("POST", "/images/prune", {"filters": encode_filters(filters)})


    # -- containers ----------------------------------------------------------------

    def container_create(self, config: dict, name: str | None = None,
                         platform: str | None = None) -> dict:
        return self._post_json("/containers/create", {"name": name or None,
                                                      "platform": platform or None}, config)

    def container_run(self, config: dict, name: str | None = None, platform: str | None = None,
                      *, stdout: bool = True, stderr: bool = True) -> RawStream:
        """POST /berth/containers/run (berth-only): create, attach, start and wait in
        one exchange; the answer is a frame stream (see commands.run). A create
        error is an APIError, as from container_create."""
        from .jsonio import dumps
        params = {"name": name or None, "platform": platform or None,
                  "stdout": "1" if stdout else "0", "stderr": "1" if stderr else "0"}
        return self.upgraded(self.send("POST", "/berth/containers/run", params,
                                       (dumps(config) + "\n").encode("utf-8"),
                                       {"Content-Type": "application/json"}),
                             "POST", "/berth/containers/run")

    def containers(self, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict]:
        params: dict = {"filters": encode_filters(filters)}
        if all:
            params["all"] = True
        if limit > 0:
            params["limit"] = limit
        if size:
            params["size"] = True
        return self._json("GET", "/containers/json", params)

    def container_inspect(self, container: str, size: bool = False) -> dict:
        return self._json("GET", f"/containers/{quote(container)}/json", {"size": True} if size else None)

    def container_start(self, container: str) -> None:
        self._call("POST", f"/containers/{quote(container)}/start")

    def container_attach(self, container: str, *, stdin: bool, stdout: bool, stderr: bool,
                         logs: bool = False, detach_keys: str | None = None) -> "Pending":
        """Send the attach request (``upgraded`` turns its answer into the raw stream)."""
        params = {"stream": True, "stdin": stdin or None, "stdout": stdout or None,
                  "stderr": stderr or None, "logs": logs or None, "detachKeys": detach_keys or None}
        return self.send("POST", f"/containers/{quote(container)}/attach", params,
                         headers=UPGRADE_HEADERS)

    def container_wait(self, container: str, condition: str | None = None) -> "Pending":
        """Send the wait request; its answer's headers come once the daemon watches the
        container, its body ({"StatusCode": N}) once the condition is met."""
        return self.send("POST", f"/containers/{quote(container)}/wait",
                         {"condition": condition or None})

    def container_resize(self, container: str, height: int, width: int, exec_: bool = False) -> None:
        kind = "exec" if exec_ else "containers"
        self._call("POST", f"/{kind}/{quote(container)}/resize", {"h": height, "w": width})

    def container_kill(self, container: str, signal: str | None = None) -> None:
        self._call("POST", f"/containers/{quote(container)}/kill", {"signal": signal or None})

    def container_stop(self, container: str, timeout: int | None = None,
                       signal: str | None = None, restart: bool = False) -> None:
        self._call("POST", f"/containers/{quote(container)}/{'restart' if restart else 'stop'}",
                   {"signal": signal or None, "t": timeout})

    def container_pause(self, container: str, pause: bool = True) -> None:
        self._call("POST", f"/containers/{quote(container)}/{'pause' if pause else 'unpause'}")

    def container_remove(self, container: str, force: bool = False, volumes: bool = False,
                         link: bool = False) -> None:
        self._call("DELETE", f"/containers/{quote(container)}",
                   {"v": volumes or None, "link": link or None, "force": force or None})

    def container_rename(self, container: str, name: str) -> None:
        self._call("POST", f"/containers/{quote(container)}/rename", {"name": name})

    def container_logs(self, container: str, *, follow: bool = False, since: str | None = None,
                       until: str | None = None, timestamps: bool = False, tail: str = "all",
                       details: bool = False) -> Response:
        params = {"stdout": True, "stderr": True, "since": since or None, "until": until or None,
                  "timestamps": timestamps or None, "follow": follow or None, "tail": tail,
                  "details": details or None}
        return self.request("GET", f"/containers/{quote(container)}/logs", params)

    def container_top(self, container: str, ps_args: str | None = None) -> dict:
        return self._json("GET", f"/containers/{quote(container)}/top", {"ps_args": ps_args or None})

    def container_stats(self, container: str, stream: bool = True) -> Response:
        return self.request("GET", f"/containers/{quote(container)}/stats", {"stream": stream})

    def container_changes(self, container: str) -> list[dict] | None:
        return self._json("GET", f"/containers/{quote(container)}/changes")

    def container_export(self, container: str) -> Response:
        return self.request("GET", f"/containers/{quote(container)}/export")

    def container_update(self, container: str, update: dict) -> dict:
        return self._post_json(f"/containers/{quote(container)}/update", None, update)

    def containers_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._json("POST", "/containers/prune", {"filters": encode_filters(filters)})

    def commit(self, container: str, repo: str | None = None, tag: str | None = None,
               comment: str | None = None, author: str | None = None, changes=(),
               pause: bool = True) -> dict:
        params = {"container": container, "repo": repo or None, "tag": tag or None,
                  "comment": comment or None, "author": author or None,
                  "changes": list(changes) or None, "pause": None if pause else False}
        return self._json("POST", "/commit", params)

    # -- the archive API (cp) --------------------------------------------------------

    def archive_stat(self, container: str, path: str) -> dict:
        """HEAD /containers/{id}/archive: the path's stat from X-Docker-Container-Path-Stat."""
        resp = self.request("HEAD", f"/containers/{quote(container)}/archive", {"path": path})
        self.release(resp)
        return decode_path_stat(resp.headers)

    def archive_get(self, container: str, path: str) -> tuple[Response, dict]:
        resp = self.request("GET", f"/containers/{quote(container)}/archive", {"path": path})
        return resp, decode_path_stat(resp.headers)

    def archive_put(self, container: str, path: str, body, copy_uid_gid: bool = False) -> None:
        params = {"path": path, "noOverwriteDirNonDir": True, "copyUIDGID": copy_uid_gid or None}
        self._call("PUT", f"/containers/{quote(container)}/archive", params, body,
                   {"Content-Type": "application/x-tar"})

    # -- exec ----------------------------------------------------------------------

    def exec_create(self, container: str, config: dict) -> dict:
        return self._post_json(f"/containers/{quote(container)}/exec", None, config)

    def exec_start(self, exec_id: str, *, detach: bool, tty: bool,
                   console_size: list[int] | None = None) -> "Pending":
        """Send exec start; with detach its answer is empty, else it upgrades to the stream."""
        from .jsonio import dumps
        body = {"Detach": detach, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = console_size
        headers = {"Content-Type": "application/json"}
        if not detach:
            headers.update(UPGRADE_HEADERS)
        return self.send("POST", f"/exec/{quote(exec_id)}/start", None,
                         dumps(body).encode("utf-8"), headers)

    def exec_inspect(self, exec_id: str) -> dict:
        return self._json("GET", f"/exec/{quote(exec_id)}/json")

    # -- volumes -------------------------------------------------------------------

    def volume_create(self, spec: dict) -> dict:
        return self._post_json("/volumes/create", None, spec)

    def volumes(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._json("GET", "/volumes", {"filters": encode_filters(filters)})

    def volume_inspect(self, name: str) -> dict:
        return self._json("GET", f"/volumes/{quote(name)}")

    def volume_remove(self, name: str, force: bool = False) -> None:
        self._call("DELETE", f"/volumes/{quote(name)}", {"force": force or None})

    def volumes_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self._json("POST", "/volumes/prune", {"filters": encode_filters(filters)})


def decode_path_stat(headers: dict[str, str]) -> dict:
    """The archive API's X-Docker-Container-Path-Stat header: base64 JSON of
    name, size, mode (Go's os.FileMode bits), mtime and linkTarget."""
    raw = headers.get("x-docker-container-path-stat")
    if not raw:
        return {}
    import binascii
    from .jsonio import loads
    try:
        stat = loads(binascii.a2b_base64(raw))
    except (ValueError, binascii.Error):
        raise ProtocolError("malformed X-Docker-Container-Path-Stat header") from None
    return stat if isinstance(stat, dict) else {}


UPGRADE_HEADERS = {"Connection": "Upgrade", "Upgrade": "tcp"}


class Pending:
    """A request on the wire whose answer has not been read yet."""

    __slots__ = ("client", "conn", "method", "target", "headers", "body", "retry")

    def __init__(self, client: APIClient, conn: Connection, method: str, target: str, headers,
                 body, retry: bool):
        self.client, self.conn, self.method, self.target = client, conn, method, target
        self.headers, self.body, self.retry = headers, body, retry

    def response(self) -> Response:
        """The answer; APIError if its status is an error."""
        client = self.client
        try:
            resp = self.conn.read_response(self.method)
        except (ProtocolError, OSError) as e:
            self.conn.close()
            if self.retry and _nothing_answered(e):
                # a kept-alive connection the daemon had closed: the request never
                # reached it, so sending it again on a fresh connection is safe
                self.retry = False
                self.conn = client._send_fresh(self.method, self.target, self.headers, self.body)
                return self.response()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConnectionFailed(f"error during connect: {self.method} {self.target}: {reason}") from e
        if client._debug:
            client._debug(f"-> {resp.status} {resp.reason}")
        if resp.status >= 400:
            message = _error_message(resp, self.method, self.target)
            client.release(resp)
            raise APIError(resp.status, message)
        return resp


def _nothing_answered(e: Exception) -> bool:
    return isinstance(e, (ConnectionResetError, BrokenPipeError)) or (
        isinstance(e, ProtocolError) and "without answering" in e.message)


def _error_message(resp: Response, method: str, target: str) -> str:
    try:
        raw = resp.read()
    except (ProtocolError, OSError):
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    if resp.content_type == "application/json" or text.startswith("{"):
        from .jsonio import loads
        try:
            data = loads(text)
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                return data["message"].strip()
        except ValueError:
            pass
    if text:
        return text
    return (f"request returned {resp.status} {resp.reason} for API route and version "
            f"{target}, check if the server supports the requested API version")
