"""Docker's filter arguments for image list and prune (``--filter k=v``)."""

from __future__ import annotations

import re
import time
from typing import Any

from berth.errors import InvalidArgument
from berth.images.changes import parse_duration
from berth.images.timefmt import parse_rfc3339


def check_filters(filters: dict[str, Any] | None, allowed: set[str]) -> dict[str, list[str]]:
    """Normalise ``{key: [values]}`` (or the legacy ``{key: {value: true}}``)
    and reject keys the endpoint does not know."""
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        elif isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"invalid filter '{key}': values must be strings")
        out[key] = list(values)
    return out


def filter_bool(filters: dict[str, list[str]], key: str) -> bool | None:
    """A boolean filter (``dangling=true``): None when absent."""
    values = filters.get(key)
    if not values:
        return None
    lowered = {v.lower() for v in values}
    if lowered <= {"true", "1"}:
        return True
    if lowered <= {"false", "0"}:
        return False
    raise InvalidArgument(f"invalid filter '{key}={','.join(values)}'")


def _match_kv(values: list[str], labels: dict[str, str]) -> bool:
    """Every ``key`` / ``key=value`` of the filter is in the labels."""
    for value in values:
        key, sep, want = value.partition("=")
        if key not in labels or (sep and labels[key] != want):
            return False
    return True


def match_labels(filters: dict[str, list[str]], labels: dict[str, str]) -> bool:
    """``label`` filters must all match; a ``label!`` set that matches excludes."""
    if filters.get("label") and not _match_kv(filters["label"], labels):
        return False
    if filters.get("label!") and _match_kv(filters["label!"], labels):
        return False
    return True


_UNIX_RE = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")
_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def parse_until(value: str, now_ns: int | None = None) -> int:
    """A point in time for ``until``/``since``-style filters, as Docker takes
    it: a duration before now (``24h``), unix seconds (``1700000000.5``), an
    RFC 3339 time, or a local date/time. Returns unix nanoseconds."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = _UNIX_RE.match(value)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    try:
        return now_ns - parse_duration(value)
    except InvalidArgument:
        pass
    try:
        parsed = parse_rfc3339(value)
        if parsed is not None:
            return parsed
    except ValueError:
        pass
    base, _, frac = value.partition(".")
    for fmt in _LOCAL_FORMATS:
        try:
            seconds = time.mktime(time.strptime(base, fmt))
        except ValueError:
            continue
        if frac and not frac.isdigit():
            break
        return int(seconds) * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))
    raise InvalidArgument(f"invalid filter 'until={value}': not a timestamp or duration")
