"""Context checksums: content only, exactly the selected files, and an
unchanged context is not read again (also after a restart)."""

from __future__ import annotations

import os
import time

import pytest

from berth.builder.cache import BuildCache
from berth.builder.checksum import FileHasher
from berth.builder.context import Sources
from berth.builder.errors import BuildError
from berth.builder.ignore import PatternMatcher
from berth.builder.watch import TreeWatch
from berth.metadata import Database

from builderkit import write_tree


@pytest.fixture
def db(workdir):
    database = Database(str(workdir / "meta.db"))
    BuildCache(database)  # the builder's tables
    yield database
    database.close()


def _sources(root, db, ignore=()):
    return Sources.context(str(root), FileHasher(db), PatternMatcher(list(ignore)) if ignore else None,
                           persist=True)


def _sum(sources: Sources, name: str) -> str:
    return sources.checksum(sources.select(name, "COPY")[0])


def test_unchanged_files_are_not_read_again(workdir, db):
    root = write_tree(workdir / "ctx", {f"d/f{i}": f"{i}\n" * 100 for i in range(50)})
    first = _sources(root, db)
    digest = _sum(first, "d")
    assert first.hasher.read_count == 50
    again = first.checksum(first.select("d", "COPY")[0])
    assert again == digest and first.hasher.read_count == 50
    first.hasher.flush()
    # a new hasher over the same database (a restarted daemon) reads nothing either
    restarted = _sources(root, db)
    assert _sum(restarted, "d") == digest
    assert restarted.hasher.read_count == 0
    (root / "d" / "f7").write_text("changed\n")
    next_build = Sources.context(str(root), restarted.hasher, None, persist=True)
    assert _sum(next_build, "d") != digest
    assert restarted.hasher.read_count == 1


def test_watched_context_is_not_walked_again(workdir, db):
    root = write_tree(workdir / "ctx", {f"d/sub{i % 5}/f{i}": f"{i}\n" for i in range(40)})
    watch, sums, hasher = TreeWatch(), {}, FileHasher(db)
    if not watch.available:
        pytest.skip("no inotify")

    def build_sum() -> tuple[str, bool]:
        sources = Sources.context(str(root), hasher, None, persist=True, watch=watch, sums=sums)
        value = _sum(sources, "d")
        return value, bool(sources._walks)  # walked, or answered from what inotify vouches for

    try:
        first, walked = build_sum()
        assert walked
        assert build_sum() == (first, False)
        for change in (lambda: (root / "d" / "sub3" / "f3").write_text("new\n"),
                       lambda: os.chmod(root / "d" / "sub1" / "f1", 0o600),
                       lambda: (root / "d" / "sub2" / "added").write_text("x"),
                       lambda: (root / "d" / "sub4" / "f4").unlink(),
                       lambda: (root / "d" / "sub0").rename(root / "d" / "renamed")):
            change()
            changed, walked = build_sum()
            assert walked and changed != first
            first = changed
            assert build_sum() == (first, False)
    finally:
        watch.close()


def test_checksum_ignores_mtime_and_owner_but_not_mode_or_names(workdir, db):
    root = write_tree(workdir / "ctx", {"d/a": "a", "d/b": "b"})
    base = _sum(_sources(root, db), "d")   # each _sources(): the context of a new build
    later = time.time() + 500
    os.utime(root / "d" / "a", (later, later))
    os.chown(root / "d" / "b", 1234, 1234)
    assert _sum(_sources(root, db), "d") == base
    os.chmod(root / "d" / "a", 0o600)
    assert _sum(_sources(root, db), "d") != base
    os.chmod(root / "d" / "a", 0o644)
    (root / "d" / "b").rename(root / "d" / "c")
    assert _sum(_sources(root, db), "d") != base


def test_checksum_covers_only_the_selection(workdir, db):
    root = write_tree(workdir / "ctx", {"d/a": "a", "other": "x", "d/skip.log": "log"})
    base = _sum(_sources(root, db, ["*/*.log"]), "d")
    (root / "other").write_text("changed")
    (root / "d" / "skip.log").write_text("ignored change")
    assert _sum(_sources(root, db, ["*/*.log"]), "d") == base


def test_selection_errors(workdir, db):
    root = write_tree(workdir / "ctx", {"a.txt": "a", "secret": "s"})
    (root / "link").symlink_to("/etc/passwd")
    s = _sources(root, db, ["secret"])
    with pytest.raises(BuildError, match="file not found in build context or excluded by "
                                         ".dockerignore: stat missing: file does not exist"):
        s.select("missing", "COPY")
    with pytest.raises(BuildError, match="excluded by .dockerignore"):
        s.select("secret", "COPY")
    with pytest.raises(BuildError, match="forbidden path outside the build context: ../x"):
        s.select("../x", "COPY")
    # an absolute symlink stays inside the context: /etc/passwd of the context is missing
    with pytest.raises(BuildError, match="file not found"):
        s.select("link", "COPY")
    assert [x.name for x in s.select("*.txt", "COPY")] == ["a.txt"]
    with pytest.raises(BuildError, match="no source files were specified"):
        s.select("*.none", "COPY")
