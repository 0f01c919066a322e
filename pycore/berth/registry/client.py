"""HTTP to one registry endpoint for one operation: scheme choice, auth
challenges and tokens, retries with backoff, and redirects.

- Scheme: HTTPS; endpoints that may be insecure (loopback, configured) are
  probed with HTTPS first and fall back to HTTP, and the choice is remembered.
- Auth: the first 401 names the scheme (``WWW-Authenticate``); a bearer token
  is fetched from its realm for the operation's scopes and sent from then on;
  a 401 with a token in hand fetches a fresh one once (expiry, new scope).
- Retries: idempotent requests are retried on connection errors, 429 and 5xx,
  after ``Retry-After`` or an exponential backoff.
- Redirects are followed by hand so that ``Authorization`` only ever goes to
  the registry's own origin, never to the blob store it redirects to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping

import aiohttp
from yarl import URL

from berth import __version__
from berth.errors import BerthError, InvalidArgument, Unauthorized
from berth.registry.auth import (CLIENT_ID, AuthConfig, Challenge, TokenCache, parse_challenges,
                                 token_from_response)
from berth.registry.errors import RegistryHTTPError, TransferError
from berth.registry.hosts import Endpoint, is_loopback

log = logging.getLogger("berth.registry")

USER_AGENT = f"berth/{__version__}"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BODY = 1 << 20


class Backoff:
    """Attempt counting and delays: 0.25 s doubling up to 4 s; a server's
    ``Retry-After`` wins, capped at 30 s."""

    def __init__(self, attempts: int = 5, base: float = 0.25, cap: float = 4.0):
        self.attempts = attempts
        self.base = base
        self.cap = cap

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), 30.0)
            except ValueError:
                pass
        return min(self.base * (2 ** attempt), self.cap)


def connection_message(exc: BaseException) -> str:
    """A short cause for a failed connection, in Docker's words where it has some."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)) and (
            "WRONG_VERSION_NUMBER" in text or "record layer failure" in text
            or "wrong version number" in text):
        return "http: server gave HTTP response to HTTPS client"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"connection broken mid-transfer ({text})"
    return text


def proxy_for(url: URL) -> str | None:
    """The proxy for a URL from HTTP(S)_PROXY / NO_PROXY, as Docker's daemon
    honours them; never for loopback. (aiohttp's trust_env would also read
    ~/.netrc and send its passwords to registries: not wanted.)"""
    host = url.host or ""
    if is_loopback(host) or urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


class RegistryClient:
    def __init__(self, http: aiohttp.ClientSession, endpoint: Endpoint, auth: AuthConfig,
                 tokens: TokenCache, schemes: dict[str, str], scopes: list[str],
                 allow_http: Callable[[str], bool] = lambda host: False,
                 backoff: Backoff | None = None):
        self.http = http
        self.endpoint = endpoint
        self.auth = auth
        self.tokens = tokens
        self._schemes = schemes          # shared per daemon: host -> working scheme
        self.scopes = list(scopes)
        self._allow_http = allow_http
        self.backoff = backoff or Backoff()
        self._challenge: Challenge | None = None
        self._base: URL | None = None
        self._offline_token = False
        self.identity_token = ""         # a refresh token handed out at login

    # -- endpoint ---------------------------------------------------------
    @property
    def ssl(self) -> Any:
        return None if self.endpoint.verify_tls else False

    async def base(self) -> URL:
        """``scheme://host`` of the endpoint, probing the scheme if needed."""
        if self._base is not None:
            return self._base
        known = self._schemes.get(self.endpoint.host)
        if known is not None or len(self.endpoint.schemes) == 1:
            self._base = URL(f"{known or self.endpoint.schemes[0]}://{self.endpoint.host}")
            return self._base
        errors = []
        for scheme in self.endpoint.schemes:
            candidate = URL(f"{scheme}://{self.endpoint.host}")
            try:
                async with self.http.get(candidate / "v2/", ssl=self.ssl, allow_redirects=False,
                                         proxy=proxy_for(candidate)) as resp:
                    await resp.read()
                    self._learn_challenge(resp)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, ssl.SSLError) as e:
                errors.append(f"{scheme}: {connection_message(e)}")
                continue
            self._schemes[self.endpoint.host] = scheme
            self._base = candidate
            return candidate
        raise TransferError(f"cannot reach registry {self.endpoint.host}: " + "; ".join(errors))

    async def url(self, path: str) -> URL:
        base = await self.base()
        return URL(str(base) + path, encoded=False)

    # -- auth -------------------------------------------------------------
    def _learn_challenge(self, resp: aiohttp.ClientResponse) -> bool:
        if resp.status != 401:
            return False
        challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        for wanted in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == wanted:
                    self._challenge = c
                    return True
        return False

    def _token_key(self, scopes: list[str]) -> tuple[str, str, str, str]:
        assert self._challenge is not None
        return TokenCache.key(self._challenge.params.get("realm", ""),
                              self._challenge.params.get("service", ""), scopes, self.auth)

    async def _authorization(self, scopes: list[str], fresh: bool = False) -> str | None:
        if self._challenge is None:
            return f"Bearer {self.auth.registry_token}" if self.auth.registry_token else None
        if self._challenge.scheme == "basic":
            header = self.auth.basic_header()
            if header is None:
                raise Unauthorized(f"{self.endpoint.host}: no basic auth credentials")
            return header
        if self.auth.registry_token:
            return f"Bearer {self.auth.registry_token}"
        key = self._token_key(scopes)
        if fresh:
            self.tokens.drop(key)
        token = self.tokens.get(key)
        if token is None:
            token = await self._fetch_token(scopes)
            self.tokens.put(key, token)
        return f"Bearer {token.value}"

    async def _fetch_token(self, scopes: list[str]):
        assert self._challenge is not None
        realm = self._challenge.params.get("realm", "")
        service = self._challenge.params.get("service", "")
        try:
            realm_url = URL(realm)
        except ValueError:
            realm_url = URL("")
        if realm_url.scheme not in ("http", "https") or not realm_url.host:
            raise BerthError(f"{self.endpoint.host}: the registry's token realm {realm!r} is not "
                             "an http(s) URL")
        if realm_url.scheme == "http" and not self._allow_http(f"{realm_url.host}:{realm_url.port}"):
            raise BerthError(f"{self.endpoint.host}: refusing to send credentials to the token "
                             f"realm {realm} over plain HTTP")
        scopes = [s for s in scopes if s]
        if self.auth.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": self.auth.identity_token,
                    "service": service, "client_id": CLIENT_ID, "scope": " ".join(scopes)}
            request = self.http.post(realm_url, data=form, ssl=self._realm_ssl(realm_url),
                                     allow_redirects=True, proxy=proxy_for(realm_url))
        else:
            query: list[tuple[str, str]] = []
            if service:
                query.append(("service", service))
            query += [("scope", s) for s in scopes]
            headers = {}
            if self.auth.username:
                query.append(("account", self.auth.username))
                basic = self.auth.basic_header()
                if basic:
                    headers["Authorization"] = basic
            if self._offline_token:
                query += [("offline_token", "true"), ("client_id", CLIENT_ID)]
            request = self.http.get(realm_url.with_query(query), headers=headers,
                                    ssl=self._realm_ssl(realm_url), allow_redirects=True,
                                    proxy=proxy_for(realm_url))
        try:
            async with request as resp:
                body = await resp.content.read(MAX_TOKEN_BODY)
                if resp.status != 200:
                    err = RegistryHTTPError("GET", str(realm_url), resp.status, body)
                    if resp.status in (401, 403):
                        detail = err.message if err.entries else "incorrect username or password"
                        raise Unauthorized(f"{self.endpoint.host}: unauthorized: {detail}")
                    raise err
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise TransferError(f"cannot get a token from {realm}: {connection_message(e)}") from None
        try:
            token = token_from_response(json.loads(body))
        except ValueError as e:
            raise BerthError(f"{self.endpoint.host}: invalid answer from the token server {realm}: {e}") from None
        if token.refresh_token:
            self.identity_token = token.refresh_token
        return token

    def _realm_ssl(self, realm: URL) -> Any:
        same_host = (realm.host or "").lower() == (URL(f"x://{self.endpoint.host}").host or "").lower()
        return self.ssl if same_host else None

    # -- requests ---------------------------------------------------------
    async def request(self, method: str, path_or_url: str | URL, *,
                      headers: Mapping[str, str] | None = None, data: Any = None,
                      expect: tuple[int, ...] = (200,), retry: bool = True,
                      scopes: list[str] | None = None) -> aiohttp.ClientResponse:
        """Send a request; return the response (the caller reads and releases
        it) when its status is in ``expect``, else raise RegistryHTTPError.
        ``data`` must be re-sendable (bytes) when ``retry`` is on."""
        scopes = self.scopes if scopes is None else scopes
        if isinstance(path_or_url, URL):
            url = path_or_url
        elif path_or_url.startswith(("http://", "https://")):
            url = URL(path_or_url, encoded=True)
        else:
            url = await self.url(path_or_url)
        attempts = self.backoff.attempts if retry else 1
        auth_retries = 0
        fresh_token = False
        attempt = 0
        while True:
            try:
                authorization = await self._authorization(scopes, fresh=fresh_token)
                fresh_token = False
                resp = await self._send(method, url, headers, data, authorization)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                attempt += 1
                if attempt >= attempts:
                    raise TransferError(f"{method} {url}: {connection_message(e)}") from None
                log.info("%s %s failed (%s); retrying", method, url, connection_message(e))
                await asyncio.sleep(self.backoff.delay(attempt - 1))
                continue
            if resp.status == 401 and auth_retries < 2:
                # First 401: learn the scheme. A 401 to a cached bearer token:
                # it expired or lacks a scope, so fetch a fresh one, once.
                sent_bearer = (authorization is not None and self._challenge is not None
                               and self._challenge.scheme == "bearer")
                learned = self._learn_challenge(resp)
                if (learned and authorization is None) or sent_bearer:
                    resp.release()
                    auth_retries += 1
                    fresh_token = sent_bearer
                    continue
            if resp.status in RETRY_STATUSES and attempt + 1 < attempts:
                delay = self.backoff.delay(attempt, resp.headers.get("Retry-After"))
                resp.release()
                attempt += 1
                log.info("%s %s answered %d; retrying in %.2fs", method, url, resp.status, delay)
                await asyncio.sleep(delay)
                continue
            if resp.status in expect:
                return resp
            try:
                body = await resp.content.read(MAX_ERROR_BODY)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                body = b""
            finally:
                resp.release()
            if resp.status == 401 and self._challenge is not None and self._challenge.scheme == "basic" \
                    and self.auth.anonymous:
                raise Unauthorized(f"{self.endpoint.host}: no basic auth credentials")
            raise RegistryHTTPError(method, str(url), resp.status, body, resp.reason)

    async def _send(self, method: str, url: URL, headers: Mapping[str, str] | None, data: Any,
                    authorization: str | None) -> aiohttp.ClientResponse:
        base = await self.base()
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers or {})
            if authorization and _origin(url) == _origin(base):
                hdrs["Authorization"] = authorization
            ssl_arg = self.ssl if _origin(url)[1:] == _origin(base)[1:] else None
            resp = await self.http.request(method, url, headers=hdrs, data=data, ssl=ssl_arg,
                                           allow_redirects=False, proxy=proxy_for(url))
            if resp.status not in REDIRECT_STATUSES or "Location" not in resp.headers:
                return resp
            target = url.join(URL(resp.headers["Location"], encoded=True))
            resp.release()
            if target.scheme not in ("http", "https"):
                raise InvalidArgument(f"{method} {url}: redirected to unsupported URL {target}")
            if target.scheme == "http" and url.scheme == "https":
                raise BerthError(f"{method} {url}: refusing a redirect from HTTPS to plain HTTP ({target})")
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, data = "GET", None
            url = target
        raise TransferError(f"{method} {url}: too many redirects")

    async def ping(self, offline_token: bool = False) -> None:
        """GET /v2/ with the credentials (login): raises when they are refused."""
        self._offline_token = offline_token
        resp = await self.request("GET", "/v2/", scopes=[], retry=True)
        await resp.read()
        resp.release()


def quote_path(repo_path: str) -> str:
    return urllib.parse.quote(repo_path, safe="/")
