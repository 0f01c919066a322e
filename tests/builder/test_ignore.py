""".dockerignore semantics and Go's filepath.Match (no daemon needed)."""

from __future__ import annotations

import pytest

from berth.builder.ignore import IgnoreFileError, PatternMatcher, path_match, read_ignore


def test_read_ignore_normalizes_patterns():
    text = "\ufeff# comment\n  /abs/path  \n!  keep \n\n./a/../b\n#not a pattern\n dir/ \n"
    assert read_ignore(text) == ["abs/path", "!keep", "b", "dir"]


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.log"], "a.log", True),
    (["*.log"], "dir/a.log", False),            # * does not cross directories
    (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["dir"], "dir/sub/file", True),             # a parent that matches excludes its content
    (["dir/**"], "dir/x", True),
    (["dir/**"], "dirx", False),
    (["dir/*/x"], "dir/a/x", True),
    (["dir/*/x"], "dir/a/b/x", False),
    (["dir/**/x"], "dir/a/b/x", True),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["!keep", "*"], "keep", True),              # the last match decides
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[!a-c]x"], "dx", False),                 # only ^ negates, as in Go
    (["[^a-c]x"], "ax", False),
    (["[^a-c]x"], "dx", True),
    (["\\*"], "*", True),
    (["Dockerfile"], "Dockerfile", True),
    (["."], "anything", False),
])
def test_matches(patterns, path, excluded):
    assert PatternMatcher(patterns).matches(path) is excluded


def test_exception_reopens_only_directories_it_names():
    m = PatternMatcher(["dir", "!dir/keep"])
    assert m.may_include_below("dir")
    assert not PatternMatcher(["dir", "!**/*.go"]).may_include_below("dir")
    assert not PatternMatcher(["dir"]).may_include_below("dir")


@pytest.mark.parametrize("pattern", ["[", "a[b", "[a-", "x\\", "[]a"])
def test_broken_patterns_are_rejected(pattern):
    with pytest.raises(IgnoreFileError) as info:
        PatternMatcher([pattern])
    assert ".dockerignore" in info.value.message and "syntax error in pattern" in info.value.message


def test_lone_exclamation_mark():
    with pytest.raises(IgnoreFileError, match='illegal exclusion pattern: "!"'):
        PatternMatcher(["!"])


@pytest.mark.parametrize("pattern, name, matched", [
    ("*.txt", "a.txt", True),
    ("*.txt", "d/a.txt", False),
    ("d/*.txt", "d/a.txt", True),
    ("?", "a", True),
    ("?", "/", False),
    ("[a-z]*", "hello", True),
    ("[^a-z]*", "Hello", True),
    ("\\[x", "[x", True),
])
def test_path_match(pattern, name, matched):
    assert path_match(pattern, name) is matched
