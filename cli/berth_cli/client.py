"""Low-level Engine API client: one method per endpoint, no presentation.

Methods return decoded JSON, or a ``Response`` for streamed bodies (import, load,
save, events). HTTP errors become ``APIError`` with the daemon's message.
"""

from __future__ import annotations

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
    return "{" + ",".join(quote(k) + ":{" + ",".join(quote(v) + ":true" for v in vs) + "}"
                          for k, vs in filters.items()) + "}"


class APIClient:
    def __init__(self, host: str, *, version: str = API_VERSION, autostart=None, debug=None):
        self.host = host
        self.socket = socket_path(host)
        self.version = version
        self._autostart = autostart  # called once when nothing listens on the socket
        self._debug = debug          # callable(str) for -D

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

    def request(self, method: str, path: str, params: dict | None = None, body=None,
                headers: dict[str, str] | None = None, versioned: bool = True) -> Response:
        """Send a request; return the response if its status is a success."""
        target = (f"/v{self.version}" if versioned else "") + path
        query = urlencode(params) if params else ""
        if query:
            target += "?" + query
        conn = self._connect()
        if self._debug:
            self._debug(f"{method} {target}")
        try:
            resp = conn.request(method, target, headers, body)
        except ProtocolError as e:
            conn.close()
            raise ConnectionFailed(f"error during connect: {method} {target}: {e}") from e
        except OSError as e:
            conn.close()
            raise ConnectionFailed(f"error during connect: {method} {target}: {e.strerror or e}") from e
        if self._debug:
            self._debug(f"-> {resp.status} {resp.reason}")
        if resp.status >= 400:
            try:
                raise APIError(resp.status, _error_message(resp, method, target))
            finally:
                resp.close()
        return resp

    def hijack(self, method: str, path: str, params: dict | None = None, body=None) -> RawStream:
        """An endpoint that upgrades the connection to a raw stream (attach, exec start)."""
        resp = self.request(method, path, params, body, {"Connection": "Upgrade", "Upgrade": "tcp"})
        if resp.status not in (101, 200):
            resp.close()
            raise ConnectionFailed(f"the daemon did not upgrade {method} {path}: "
                                   f"{resp.status} {resp.reason}")
        return resp.conn.hijack()

    def _json(self, method: str, path: str, params: dict | None = None, body=None):
        with self.request(method, path, params, body) as resp:
            return resp.json()

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
