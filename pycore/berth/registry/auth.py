"""Registry credentials and authentication schemes.

- :class:`AuthConfig`: what a client sends (``X-Registry-Auth``, ``POST /auth``),
  Docker's JSON shape, base64url-encoded in the header.
- :func:`parse_challenges`: ``WWW-Authenticate`` (RFC 7235 grammar).
- :class:`TokenCache`: bearer tokens per (realm, service, scopes, user), with
  their expiry; a refresh token (``identitytoken``) is preferred over the
  password, as Docker does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument

# Docker's default when the token server does not say: 60 seconds.
DEFAULT_TOKEN_LIFETIME = 60
TOKEN_REFRESH_MARGIN = 5
CLIENT_ID = "berth"


@dataclass(frozen=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    identity_token: str = ""   # a refresh token from an earlier login
    registry_token: str = ""   # a bearer token to send as is
    server_address: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    @property
    def identity(self) -> str:
        """Who these credentials are, for keying caches (never the secret itself)."""
        if self.anonymous:
            return ""
        secret = f"{self.password}\0{self.identity_token}\0{self.registry_token}"
        return f"{self.username}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"

    @classmethod
    def from_dict(cls, data: Any) -> "AuthConfig":
        if not isinstance(data, dict):
            raise InvalidArgument("invalid registry auth: expected a JSON object")
        values: dict[str, str] = {}
        for key, field_name in (("username", "username"), ("password", "password"),
                                ("identitytoken", "identity_token"),
                                ("registrytoken", "registry_token"),
                                ("serveraddress", "server_address")):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidArgument(f"invalid registry auth: {key} is not a string")
            values[field_name] = value
        auth = data.get("auth")
        if isinstance(auth, str) and auth and not values.get("username"):
            # The config.json form: base64("user:password").
            try:
                user, sep, password = base64.b64decode(auth).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument("invalid registry auth: auth is not base64(user:password)") from None
            if sep:
                values["username"], values["password"] = user, password
        return cls(**values)

    @classmethod
    def from_header(cls, header: str | None) -> "AuthConfig":
        """Decode ``X-Registry-Auth`` (base64url JSON, padded or not). An
        empty header, or Docker's ``{}``, is anonymous."""
        if not header or not header.strip():
            return cls()
        raw = header.strip()
        try:
            decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            data = json.loads(decoded)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise InvalidArgument(
                "invalid X-Registry-Auth header: expected base64url-encoded JSON") from None
        return cls.from_dict(data)

    def to_header(self) -> str:
        data = {"username": self.username, "password": self.password,
                "serveraddress": self.server_address}
        if self.identity_token:
            data["identitytoken"] = self.identity_token
        if self.registry_token:
            data["registrytoken"] = self.registry_token
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()

    def basic_header(self) -> str | None:
        if not self.username and not self.password:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str                       # lower case: "bearer" | "basic" | ...
    params: dict[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHALLENGE_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))\s*(,)?")


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values. A value may
    hold several challenges separated by commas; parameters are
    ``name=token`` or ``name="quoted string"``."""
    out: list[Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            while pos < len(value) and value[pos] in " ,":
                pos += 1
            m = _CHALLENGE_RE.match(value, pos)
            if m is None:
                break
            scheme = m.group(1).lower()
            pos = m.end()
            params: dict[str, str] = {}
            while pos < len(value):
                pm = _PARAM_RE.match(value, pos)
                if pm is None:
                    break
                quoted, token = pm.group(2), pm.group(3)
                params[pm.group(1).lower()] = (re.sub(r"\\(.)", r"\1", quoted)
                                               if quoted is not None else token)
                pos = pm.end()
                if pm.group(4) is None:
                    break
                # A comma ends this parameter; a following "word word" or
                # "word" without "=" starts the next challenge.
                nxt = _PARAM_RE.match(value, pos)
                if nxt is None:
                    break
            out.append(Challenge(scheme, params))
    return out


@dataclass
class Token:
    value: str
    expires_at: float
    refresh_token: str = ""

    def valid(self, now: float | None = None) -> bool:
        return (now or time.monotonic()) < self.expires_at - TOKEN_REFRESH_MARGIN


def token_from_response(data: Any) -> Token:
    """A token server's JSON answer -> Token (``token`` or ``access_token``)."""
    if not isinstance(data, dict):
        raise ValueError("the token server's answer is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("the token server's answer has no token")
    lifetime = data.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    refresh = data.get("refresh_token")
    return Token(value, time.monotonic() + max(float(lifetime), DEFAULT_TOKEN_LIFETIME / 2),
                 refresh if isinstance(refresh, str) else "")


class TokenCache:
    """Bearer tokens shared by the operations of one daemon, keyed so that
    different users never share a token."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str, str], Token] = {}

    @staticmethod
    def key(realm: str, service: str, scopes: list[str], auth: AuthConfig) -> tuple[str, str, str, str]:
        return (realm, service, " ".join(sorted(scopes)), auth.identity)

    def get(self, key: tuple[str, str, str, str]) -> Token | None:
        token = self._tokens.get(key)
        if token is not None and not token.valid():
            del self._tokens[key]
            return None
        return token

    def put(self, key: tuple[str, str, str, str], token: Token) -> None:
        self._tokens[key] = token

    def drop(self, key: tuple[str, str, str, str]) -> None:
        self._tokens.pop(key, None)


def repository_scope(repo_path: str, actions: str) -> str:
    return f"repository:{repo_path}:{actions}"
