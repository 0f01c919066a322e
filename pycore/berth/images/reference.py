"""Docker image references: parsing, normalisation and the "familiar" form.

The grammar and the error texts follow the distribution/reference package that
the docker CLI and daemon use, so users see the same messages:

    reference := name [":" tag] ["@" digest]
    name      := [domain "/"] path-component ["/" path-component]*

``busybox`` normalises to ``docker.io/library/busybox`` (``:latest`` is added by
:meth:`Reference.tag_name_only`), and the familiar form strips those defaults
again for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from berth.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)$")
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")

# Digest algorithms a reference may carry, with their hex lengths.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_HEX_RE = re.compile(r"^[a-f0-9]+$")


def validate_digest(value: str) -> str:
    """Check ``algorithm:hex`` the way the digest package does; returns it."""
    algorithm, sep, hex_ = value.partition(":")
    if not sep or not algorithm or not hex_:
        raise InvalidArgument("invalid checksum digest format")
    if algorithm not in _DIGEST_LENGTHS:
        raise InvalidArgument("unsupported digest algorithm")
    if len(hex_) != _DIGEST_LENGTHS[algorithm] or not _DIGEST_HEX_RE.match(hex_):
        raise InvalidArgument("invalid checksum digest length"
                              if _DIGEST_HEX_RE.match(hex_) else "invalid checksum digest format")
    return value


def is_full_id(value: str) -> bool:
    """A bare 64-hex image ID, which can never be a repository name."""
    return bool(_IDENTIFIER_RE.match(value))


def is_digest(value: str) -> bool:
    try:
        validate_digest(value)
    except InvalidArgument:
        return False
    return True


@dataclass(frozen=True)
class Reference:
    """A normalised named reference (``domain/path[:tag][@digest]``)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as users type it: ``busybox``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
            path = path[len(OFFICIAL_REPO_PREFIX):]
        return path

    def familiar(self) -> str:
        """Familiar string for display: ``busybox:latest``, ``x@sha256:...``."""
        return self._with_suffix(self.familiar_name)

    def __str__(self) -> str:
        return self._with_suffix(self.name)

    def _with_suffix(self, name: str) -> str:
        if self.tag is not None:
            name += ":" + self.tag
        if self.digest is not None:
            name += "@" + self.digest
        return name

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    def tag_name_only(self) -> "Reference":
        """Add ``:latest`` when the reference has neither tag nor digest."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self

    def trim(self) -> "Reference":
        """Only the repository name."""
        return Reference(self.domain, self.path)

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG_RE.match(tag):
            raise InvalidArgument("invalid tag format")
        return Reference(self.domain, self.path, tag=tag)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, digest=validate_digest(digest))


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse(s: str) -> Reference:
    m = _REFERENCE_RE.match(s)
    if m is None:
        if s == "":
            raise InvalidArgument("repository name must have at least one component")
        if _REFERENCE_RE.match(s.lower()):
            raise InvalidArgument("invalid reference format: repository name must be lowercase")
        raise InvalidArgument("invalid reference format")
    name, tag, digest = m.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    nm = _ANCHORED_NAME_RE.match(name)
    assert nm is not None  # the full pattern matched, so the name part does too
    domain, path = nm.group(1) or "", nm.group(2)
    if digest is not None:
        validate_digest(digest)
    return Reference(domain, path, tag, digest)


def parse_normalized(s: str) -> Reference:
    """Parse what a user typed into a fully-qualified reference (no default
    tag added). Raises InvalidArgument with Docker's messages."""
    if _IDENTIFIER_RE.match(s):
        raise InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote_name = remainder.split(":", 1)[0] if ":" in remainder else remainder
    if "@" in remote_name:
        remote_name = remote_name.split("@", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidArgument(
            f"invalid reference format: repository name ({remote_name}) must be lowercase")
    ref = _parse(domain + "/" + remainder)
    if not ref.path:
        raise InvalidArgument("invalid reference format")
    return ref


def parse_any(s: str) -> Reference | str:
    """Like distribution's ParseAnyReference: a 64-hex ID or ``sha256:<hex>``
    gives the digest string ``sha256:<hex>``; anything else must be a named
    reference."""
    if _IDENTIFIER_RE.match(s):
        return "sha256:" + s
    if is_digest(s):
        return s
    return parse_normalized(s)


def parse_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}")
    return tag


def familiar(full: str) -> str:
    """Familiar form of a stored, fully-qualified reference string."""
    return parse_normalized(full).familiar()


def _go_path_match_regex(pattern: str) -> re.Pattern[str]:
    """Translate a Go ``path.Match`` pattern: ``*`` and ``?`` never match ``/``,
    ``[...]`` classes (``^`` negates), backslash escapes."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise InvalidArgument("syntax error in pattern")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            cls = []
            while j < n and (pattern[j] != "]" or not cls):
                ch = pattern[j]
                if ch == "\\":
                    j += 1
                    if j >= n:
                        raise InvalidArgument("syntax error in pattern")
                    ch = pattern[j]
                cls.append(ch if ch == "-" else re.escape(ch))
                j += 1
            if j >= n:
                raise InvalidArgument("syntax error in pattern")
            body = "".join(cls)
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def familiar_match(pattern: str, ref: Reference) -> bool:
    """Docker's reference filter: the pattern matches the familiar string
    (``busybox:latest``) or the familiar name (``busybox``)."""
    rx = _go_path_match_regex(pattern)
    return bool(rx.match(ref.familiar()) or rx.match(ref.familiar_name))
