"""Output the way docker prints it: human sizes and durations (go-units), Go's
time formats, tabwriter tables, ``--format`` handling, JSON message streams."""

from __future__ import annotations

import time

# -- sizes and durations (github.com/docker/go-units) ----------------------------

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _go_g(value: float, precision: int) -> str:
    """Go's %.<precision>g: like C's, without trailing zeros."""
    return "%.*g" % (precision, value)


def _scaled(size: float, base: float, units) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 4) -> str:
    """units.HumanSizeWithPrecision: decimal units, e.g. 4264000 -> "4.264MB"."""
    value, unit = _scaled(float(size), 1000.0, _DECIMAL)
    return _go_g(value, precision) + unit


def bytes_size(size: float) -> str:
    """units.BytesSize: binary units, e.g. 4111855616 -> "3.829GiB"."""
    value, unit = _scaled(float(size), 1024.0, _BINARY)
    return _go_g(value, 4) + unit


def human_duration(seconds: float) -> str:
    """units.HumanDuration: "Less than a second", "2 minutes", "About an hour"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(_round_half_away(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _round_half_away(x: float) -> float:
    # time.Duration.Round rounds halves away from zero
    return float(int(x + 0.5)) if x >= 0 else -float(int(-x + 0.5))


def created_since(created: int | float, now: float) -> str:
    return human_duration(now - created) + " ago"


# -- times -------------------------------------------------------------------------

def _zone(tm) -> tuple[str, str]:
    off = tm.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return sign, f"{off // 3600:02d}{(off % 3600) // 60:02d}"


def go_time_string(ts: float) -> str:
    """time.Unix(ts, 0).String(): "2024-05-01 10:11:12 +0200 CEST" (local time)."""
    tm = time.localtime(ts)
    sign, hhmm = _zone(tm)
    return time.strftime("%Y-%m-%d %H:%M:%S", tm) + f" {sign}{hhmm} {tm.tm_zone}"


def rfc3339(ts: float, nanos: int | None = None) -> str:
    """Go's RFC3339 (or RFC3339NanoFixed when nanos is given), in local time."""
    tm = time.localtime(ts)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
    if nanos is not None:
        text += f".{nanos:09d}"
    if not tm.tm_gmtoff:
        return text + "Z"
    sign, hhmm = _zone(tm)
    return f"{text}{sign}{hhmm[:2]}:{hhmm[2:]}"


# -- ids and text ----------------------------------------------------------------

def truncate_id(image_id: str) -> str:
    """stringid.TruncateID: drop the algorithm, keep 12 characters."""
    _, sep, rest = image_id.partition(":")
    return (rest if sep else image_id)[:12]


def ellipsis(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = _char_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _char_width(c: str) -> int:
    if c < "\u1100":
        return 1
    import unicodedata
    if unicodedata.combining(c):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def display_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def natural_key(text: str) -> list:
    """A sort key for sortorder.NaturalLess: runs of digits compare as numbers, and
    sort before any other character."""
    key: list = []
    number = ""
    for c in text:
        if c.isdigit():
            number += c
            continue
        if number:
            key.append((0, int(number), len(number)))
            number = ""
        key.append((1, ord(c), 0))
    if number:
        key.append((0, int(number), len(number)))
    return key


# -- tabwriter (Go's text/tabwriter, as docker's table output uses it) ---------------

def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-terminated cells into columns (elastic tabstops).

    A column is a run of consecutive lines that have a tab-terminated cell at
    that index; each gets width max(minwidth, widest cell + padding). The last
    cell of a line is not part of a column and is never padded.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[list[str]] = [[] for _ in lines]

    def format_block(line0: int, line1: int, column: int, widths: list[int]) -> None:
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                emit(this, widths)
                this += 1
                continue
            start = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, display_width(lines[this][column]) + padding)
                this += 1
            format_block(start, this, column + 1, widths + [width])

    def emit(i: int, widths: list[int]) -> None:
        cells = lines[i]
        parts = out[i]
        for j, cell in enumerate(cells):
            if j < len(widths):
                parts.append(cell + " " * (widths[j] - display_width(cell)))
            else:
                parts.append(cell)

    format_block(0, len(lines), 0, [])
    return "\n".join("".join(parts) for parts in out)


# -- rows, tables and --format ----------------------------------------------------

class Row:
    """What a template sees for one listed object (docker's formatter contexts).

    Subclasses list their ``fields`` (methods of the same name) and ``headers``.
    """

    type_name = "row"
    fields: tuple[str, ...] = ()
    headers: dict[str, str] = {}

    def template_field(self, name: str):
        if name not in self.fields:
            raise KeyError(name)
        return getattr(self, name)()

    def template_json(self) -> dict:
        # docker marshals these contexts through a map: keys come out sorted
        return {name: getattr(self, name)() for name in sorted(self.fields)}


def expand_format(fmt: str) -> tuple[bool, str]:
    """(is_table, template source) for a --format value, after docker's preFormat."""
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return is_table, fmt


def parse_template(source: str, prefix: str = "template parsing error: "):
    from .errors import TemplateError
    from .template import Template
    try:
        return Template(source)
    except TemplateError as e:
        raise TemplateError(prefix + e.message) from None


def render_rows(fmt: str, rows, headers: dict[str, str] | None = None) -> str:
    """Render rows with a docker --format value ("table ...", "json" or a template)."""
    from .errors import TemplateError
    is_table, source = expand_format(fmt)
    tmpl = parse_template(source)
    body = []
    for row in rows:
        try:
            body.append(tmpl.execute(row) + "\n")
        except TemplateError as e:
            raise TemplateError("template parsing error: " + e.message) from None
    if not is_table:
        return "".join(body)
    if headers is None:
        headers = rows[0].headers if rows else {}
    try:
        header = tmpl.execute(dict(headers), header=True)
    except TemplateError:
        header = ""
    return tabwrite(header + "\n" + "".join(body))


# -- JSON message streams (pkg/jsonmessage) ------------------------------------------

def _progress_bar(detail: dict, width: int = 110) -> str:
    current, total = detail.get("current") or 0, detail.get("total") or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return human_size(current)
    pct = min(100.0, current * 100.0 / total)
    bar_width = 50 if width >= 110 else max(10, width // 2 - 5)
    filled = int(pct * bar_width / 100)
    bar = "=" * filled + (">" if filled < bar_width else "") + " " * max(0, bar_width - filled - 1)
    return f"[{bar}] {human_size(current):>8}/{human_size(total)}"


def display_json_messages(messages, out, tty: bool = False, aux=None) -> None:
    """Print a daemon's JSON message stream (import, load, pull, build...).

    Mirrors docker's DisplayJSONMessagesStream: ``stream`` text as is, ``status``
    lines prefixed with ``id:``, progress bars only on a terminal (redrawn in
    place per id), ``aux`` handed to a callback, ``error`` raised.
    """
    from .errors import StreamError
    ids: dict[str, int] = {}
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("aux") is not None and aux is not None:
            aux(msg["aux"])
            continue
        error = msg.get("errorDetail") or ({"message": msg["error"]} if msg.get("error") else None)
        if error:
            raise StreamError(str(error.get("message") or msg.get("error") or "unknown error"))
        progress = _progress_bar(msg.get("progressDetail") or {})
        progress_msg = msg.get("progress") or ""
        has_progress = bool(progress or progress_msg)
        ident = msg.get("id") or ""
        diff = 0
        if ident and has_progress:
            if ident not in ids:
                ids[ident] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - ids[ident]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        if not tty and progress:
            continue  # progress bars only make sense on a terminal
        endl = ""
        if tty and not msg.get("stream") and has_progress:
            out.write("\x1b[2K\r")
            endl = "\r"
        line = []
        if ident:
            line.append(f"{ident}: ")
        if msg.get("from"):
            line.append(f"(from {msg['from']}) ")
        if tty and has_progress:
            line.append(f"{msg.get('status', '')} {progress or progress_msg}{endl}")
        elif progress_msg:
            line.append(f"{msg.get('status', '')} {progress_msg}{endl}")
        elif msg.get("stream"):
            line.append(f"{msg['stream']}{endl}")
        else:
            line.append(f"{msg.get('status', '')}{endl}\n")
        out.write("".join(line))
        if ident and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
