"""``.dockerignore`` with Docker's semantics, and Go's ``filepath.Match``
(which COPY wildcards use too).

An ignore file is read as Docker reads it: ``#`` comment lines are skipped,
each pattern is trimmed and cleaned (``filepath.Clean``), a leading ``/`` is
dropped, ``!`` marks an exception. Patterns are matched in order, the last
one that matches decides; a pattern that matches a parent directory matches
everything below it. ``**`` matches any number of directories.

A pattern that ``filepath.Match`` would reject (an unclosed ``[``, a bad
range, a trailing ``\\``) makes the whole file invalid: :class:`IgnoreFileError`.
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache

from berth.errors import InvalidArgument


class IgnoreFileError(InvalidArgument):
    pass


class BadPattern(ValueError):
    pass


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: ``./a//b/../c/`` -> ``a/c``; ``""`` -> ``.``."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


# -- Go's filepath.Match ------------------------------------------------------------

def _class_to_regex(pattern: str, i: int) -> tuple[str, int]:
    """A ``[...]`` class starting after ``[`` at ``i`` -> (regex, next index)."""
    n = len(pattern)
    negate = False
    if i < n and pattern[i] == "^":
        negate = True
        i += 1
    parts = []
    first = True
    while True:
        if i >= n:
            raise BadPattern("unclosed character class")
        if pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        lo, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise BadPattern("bad range in character class")
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            parts.append(re.escape(lo))
    body = "".join(parts)
    # A negated class never matches the separator, like Go's.
    return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), i


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    n = len(pattern)
    if i >= n:
        raise BadPattern("unclosed character class")
    ch = pattern[i]
    if ch in "-]":
        raise BadPattern(f"unexpected {ch!r} in character class")
    if ch == "\\":
        i += 1
        if i >= n:
            raise BadPattern("trailing backslash")
        ch = pattern[i]
    return ch, i + 1


@lru_cache(maxsize=4096)
def match_regex(pattern: str) -> "re.Pattern[str]":
    """Go ``filepath.Match`` pattern -> compiled regex (BadPattern if malformed)."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, i = _class_to_regex(pattern, i)
            out.append(regex)
        elif ch == "\\":
            if i >= n:
                raise BadPattern("trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.S)


def path_match(pattern: str, name: str) -> bool:
    return match_regex(pattern).match(name) is not None


def has_wildcards(path: str) -> bool:
    return any(c in path for c in "*?[\\")


# -- ignore files -------------------------------------------------------------------

def read_ignore(data: bytes | str) -> list[str]:
    """Patterns of an ignore file, normalized as Docker does."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if data.startswith("\ufeff"):
        data = data[1:]
    patterns = []
    for line in data.splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class _Pattern:
    __slots__ = ("text", "exclusion", "dirs", "kind", "regex")

    def __init__(self, text: str, exclusion: bool):
        self.text = text
        self.exclusion = exclusion
        self.dirs = text.split("/")
        self.kind, self.regex = _compile(text)

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        return self.regex.match(path) is not None


def _compile(pattern: str) -> tuple[str, "re.Pattern[str] | None"]:
    """Docker's pattern compiler: exact, prefix (``dir/**``), suffix (``**/x``)
    or a regular expression."""
    out = ["^"]
    kind = "exact"
    i = 0
    n = len(pattern)
    index = 0
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:
                    out.append("(.*/)?")
                    kind = "regexp"
                if index == 0:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in ".+()|{}$":
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            # Passed to the regular expression as Docker does (a "^" in a class negates it).
            out.append(ch)
        index += 1
    if kind != "regexp":
        return kind, None
    try:
        return kind, re.compile("".join(out) + "$", re.S)
    except re.error as e:
        raise BadPattern(str(e)) from None


class PatternMatcher:
    """Ordered include/exclude patterns (``.dockerignore`` or ``--exclude``)."""

    def __init__(self, patterns: list[str], source: str = ".dockerignore"):
        self.patterns: list[_Pattern] = []
        self.source = source
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = False
            if p.startswith("!"):
                if len(p) == 1:
                    raise IgnoreFileError(f'{source}: illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
            try:
                match_regex(p)  # what filepath.Match would reject
                self.patterns.append(_Pattern(p, exclusion))
            except BadPattern as e:
                raise IgnoreFileError(f"{source}: invalid pattern {raw!r}: syntax error in pattern "
                                      f"({e})") from None
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    @property
    def signature(self) -> tuple:
        return tuple(("!" if p.exclusion else "") + p.text for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative, ``/``-separated) is excluded: the path
        itself or one of its parent directories matches."""
        if not self.patterns:
            return False
        path = go_clean(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path)
        parent_dirs = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent_dirs:
                for k in range(1, len(parent_dirs) + 1):
                    if pattern.match("/".join(parent_dirs[:k])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """An excluded directory must still be walked when an exception
        pattern names something under it (Docker's rule: the pattern's text
        starts with the directory's path; a wildcard exception such as
        ``!**/*.go`` does not reopen an excluded directory)."""
        if not self.has_exclusions:
            return False
        prefix = directory.rstrip("/") + "/"
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            if (pattern.text + "/").startswith(prefix):
                return True
        return False
