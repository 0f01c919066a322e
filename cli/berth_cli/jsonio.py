"""JSON for the hot path without importing ``json``.

``import json`` pulls in ``re`` and ``enum`` (json.decoder/encoder compile
regexes at import), which under load costs more than the rest of the CLI's
start-up together. The decoder ``json`` itself uses is the C scanner in
``_json``; we drive it directly, and fall back to ``json`` where ``_json`` is
missing (other interpreters). Pretty printing and templates still use ``json``.
"""

try:
    from _json import encode_basestring as _quote_utf8
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has _json
    _make_scanner = None
    _quote = _quote_utf8 = None

_WHITESPACE = " \t\n\r"


class _Context:
    """The attributes json.JSONDecoder hands its scanner."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__
    memo: dict = {}


_scan = _make_scanner(_Context()) if _make_scanner is not None else None


def raw_decode(text: str, idx: int = 0):
    """(value, end) of the JSON value at text[idx:] (after whitespace); ValueError if invalid."""
    n = len(text)
    while idx < n and text[idx] in _WHITESPACE:
        idx += 1
    if _scan is None:
        import json
        return json.JSONDecoder().raw_decode(text, idx)
    try:
        return _scan(text, idx)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None


def loads(data):
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    value, end = raw_decode(text)
    rest = text[end:]
    if rest.strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def quote(text: str) -> str:
    """A JSON string literal."""
    if _quote is None:
        import json
        return json.dumps(text)
    return _quote(text)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote_utf8(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_indented(value, indent: int = 4) -> str:
    """Exactly json.dumps(value, indent=indent, ensure_ascii=False), for inspect output."""
    if _quote_utf8 is None:
        import json
        return json.dumps(value, indent=indent, ensure_ascii=False)
    out: list[str] = []

    def emit(v, depth: int) -> None:
        if isinstance(v, dict) and v:
            inner = "\n" + " " * (indent * (depth + 1))
            out.append("{")
            for i, (k, item) in enumerate(v.items()):
                out.append(("," if i else "") + inner + _quote_utf8(str(k)) + ": ")
                emit(item, depth + 1)
            out.append("\n" + " " * (indent * depth) + "}")
        elif isinstance(v, (list, tuple)) and v:
            inner = "\n" + " " * (indent * (depth + 1))
            out.append("[")
            for i, item in enumerate(v):
                out.append(("," if i else "") + inner)
                emit(item, depth + 1)
            out.append("\n" + " " * (indent * depth) + "]")
        elif isinstance(v, dict):
            out.append("{}")
        elif isinstance(v, (list, tuple)):
            out.append("[]")
        else:
            out.append(_scalar(v))

    emit(value, 0)
    return "".join(out)


def dumps(value) -> str:
    """Compact JSON (json.dumps(value, separators=(",", ":"), ensure_ascii=False)),
    for request bodies on the hot path (`run` posts its container config)."""
    if _quote_utf8 is None:
        import json
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    out: list[str] = []

    def emit(v) -> None:
        if isinstance(v, dict):
            out.append("{")
            for i, (k, item) in enumerate(v.items()):
                out.append(("," if i else "") + _quote_utf8(str(k)) + ":")
                emit(item)
            out.append("}")
        elif isinstance(v, (list, tuple)):
            out.append("[")
            for i, item in enumerate(v):
                if i:
                    out.append(",")
                emit(item)
            out.append("]")
        else:
            out.append(_scalar(v))

    emit(value)
    return "".join(out)
