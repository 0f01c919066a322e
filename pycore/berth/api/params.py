"""Query-string parsing shared by the handlers.

Every helper raises :class:`berth.errors.InvalidArgument` (HTTP 400) with a
message naming the parameter and the bad value, so a malformed request never
reaches a service, and never turns into a 500.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from berth.errors import InvalidArgument

# Docker accepts a loose set of spellings; anything else is rejected rather
# than silently read as true.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off", "none"})


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(
        f"invalid value for query parameter {name!r}: {raw!r} is not a boolean "
        "(use 1/0 or true/false)")


def query_int(query: Mapping[str, str], name: str, default: int | None = None,
              minimum: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(
            f"invalid value for query parameter {name!r}: {raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise InvalidArgument(
            f"invalid value for query parameter {name!r}: {value} is below {minimum}")
    return value


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Docker's ``filters`` parameter -> ``{key: [values]}``.

    Two encodings are in use: ``{"key": ["v", ...]}`` (docker-py, API >= 1.22
    docs) and ``{"key": {"v": true}}`` (what the docker CLI sends). Both are
    accepted; anything else is a 400.
    """
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid filters: {raw!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"invalid filters: expected a JSON object such as {{\"dangling\": [\"true\"]}}, "
            f"got {type(data).__name__}")
    filters: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            values = list(value)
        elif isinstance(value, dict) and all(isinstance(v, bool) for v in value.values()):
            values = [v for v, enabled in value.items() if enabled]
        elif isinstance(value, str):
            # A bare string is a common hand-written mistake; read it as one value.
            values = [value]
        else:
            raise InvalidArgument(
                f"invalid filters: the value of filter {key!r} must be a list of strings "
                f"or an object of booleans, got {json.dumps(value)}")
        if values:
            filters[key] = values
    return filters


def check_filter_keys(filters: Mapping[str, list[str]], accepted: frozenset[str] | set[str]) -> None:
    """Docker's answer to an unknown filter name: ``invalid filter 'NAME'``."""
    for key in filters:
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")


_TIMESTAMP = re.compile(r"^(-?\d+)(?:\.(\d{1,9}))?$")


def parse_timestamp(query: Mapping[str, str], name: str) -> int | None:
    """``since``/``until`` as sent by the docker CLI (``SECONDS[.NANOS]``) ->
    nanoseconds since the epoch."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    match = _TIMESTAMP.match(raw.strip())
    if not match:
        raise InvalidArgument(
            f"invalid value for query parameter {name!r}: {raw!r} is not a Unix timestamp "
            "(SECONDS or SECONDS.NANOSECONDS)")
    seconds = int(match.group(1))
    nanos = int((match.group(2) or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + (nanos if seconds >= 0 else -nanos)
