"""Sources for COPY and ADD: the build context (a directory, minus what
``.dockerignore`` excludes) or another stage's or image's filesystem.

:meth:`Sources.select` turns a source argument into the :class:`Source` s it
names (one path, or every match of a wildcard, as Docker's ``filepath.Match``
does); :meth:`Sources.checksum` is the cache key part for one of them: a
digest of exactly the files it brings (relative names, types, permission
bits, symlink targets, file contents -- not mtimes), so that a change to
another file does not bust the step.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Iterator

from .checksum import FileHasher
from .errors import BuildError
from .fsview import DirView, Entry, LayerView, TooManyLinks, View
from .ignore import PatternMatcher, go_clean, has_wildcards, path_match


@dataclass(frozen=True)
class Source:
    name: str     # the path as selected, relative to the source root ("dir/a.txt")
    path: str     # resolved inside the view, symlinks followed ("/real/a.txt")
    entry: Entry  # what is there

    @property
    def is_dir(self) -> bool:
        return self.entry.is_dir


class Sources:
    """A tree COPY/ADD read from: ``what`` names it in errors ("build
    context", "stage build", "image alpine")."""

    def __init__(self, view: View, hasher: FileHasher, what: str = "build context",
                 matcher: PatternMatcher | None = None, persist: bool = False,
                 keep_owner: bool = False):
        self.view = view
        self.hasher = hasher
        self.what = what
        self.matcher = matcher if matcher else None
        self.persist = persist
        self.keep_owner = keep_owner  # --from sources keep their owners: they are in the key
        self.is_context = isinstance(view, DirView)

    @classmethod
    def context(cls, root: str, hasher: FileHasher, matcher: PatternMatcher | None,
                persist: bool) -> "Sources":
        if persist:
            hasher.load_root(root)
        return cls(DirView(root), hasher, "build context", matcher, persist)

    @classmethod
    def image(cls, lowerdirs: list[str], hasher: FileHasher, what: str) -> "Sources":
        return cls(LayerView(lowerdirs), hasher, what, keep_owner=True)

    # -- selection ---------------------------------------------------------------
    def excluded(self, rel: str) -> bool:
        return self.matcher is not None and self.matcher.matches(rel)

    def select(self, raw: str, instruction: str, excludes: PatternMatcher | None = None
               ) -> list[Source]:
        """The sources one COPY/ADD argument names; BuildError when none."""
        original = raw
        rel = raw.lstrip("/")
        if rel.startswith("./"):
            rel = rel[2:]
        cleaned = go_clean(rel) if rel else "."
        if self.is_context and (cleaned == ".." or cleaned.startswith("../")):
            raise BuildError(f"{instruction} failed: forbidden path outside the build context: "
                             f"{original} ()")
        if has_wildcards(cleaned):
            found = self._wildcard(cleaned, excludes)
            if not found:
                raise BuildError(f"{instruction} failed: no source files were specified "
                                 f"(nothing in the {self.what} matches {original!r})")
            return found
        return [self._one(cleaned, original, instruction)]

    def _one(self, rel: str, original: str, instruction: str) -> Source:
        if rel != "." and self.excluded(rel):
            raise self._missing(original, instruction)
        try:
            path = self.view.resolve("/" + rel if rel != "." else "/")
        except TooManyLinks as e:
            raise BuildError(f"{instruction} failed: {e}") from None
        entry = self.view.lookup(path)
        if entry is None:
            raise self._missing(original, instruction)
        if path != "/" and self.excluded(path.lstrip("/")):
            # A symlink that leads to an excluded file brings nothing.
            raise self._missing(original, instruction)
        return Source(rel, path, entry)

    def _missing(self, original: str, instruction: str) -> BuildError:
        name = original.lstrip("/") or original
        if self.is_context:
            return BuildError(f"{instruction} failed: file not found in build context or excluded "
                              f"by .dockerignore: stat {name}: file does not exist")
        return BuildError(f"{instruction} failed: stat {name}: file does not exist in {self.what}")

    def _wildcard(self, pattern: str, excludes: PatternMatcher | None) -> list[Source]:
        # Walk only below the longest literal prefix, and no deeper than the pattern.
        parts = pattern.split("/")
        fixed = []
        for part in parts:
            if has_wildcards(part):
                break
            fixed.append(part)
        depth = len(parts)
        start = "/" + "/".join(fixed) if fixed else "/"
        out: list[Source] = []

        def visit(directory: str, level: int) -> None:
            for name, entry in sorted(self.view.children(directory).items()):
                rel = entry.path.lstrip("/")
                if self.excluded(rel) and not (entry.is_dir and self.matcher.may_include_below(rel)):
                    continue
                if excludes is not None and excludes.matches(rel):
                    continue
                if path_match(pattern, rel) and not self.excluded(rel):
                    try:
                        resolved = self.view.resolve(entry.path)
                    except TooManyLinks:
                        continue
                    target = self.view.lookup(resolved)
                    if target is not None:
                        out.append(Source(rel, resolved, target))
                if entry.is_dir and level + 1 < depth:
                    visit(entry.path, level + 1)

        if self.view.lookup(start) is not None:
            visit(start, len(fixed))
        return out

    # -- content --------------------------------------------------------------------
    def walk(self, source: Source, excludes: PatternMatcher | None = None
             ) -> Iterator[tuple[str, Entry]]:
        """(name relative to the source directory, entry) for everything a
        directory source brings, parents first; ignored files left out."""
        base = source.path.rstrip("/")

        def visit(directory: str) -> Iterator[tuple[str, Entry]]:
            children = self.view.children(directory)
            for name in sorted(children):
                entry = children[name]
                rel_root = entry.path.lstrip("/")
                rel = entry.path[len(base) + 1:] if base else entry.path.lstrip("/")
                if self.excluded(rel_root):
                    if entry.is_dir and self.matcher.may_include_below(rel_root):
                        yield from visit(entry.path)
                    continue
                if excludes is not None and excludes.matches(rel):
                    continue
                yield rel, entry
                if entry.is_dir:
                    yield from visit(entry.path)

        yield from visit(source.path)

    def checksum(self, source: Source, excludes: PatternMatcher | None = None) -> str:
        """``file:<hex>`` or ``dir:<hex>``: what the layer gets from this source."""
        if not source.is_dir:
            digest = self._digests([source.entry])[source.entry.host] if stat.S_ISREG(
                source.entry.st.st_mode) else ""
            record = self._record(posixpath.basename(source.name) or source.name, source.entry,
                                  digest)
            return "file:" + hashlib.sha256(record.encode("utf-8", "surrogateescape")).hexdigest()
        entries = list(self.walk(source, excludes))
        digests = self._digests([e for _, e in entries if stat.S_ISREG(e.st.st_mode)])
        h = hashlib.sha256()
        h.update(self._record(".", source.entry, "").encode())
        for rel, entry in entries:
            h.update(self._record(rel, entry, digests.get(entry.host, "")).encode(
                "utf-8", "surrogateescape"))
        return "dir:" + h.hexdigest()

    def _digests(self, entries: list[Entry]) -> dict[str, str]:
        return self.hasher.digests(((e.host, e.st) for e in entries), persist=self.persist)

    def _record(self, name: str, entry: Entry, digest: str) -> str:
        st = entry.st
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISLNK(st.st_mode):
            extra = os.readlink(entry.host)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        owner = f"{st.st_uid}:{st.st_gid}" if self.keep_owner else ""
        return f"{name}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0{owner}\0{digest}{extra}\n"


def single_name(sources: list[Source]) -> str:
    return sources[0].name if len(sources) == 1 else ""


def normalize_dest(workdir: str, dest: str) -> str:
    """COPY/ADD destination: relative to WORKDIR, trailing slash kept."""
    trailing = dest.endswith("/") or dest.endswith("/.") or dest in (".", "")
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    cleaned = go_clean(dest)
    if trailing and cleaned != "/":
        cleaned += "/"
    return cleaned
