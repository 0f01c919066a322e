"""Reading a Dockerfile into instructions: parser directives (``# escape=``,
``# syntax=``, ``# check=``), comments, line continuations, heredocs and the
per-instruction argument forms (JSON exec form, whitespace lists, ``k=v``
pairs), with the rules of Docker's parser.

:func:`parse` returns a :class:`Dockerfile` of :class:`Node` s in source order;
each node knows its first and last line. Errors are
:class:`DockerfileSyntaxError` with the line number in the message.
Typed instructions (FROM, RUN, COPY ...) are built from nodes in
:mod:`berth.builder.instructions`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

from .shell import Lexer, SubstitutionError

KEYWORDS = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
            "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume",
            "workdir")
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$", re.S)
_LEADING_TABS_RE = re.compile(r"^\t+", re.M)
MAX_LINE = 64 * 1024 - 1


class DockerfileSyntaxError(InvalidArgument):
    """A Dockerfile that cannot be parsed; ``line`` is 1-based (0 if unknown)."""

    def __init__(self, message: str, line: int = 0, end_line: int | None = None):
        self.reason = message
        self.line = line
        self.end_line = end_line if end_line is not None else line
        where = f" on line {line}" if line else ""
        super().__init__(f"dockerfile parse error{where}: {message}")


@dataclass
class Heredoc:
    name: str
    content: str = ""
    expand: bool = True   # no quotes around the name: variables are expanded
    chomp: bool = False   # <<- : leading tabs are removed
    fd: int = 0

    def text(self) -> str:
        return _LEADING_TABS_RE.sub("", self.content) if self.chomp else self.content


@dataclass
class Node:
    """One instruction as written."""

    keyword: str                      # lower case: "run"
    command: str                      # as written: "RUN"
    original: str                     # the logical line, continuations joined
    flags: list[str] = field(default_factory=list)   # ["--from=build", ...]
    args: list[str] = field(default_factory=list)
    json: bool = False                # exec (JSON array) form
    pairs: list[tuple[str, str, bool]] = field(default_factory=list)  # ENV/LABEL: key, value, had "="
    heredocs: list[Heredoc] = field(default_factory=list)
    child: "Node | None" = None       # ONBUILD's instruction
    start_line: int = 0
    end_line: int = 0

    def __str__(self) -> str:
        return self.original


@dataclass
class Dockerfile:
    nodes: list[Node]
    escape: str = "\\"
    syntax: str | None = None
    warnings: list[str] = field(default_factory=list)


class _Directives:
    """Parser directives: only a contiguous run of ``# key=value`` comments at
    the very top counts; anything else ends the run."""

    def __init__(self) -> None:
        self.escape = "\\"
        self.values: dict[str, str] = {}
        self.done = False
        self._set_escape("\\")

    def _set_escape(self, token: str) -> None:
        if token not in ("`", "\\"):
            raise ValueError(f"invalid escape token '{token}' does not match ` or \\")
        self.escape = token
        e = re.escape(token)
        # The escape token ends a line that continues, unless it is itself escaped.
        self.continuation = re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")

    def feed(self, line: str) -> bool:
        """Look at a (left-trimmed) line; True if it was a directive."""
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE_RE.match(line[1:].lstrip())
        if not m:
            self.done = True
            return False
        key = m.group(1).lower()
        if key not in _DIRECTIVES:
            self.done = True
            return False
        if key in self.values:
            raise ValueError(f"only one {key} parser directive can be used")
        self.values[key] = m.group(2)
        if key == "escape":
            self._set_escape(m.group(2))
        return True


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def parse(text: str | bytes) -> Dockerfile:
    """Parse a whole Dockerfile."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerfileSyntaxError(f"the Dockerfile is not valid UTF-8 ({e})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    d = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    i = 0
    current = 0

    def process(raw: str, strip_left: bool) -> str:
        line = _trim_newline(raw)
        if len(line) > MAX_LINE:
            raise DockerfileSyntaxError(
                f"dockerfile line greater than max allowed size of {MAX_LINE}", current + 1)
        if strip_left:
            line = line.lstrip()
        try:
            d.feed(line)
        except ValueError as e:
            raise DockerfileSyntaxError(str(e), current + 1) from None
        return "" if _is_comment(line) else line

    def trim_continuation(line: str) -> tuple[str, bool]:
        if d.continuation.search(line):
            return d.continuation.sub(r"\1", line, count=1), False
        return line, True

    while i < len(lines):
        raw = lines[i]
        i += 1
        line = process(raw, True)
        current += 1
        start = current
        line, at_end = trim_continuation(line)
        if at_end and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not at_end and i < len(lines):
            raw = lines[i]
            i += 1
            cont = process(raw, False)
            current += 1
            if _is_comment(raw):
                continue
            if not cont.strip():
                empty_continuation = True
                continue
            cont, at_end = trim_continuation(cont)
            parts.append(cont)
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {logical}")
        try:
            node = _node_from_line(logical, d.escape)
        except ValueError as e:
            raise DockerfileSyntaxError(str(e), start, current) from None
        target = node.child if node.keyword == "onbuild" and node.child is not None else node
        if target.keyword in _HEREDOC_KEYWORDS and not target.json and "<<" in logical:
            try:
                docs = _heredocs_in(logical)
            except (ValueError, SubstitutionError) as e:
                raise DockerfileSyntaxError(str(e), start, current) from None
            for doc in docs:
                content = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    current += 1
                    candidate = _trim_newline(raw)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    content.append(raw)
                if not terminated:
                    raise DockerfileSyntaxError("unterminated heredoc", start, current)
                doc.content = "".join(content)
                target.heredocs.append(doc)
        node.start_line, node.end_line = start, current
        if node.child is not None:
            node.child.start_line, node.child.end_line = start, current
        nodes.append(node)
    if not nodes:
        raise DockerfileSyntaxError("file with no instructions", current)
    return Dockerfile(nodes, d.escape, d.values.get("syntax"), warnings)


# -- one logical line ------------------------------------------------------------

def _node_from_line(line: str, escape: str) -> Node:
    command, flags, rest = _split_command(line, escape)
    keyword = command.lower()
    node = Node(keyword=keyword, command=command, original=line.strip(), flags=flags)
    if keyword in ("add", "copy", "volume"):
        _maybe_json_list(node, rest)
    elif keyword in ("cmd", "entrypoint", "run", "shell"):
        _maybe_json(node, rest)
    elif keyword == "arg":
        node.args = _words(rest, escape)
    elif keyword in ("env", "label"):
        node.pairs = _name_values(rest, keyword.upper(), escape)
    elif keyword in ("expose", "from"):
        node.args = _WHITESPACE_RE.split(rest) if rest else []
    elif keyword == "healthcheck":
        _health(node, rest)
    elif keyword in ("maintainer", "stopsignal", "user", "workdir"):
        node.args = [rest] if rest else []
    elif keyword == "onbuild":
        if rest:
            node.child = _node_from_line(rest, escape)
            node.args = [node.child.command, *node.child.args]
    # Unknown keywords keep no arguments: instructions.py names them.
    return node


def _split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    parts = _WHITESPACE_RE.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1], escape)
    return parts[0], flags, rest.strip()


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--name[=value]`` words (quotes and escapes allowed in them)."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word: list[str] = []
        quote = ""
        blank_ok = False
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != escape:
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == escape:
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], words
        if blank_ok or text:
            words.append(text)


def _words(rest: str, escape: str) -> list[str]:
    """Split into words on whitespace outside quotes; quotes and escapes are
    kept (they are removed later, when the word is expanded)."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    in_word = False
    blank_ok = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                buf.append(ch)
                i += 1
                ch = rest[i]
            buf.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or buf:
                words.append("".join(buf))
            buf = []
            blank_ok = False
            in_word = False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            buf.append(ch)
            i += 1
            ch = rest[i]
        buf.append(ch)
        i += 1
    if in_word and (blank_ok or buf):
        words.append("".join(buf))
    return words


def _name_values(rest: str, what: str, escape: str) -> list[tuple[str, str, bool]]:
    words = _words(rest, escape)
    if not words:
        raise ValueError(f"{what} requires at least one argument")
    if "=" not in words[0]:
        # Legacy form: KEY value-with-spaces
        parts = _WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{what} must have two arguments")
        return [(parts[0], parts[1], False)]
    pairs = []
    for word in words:
        if "=" not in word:
            raise ValueError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        key, _, value = word.partition("=")
        pairs.append((key, value, True))
    return pairs


def _json_array(rest: str) -> list[str] | None:
    """The exec form: a JSON array of strings, else None (shell form)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _maybe_json(node: Node, rest: str) -> None:
    if not rest:
        return
    array = _json_array(rest)
    if array is not None:
        node.args, node.json = array, True
    else:
        node.args = [rest]


def _maybe_json_list(node: Node, rest: str) -> None:
    array = _json_array(rest)
    if array is not None:
        node.args, node.json = array, True
    elif rest:
        node.args = _WHITESPACE_RE.split(rest)


def _health(node: Node, rest: str) -> None:
    if not rest:
        return
    parts = re.split(r"\s+", rest, maxsplit=1)
    node.args = [parts[0]]
    sub = Node(keyword="", command="", original="")
    _maybe_json(sub, parts[1] if len(parts) > 1 else "")
    node.args += sub.args
    node.json = sub.json


def _heredocs_in(line: str) -> list[Heredoc]:
    raw = Lexer("\\", skip_unset=True, raw_quotes=True, raw_escapes=True)
    docs = []
    for word in raw.words(line, {}):
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


def parse_heredoc(word: str) -> Heredoc | None:
    """``<<EOF``, ``<<-EOF``, ``3<<"EOF"`` -> a Heredoc (content empty), else None."""
    m = _HEREDOC_RE.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    plain = Lexer("\\", skip_unset=True).words(rest, {})
    if len(plain) != 1:
        return None
    quoted = Lexer("\\", skip_unset=True, raw_quotes=True).words(rest, {})
    if len(quoted) != 1:
        raise ValueError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = plain[0]
    # Any quote in the name turns expansion off, as in a shell.
    expand = (name.count("'") + name.count('"')) == (quoted[0].count("'") + quoted[0].count('"'))
    return Heredoc(name=name, expand=expand, chomp=m.group(2) == "-", fd=int(m.group(1) or 0))
