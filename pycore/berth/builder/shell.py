"""Variable substitution in Dockerfile words, with the rules of Docker's
shell lexer (not a shell: no command substitution, no globbing).

- ``$NAME``, ``${NAME}``, and the modifiers ``${N:-w}`` ``${N-w}``
  ``${N:+w}`` ``${N+w}`` ``${N:?msg}`` ``${N?msg}``, ``${N#p}`` ``${N##p}``
  ``${N%p}`` ``${N%%p}``, ``${N/p/r}`` ``${N//p/r}``;
- single quotes are literal, double quotes allow ``$`` expansion, the escape
  token (``\\`` or a backtick, per the ``escape`` directive) escapes the next
  character (inside double quotes only ``"``, ``$`` and itself);
- :meth:`Lexer.words` also splits into words on unquoted whitespace,
  including whitespace that comes out of an unquoted expansion.

Every syntax error is a :class:`SubstitutionError` whose message names the word.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from berth.errors import InvalidArgument

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_WHITESPACE = " \t\n\r\v\f"


class SubstitutionError(InvalidArgument):
    pass


class _Unterminated(Exception):
    """A stop character was not found before the end of the word."""


class _Scan:
    __slots__ = ("text", "pos")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch


class _Words:
    """Collects words: unquoted whitespace ends a word, raw text never does."""

    __slots__ = ("words", "buf", "in_word")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _WHITESPACE:
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf = []
        return self.words


class Lexer:
    """One lexer per escape token. ``skip_unset`` keeps references to unset
    variables as written; ``raw_quotes``/``raw_escapes`` keep quote and escape
    characters in the result (used to detect quoted heredoc names)."""

    def __init__(self, escape: str = "\\", *, skip_unset: bool = False,
                 raw_quotes: bool = False, raw_escapes: bool = False,
                 process_quotes: bool = True):
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape token {escape!r}")
        self.escape = escape
        self.skip_unset = skip_unset
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        # Heredoc content keeps its quotes: only variables are expanded there.
        self.process_quotes = process_quotes

    # -- public -------------------------------------------------------------
    def word(self, text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
        """Expand ``text`` as one word. Names looked up (set or not) are
        added to ``used``."""
        return _Run(self, text, env, used).run()[0]

    def words(self, text: str, env: Mapping[str, str], used: set[str] | None = None) -> list[str]:
        """Expand ``text`` and split it into words."""
        return _Run(self, text, env, used).run()[1]


class _Run:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str], used: set[str] | None):
        self.lx = lexer
        self.source = text
        self.scan = _Scan(text)
        self.env = env
        self.used = used
        self.raw_escapes = lexer.raw_escapes

    def run(self) -> tuple[str, list[str]]:
        try:
            return self._until("", self.raw_escapes)
        except _Unterminated as e:  # pragma: no cover - only with a stop char
            raise SubstitutionError(f'failed to process "{self.source}": {e}') from None
        except _SyntaxError as e:
            raise SubstitutionError(f'failed to process "{self.source}": {e}') from None

    # Each part returns text; ``stop`` == "" means the end of the word.
    def _until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            result: list[str] = []
            words = _Words()
            scan = self.scan
            escape = self.lx.escape
            while scan.pos < len(scan.text):
                ch = scan.peek()
                if stop and ch == stop:
                    scan.next()
                    return "".join(result), words.finish()
                if ch == "$":
                    value = self._dollar()
                    result.append(value)
                    words.add_string(value)
                    continue
                if ch == "<":
                    value = self._possible_heredoc()
                    result.append(value)
                    words.add_raw(value)
                    continue
                if ch == "'" and self.lx.process_quotes:
                    value = self._single_quote()
                    result.append(value)
                    words.add_raw(value)
                    continue
                if ch == '"' and self.lx.process_quotes:
                    value = self._double_quote()
                    result.append(value)
                    words.add_raw(value)
                    continue
                ch = scan.next()
                if ch == escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = scan.next()
                    if ch == "":
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
            if stop:
                raise _Unterminated(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.finish()
        finally:
            self.raw_escapes = saved

    def _single_quote(self) -> str:
        scan = self.scan
        out = []
        ch = scan.next()
        if self.lx.raw_quotes:
            out.append(ch)
        while True:
            ch = scan.next()
            if ch == "":
                raise _SyntaxError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        scan = self.scan
        escape = self.lx.escape
        out = []
        ch = scan.next()
        if self.lx.raw_quotes:
            out.append(ch)
        while True:
            nxt = scan.peek()
            if nxt == "":
                raise _SyntaxError("unexpected end of statement while looking for matching double-quote")
            if nxt == '"':
                ch = scan.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if nxt == "$":
                out.append(self._dollar())
                continue
            ch = scan.next()
            if ch == escape:
                if self.raw_escapes:
                    out.append(ch)
                following = scan.peek()
                if following == "":
                    continue
                if following in ('"', "$", escape):
                    ch = scan.next()
            out.append(ch)

    def _possible_heredoc(self) -> str:
        scan = self.scan
        scan.next()
        if scan.peek() != "<":
            return "<"
        scan.next()
        spaces = []
        while scan.peek() in ("\t", "\r", " ") and scan.peek() != "":
            spaces.append(scan.next())
        return "<<" + "".join(spaces)

    def _lookup(self, name: str) -> tuple[str, bool]:
        if self.used is not None:
            self.used.add(name)
        if name in self.env:
            return self.env[name], True
        return "", False

    def _name(self) -> str:
        scan = self.scan
        out = []
        while scan.peek() != "":
            ch = scan.peek()
            if not out and ch.isdigit():
                while scan.peek() != "" and scan.peek().isdigit():
                    out.append(scan.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return scan.next()
            if not (ch.isalpha() or ch.isdigit() or ch == "_"):
                break
            out.append(scan.next())
        return "".join(out)

    def _dollar(self) -> str:
        scan = self.scan
        scan.next()  # $
        if scan.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        scan.next()  # {
        first = scan.peek()
        if first == "":
            raise _SyntaxError("syntax error: missing '}'")
        if first in "{}:":
            raise _SyntaxError("syntax error: bad substitution")
        name = self._name()
        ch = scan.next()
        modifier = ch
        null_is_unset = False
        if ch == "}":
            value, found = self._lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == ":":
            null_is_unset = True
            ch = scan.next()
            modifier += ch
        if ch in ("+", "-", "?", "#", "%"):
            raw = ch in ("#", "%")
            if null_is_unset and raw:
                raise _SyntaxError(f"unsupported modifier ({modifier}) in substitution")
            try:
                word, _ = self._until("}", raw)
            except _Unterminated:
                raise _SyntaxError("syntax error: missing '}'") from None
            value, found = self._lookup(name)
            if self.lx.skip_unset and not found:
                return "${" + name + modifier + word + "}"
            unset = not found or (null_is_unset and value == "")
            if ch == "-":
                return word if unset else value
            if ch == "+":
                return "" if unset else word
            if ch == "?":
                if not found:
                    raise _SyntaxError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _SyntaxError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        if ch == "/" and not null_is_unset:
            replace_all = scan.peek() == "/"
            if replace_all:
                scan.next()
            try:
                pattern, _ = self._until("/", True)
            except _Unterminated:
                raise _SyntaxError("syntax error: missing '/' in ${}") from None
            try:
                replacement, _ = self._until("}", True)
            except _Unterminated:
                raise _SyntaxError("syntax error: missing '}'") from None
            value, found = self._lookup(name)
            if self.lx.skip_unset and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            regex = _pattern_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return regex.sub(lambda _m: replacement, value)
            return regex.sub(lambda _m: replacement, value, count=1)
        if ch == "":
            raise _SyntaxError("syntax error: missing '}'")
        raise _SyntaxError(f"unsupported modifier ({modifier}) in substitution")


class _SyntaxError(Exception):
    pass


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> "re.Pattern[str]":
    """A shell pattern (``*``, ``?``, ``\\`` escapes) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            if i >= len(pattern) or pattern[i] not in "*?\\":
                bad = pattern[i] if i < len(pattern) else ""
                raise _SyntaxError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{bad}'")
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.S)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse the characters but keep each escape before what it escapes.
    tokens = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def env_map(pairs: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{K: V}`` (the last one wins)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


Expander = Callable[[str], str]
