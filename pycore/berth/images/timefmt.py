"""RFC 3339 times as Go writes them (``time.RFC3339Nano``), in integer
nanoseconds so that no precision is lost between config JSON and the API."""

from __future__ import annotations

import calendar
import re
import time

ZERO_TIME = "0001-01-01T00:00:00Z"

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def parse_rfc3339(value: str) -> int | None:
    """Unix time in nanoseconds, or None for an empty or zero time.
    Raises ValueError for a malformed string."""
    if not value or value == ZERO_TIME:
        return None
    m = _RFC3339_RE.match(value)
    if m is None:
        raise ValueError(f"invalid time {value!r}: not RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "").ljust(9, "0")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return seconds * 1_000_000_000 + int(frac)


def format_rfc3339nano(ns: int | None) -> str:
    """UTC, trailing zeros of the fraction trimmed, as Go's RFC3339Nano."""
    if ns is None:
        return ZERO_TIME
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def unix_seconds(ns: int | None) -> int:
    return 0 if ns is None else ns // 1_000_000_000


def now_ns() -> int:
    return time.time_ns()
