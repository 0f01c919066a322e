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

from .checksum import FileHasher
from .watch import TreeWatch
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
                 keep_owner: bool = False, watch: TreeWatch | None = None,
                 sums: dict | None = None):
        self.view = view
        self.hasher = hasher
        self.what = what
        self.matcher = matcher if matcher else None
        self.persist = persist
        self.keep_owner = keep_owner  # --from sources keep their owners: they are in the key
        self.is_context = isinstance(view, DirView)
        self._walks: dict[tuple, list[tuple[str, Entry]]] = {}
        # In-place contexts: checksums remembered across builds while inotify
        # reports no change in the directories they cover.
        self.watch = watch if watch is not None and watch.available else None
        self.sums = sums if sums is not None else {}
        self._watched: list[str] = []
        self._watch_failed = False

    @classmethod
    def context(cls, root: str, hasher: FileHasher, matcher: PatternMatcher | None,
                persist: bool, watch: TreeWatch | None = None,
                sums: dict | None = None) -> "Sources":
        if persist:
            hasher.load_root(root)
        return cls(DirView(root), hasher, "build context", matcher, persist,
                   watch=watch if persist else None, sums=sums)

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
             ) -> list[tuple[str, Entry]]:
        """(name relative to the source directory, entry) for everything a
        directory source brings, parents first, names sorted; ignored files
        left out. Remembered: the checksum and the copy walk it once."""
        key = (source.path, tuple(p.text for p in excludes.patterns) if excludes else None)
        found = self._walks.get(key)
        if found is not None:
            return found
        out: list[tuple[str, Entry]] = []
        base_len = len(source.path.rstrip("/")) + 1
        matcher = self.matcher
        children_of = self.view.children
        watched = self._watched = []

        def visit(directory: str) -> None:
            if self.watch is not None:
                # Watched before it is listed: a change during the walk is seen.
                host = self.view.root + directory if directory != "/" else self.view.root
                watched.append(host)
                if not self.watch.watch(host):
                    self._watch_failed = True
            children = children_of(directory)
            for name in sorted(children):
                entry = children[name]
                rel = entry.path[base_len:]
                is_dir = entry.st.st_mode & 0o170000 == 0o040000
                if matcher is not None:
                    rel_root = entry.path[1:]
                    if matcher.matches(rel_root):
                        if is_dir and matcher.may_include_below(rel_root):
                            visit(entry.path)
                        continue
                if excludes is not None and excludes.matches(rel):
                    continue
                out.append((rel, entry))
                if is_dir:
                    visit(entry.path)

        visit(source.path)
        self._walks[key] = out
        return out

    def checksum(self, source: Source, excludes: PatternMatcher | None = None) -> str:
        """``file:<hex>`` or ``dir:<hex>``: what the layer gets from this source."""
        if not source.is_dir:
            digest = self._digests([source.entry])[source.entry.host] if stat.S_ISREG(
                source.entry.st.st_mode) else ""
            record = self._record(posixpath.basename(source.name) or source.name, source.entry,
                                  digest)
            return "file:" + hashlib.sha256(record.encode("utf-8", "surrogateescape")).hexdigest()
        key = None
        if self.watch is not None:
            key = (source.path, self.matcher.signature if self.matcher else (),
                   excludes.signature if excludes else (), self.keep_owner)
            known = self.sums.get(key)
            if known is not None and self.watch.unchanged(known[1], known[2]):
                return known[0]
            token = self.watch.token()
            self._watch_failed = False
            self._walks.pop((source.path, tuple(p.text for p in excludes.patterns)
                             if excludes else None), None)
        entries = self.walk(source, excludes)
        digests = self._digests([e for _, e in entries if e.st.st_mode & 0o170000 == 0o100000])
        record = self._record
        parts = [record(".", source.entry, "")]
        parts.extend(record(rel, entry, digests.get(entry.host, "")) for rel, entry in entries)
        joined = "".join(parts).encode("utf-8", "surrogateescape")
        checksum = "dir:" + hashlib.sha256(joined).hexdigest()
        if key is not None and not self._watch_failed:
            self.sums[key] = (checksum, tuple(self._watched), token)
        return checksum

    def _digests(self, entries: list[Entry]) -> dict[str, str]:
        return self.hasher.digests(((e.host, e.st) for e in entries), persist=self.persist)

    def _record(self, name: str, entry: Entry, digest: str) -> str:
        st = entry.st
        mode = st.st_mode
        kind = mode & 0o170000
        if kind == 0o120000:
            extra = os.readlink(entry.host)
        elif kind in (0o020000, 0o060000):
            extra = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        else:
            extra = ""
        owner = f"{st.st_uid}:{st.st_gid}" if self.keep_owner else ""
        return f"{name}\0{kind:o}\0{mode & 0o7777:o}\0{owner}\0{digest}{extra}\n"


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
