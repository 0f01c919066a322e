"""What a registry answered, turned into berth errors with Docker's wording.

A registry's error body is ``{"errors": [{"code", "message", "detail"}]}``;
Docker shows it as ``code: message`` in lower case (``manifest unknown:
manifest unknown``). The category decides the daemon's status code: a
missing or forbidden repository is a 404 "pull access denied" as in moby,
throttling and outages are 503s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from berth.errors import BerthError, Forbidden, InvalidArgument, NotFound, Unauthorized, Unavailable

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            416: "Range Not Satisfiable", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class ErrorEntry:
    code: str
    message: str


class RegistryHTTPError(BerthError):
    """A registry answered with an unexpected status."""

    def __init__(self, method: str, url: str, status: int, body: bytes = b"",
                 reason: str | None = None):
        self.method = method
        self.url = url
        self.http_status = status
        self.reason = reason or _REASONS.get(status, "")
        self.entries = _parse_body(body)
        super().__init__(self.describe())
        self.status = _berth_status(status)

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.entries}

    def describe(self) -> str:
        """Docker's rendering: ``code: message`` per entry, or the status line."""
        if self.entries:
            return "; ".join(
                f"{e.code.lower().replace('_', ' ')}: {e.message}" if e.message else e.code.lower()
                for e in self.entries)
        return f"received unexpected HTTP status: {self.http_status} {self.reason}".rstrip()


def _berth_status(status: int) -> int:
    if status in (401, 403, 404, 409):
        return status
    if status == 429 or status >= 500:
        return 503
    return 400 if status >= 400 else 500


def _parse_body(body: bytes) -> list[ErrorEntry]:
    if not body:
        return []
    try:
        data = json.loads(body[:65536])
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    raw = data.get("errors")
    entries = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("code"), str):
                message = item.get("message")
                entries.append(ErrorEntry(item["code"], message if isinstance(message, str) else ""))
    elif isinstance(data.get("details"), str):  # token servers: {"details": "..."}
        entries.append(ErrorEntry("UNAUTHORIZED", data["details"]))
    return entries


class TransferError(BerthError):
    """A blob could not be transferred (after retries); the message says why."""

    status = 502


def pull_error(err: BerthError, image: str, repo_familiar: str) -> BerthError:
    """A registry failure while pulling ``image`` -> the error the user sees."""
    if isinstance(err, RegistryHTTPError):
        codes = err.codes
        if err.http_status in (401, 403) or codes & {"DENIED", "UNAUTHORIZED", "NAME_UNKNOWN"}:
            return NotFound(f"pull access denied for {repo_familiar}, repository does not exist "
                            f"or may require 'berth login': {err.message}")
        if err.http_status == 404 or "MANIFEST_UNKNOWN" in codes:
            return NotFound(f"manifest for {image} not found: {err.message}")
        if err.http_status == 429 or "TOOMANYREQUESTS" in codes:
            return Unavailable(f"cannot pull {image}: the registry is throttling requests: "
                               f"{err.message}")
        if err.http_status >= 500:
            return Unavailable(f"cannot pull {image}: {err.message}")
        return InvalidArgument(f"cannot pull {image}: {err.message}")
    if isinstance(err, (Unauthorized, Forbidden)):
        return NotFound(f"pull access denied for {repo_familiar}, repository does not exist "
                        f"or may require 'berth login': {err.message}")
    if isinstance(err, TransferError) and image not in err.message:
        return TransferError(f"cannot pull {image}: {err.message}")
    return err


def push_error(err: BerthError, image: str) -> BerthError:
    if isinstance(err, Unauthorized) and image not in err.message:
        return Unauthorized(f"cannot push {image}: {err.message}")
    if isinstance(err, TransferError) and image not in err.message:
        return TransferError(f"cannot push {image}: {err.message}")
    if isinstance(err, RegistryHTTPError):
        if err.http_status == 401 or "UNAUTHORIZED" in err.codes:
            return Unauthorized(f"cannot push {image}: {err.message}")
        if err.http_status == 403 or "DENIED" in err.codes:
            return Forbidden(f"cannot push {image}: denied: {err.message}")
        if err.http_status == 429:
            return Unavailable(f"cannot push {image}: the registry is throttling requests: "
                               f"{err.message}")
        if err.http_status >= 500:
            return Unavailable(f"cannot push {image}: {err.message}")
        if err.http_status == 404:
            return NotFound(f"cannot push {image}: {err.message}")
        return InvalidArgument(f"cannot push {image}: {err.message}")
    return err
