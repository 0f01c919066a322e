"""Image references as docker's distribution/reference parses them.

Used where the docker CLI validates on the client side (tag, import) and to
show familiar names (``busybox`` for ``docker.io/library/busybox``).
"""

from __future__ import annotations

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_HEX = frozenset("0123456789abcdef")
_compiled = None


def _reference_re():
    # compiled on first use: `re` is not imported on the paths that only display
    global _compiled
    if _compiled is None:
        import re
        _compiled = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
    return _compiled


class InvalidReference(ValueError):
    pass


class Reference:
    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain: str, path: str, tag: str | None, digest: str | None):
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest

    @property
    def name(self) -> str:
        """Fully qualified: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """As users type it: busybox, user/app, localhost:5000/app."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
            return path[len(OFFICIAL_PREFIX):]
        return path

    def familiar(self) -> str:
        text = self.familiar_name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text


def parse_normalized(text: str) -> Reference:
    """reference.ParseNormalizedNamed: validate and fill in docker.io/library."""
    if len(text) == 64 and set(text) <= _HEX:
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte "
                              "hexadecimal strings")
    domain, remainder = _split_domain(text)
    name_part = remainder.split("@", 1)[0]
    tagless = name_part.rsplit(":", 1)[0] if ":" in name_part else name_part
    if tagless.lower() != tagless:
        raise InvalidReference(f"invalid reference format: repository name ({tagless}) must be "
                              "lowercase")
    m = _reference_re().match(f"{domain}/{remainder}")
    if not m:
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > 255:
        raise InvalidReference("repository name must not be more than 255 characters")
    return Reference(domain, name[len(domain) + 1:], tag, digest)


def _split_domain(text: str) -> tuple[str, str]:
    i = text.find("/")
    if i == -1 or (not any(c in text[:i] for c in ".:") and text[:i] != "localhost"
                   and text[:i].lower() == text[:i]):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = text[:i], text[i + 1:]
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:[]")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def split_for_display(text: str) -> Reference | None:
    """Split a reference the daemon reported (RepoTags/RepoDigests) without the
    full grammar: it was validated when it was stored. None for "<none>:<none>"
    and other strings that are not references."""
    name, _, digest = text.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not tag or not set(tag) <= _TAG_CHARS:
            return None
    if not name or not set(name) <= _NAME_CHARS or (digest and ":" not in digest):
        return None
    domain, remainder = _split_domain(name)
    return Reference(domain, remainder, tag, digest or None)
