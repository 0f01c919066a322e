"""Variable substitution with Docker's lexer rules (no daemon needed)."""

from __future__ import annotations

import pytest

from berth.builder.shell import Lexer, SubstitutionError

ENV = {"A": "hello world", "EMPTY": "", "P": "/usr/local/bin", "N": "5"}


@pytest.mark.parametrize("word, expected", [
    ("$A", "hello world"),
    ("${A}", "hello world"),
    ("x${A}y", "xhello worldy"),
    ("'$A'", "$A"),
    ('"$A"', "hello world"),
    (r"\$A", "$A"),
    (r'"a\"b"', 'a"b'),
    (r'"a\b"', r"a\b"),            # inside double quotes only ", $ and \ are escaped
    ("${EMPTY:-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${UNSET-def}", "def"),
    ("${UNSET:-x y}", "x y"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${P#*/}", "usr/local/bin"),
    ("${P##*/}", "bin"),
    ("${P%/*}", "/usr/local"),
    ("${P%%/*}", ""),
    ("${P/local/LOCAL}", "/usr/LOCAL/bin"),
    ("${A// /_}", "hello_world"),
    ("$UNSET", ""),
    ("a$", "a$"),
    ("$1x", "x"),                  # $1 is a (numeric) name of its own
    ("${N}0", "50"),
])
def test_word(word, expected):
    assert Lexer().word(word, ENV) == expected


@pytest.mark.parametrize("text, expected", [
    ("$A", ["hello", "world"]),            # unquoted expansion is split
    ('"$A"', ["hello world"]),
    ("a 'b c' d", ["a", "b c", "d"]),
    ("80 ${N}43/udp", ["80", "543/udp"]),
    ("  ", []),
])
def test_words(text, expected):
    assert Lexer().words(text, ENV) == expected


def test_backtick_escape():
    lexer = Lexer("`")
    assert lexer.word("`$A", ENV) == "$A"
    assert lexer.word(r"C:\path", ENV) == r"C:\path"


def test_used_names_are_reported():
    used: set[str] = set()
    Lexer().word("$A ${UNSET:-x} '$NOT'", ENV, used)
    assert used == {"A", "UNSET"}


def test_skip_unset_keeps_references():
    assert Lexer(skip_unset=True).word("$A $UNSET ${X:-y}", ENV) == "hello world $UNSET ${X:-y}"


def test_quotes_kept_when_not_processed():
    # heredoc content: quotes are data, variables are expanded
    assert Lexer(process_quotes=False).word("echo '$A' \"$A\"", ENV) == "echo 'hello world' \"hello world\""


@pytest.mark.parametrize("word, message", [
    ("${A", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("'abc", "matching single-quote"),
    ('"abc', "matching double-quote"),
    ("${UNSET:?must be set}", "UNSET: must be set"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("${A:#x}", "unsupported modifier"),
])
def test_errors_name_the_word(word, message):
    with pytest.raises(SubstitutionError) as info:
        Lexer().word(word, ENV)
    assert message in info.value.message
    assert f'failed to process "{word}"' in info.value.message
