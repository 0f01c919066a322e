"""The Dockerfile language: parser and typed instructions (no daemon needed)."""

from __future__ import annotations

import textwrap

import pytest

from berth.builder import instructions as ins
from berth.builder.dockerfile import DockerfileSyntaxError, parse
from berth.builder.instructions import go_duration, parse_duration, parse_mount, parse_stages


def df(text: str):
    return parse(textwrap.dedent(text).lstrip("\n"))


def stages_of(text: str):
    return parse_stages(df(text))


def test_directives_comments_and_continuations():
    d = df("""
        # syntax=docker/dockerfile:1
        # escape=`
        FROM busybox
        # a comment
        RUN echo one `
          # a comment inside the instruction
          two
        """)
    assert d.syntax == "docker/dockerfile:1"
    assert d.escape == "`"
    run = d.nodes[1]
    assert run.keyword == "run"
    assert run.args == ["echo one   two"]
    assert (run.start_line, run.end_line) == (5, 7)


def test_directives_only_at_the_top():
    d = df("""
        FROM busybox
        # escape=`
        RUN echo \\
          hi
        """)
    assert d.escape == "\\"
    assert d.nodes[1].args == ["echo   hi"]


def test_duplicate_directive_is_an_error():
    with pytest.raises(DockerfileSyntaxError) as info:
        df("# escape=\\\n# escape=`\nFROM x\n")
    assert "only one escape parser directive can be used" in info.value.message
    assert info.value.line == 2


def test_exec_and_shell_forms():
    d = df("""
        FROM x
        CMD ["sh", "-c", "echo hi"]
        ENTRYPOINT /bin/app --flag
        RUN ["echo", 1]
        """.replace('RUN ["echo", 1]', "SHELL [\"/bin/bash\", \"-c\"]"))
    cmd, entrypoint, shell = d.nodes[1:]
    assert cmd.json and cmd.args == ["sh", "-c", "echo hi"]
    assert not entrypoint.json and entrypoint.args == ["/bin/app --flag"]
    assert shell.json and shell.args == ["/bin/bash", "-c"]


def test_json_array_of_non_strings_is_an_error():
    with pytest.raises(DockerfileSyntaxError) as info:
        df('FROM x\nRUN ["echo", 1]\n')
    assert "arrays must be comprised of strings only" in info.value.message
    assert info.value.line == 2


def test_invalid_json_falls_back_to_shell_form():
    d = df('FROM x\nRUN [ "unclosed\n')
    assert d.nodes[1].args == ['[ "unclosed'] and not d.nodes[1].json


def test_env_and_label_forms():
    d = df("""
        FROM x
        ENV A=1 B="two words" C=three\\ words
        ENV OLD value with spaces
        LABEL "com.example.name"="a b" version=1.0
        """)
    assert d.nodes[1].pairs == [("A", "1", True), ("B", '"two words"', True),
                                ("C", "three\\ words", True)]
    assert d.nodes[2].pairs == [("OLD", "value with spaces", False)]
    assert d.nodes[3].pairs[0] == ('"com.example.name"', '"a b"', True)


def test_env_syntax_error():
    with pytest.raises(DockerfileSyntaxError) as info:
        df("FROM x\nENV A=1 B\n")
    assert "can't find = in \"B\"" in info.value.message or "can't find = in 'B'" in info.value.message


def test_heredocs():
    d = df("""
        FROM x
        RUN <<EOF
        echo one
        echo two
        EOF
        COPY <<-"END" /file
        \tline $A
        \tEND
        RUN cat <<A && cat <<B
        a
        A
        b
        B
        """)
    run, copy, multi = d.nodes[1:]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo one\necho two\n"
    assert run.heredocs[0].expand
    doc = copy.heredocs[0]
    assert doc.chomp and not doc.expand and doc.text() == "line $A\n"
    assert [h.name for h in multi.heredocs] == ["A", "B"]
    assert (multi.start_line, multi.end_line) == (9, 13)


def test_unterminated_heredoc():
    with pytest.raises(DockerfileSyntaxError) as info:
        df("FROM x\nRUN <<EOF\necho\n")
    assert "unterminated heredoc" in info.value.message
    assert info.value.line == 2


def test_flags_and_arguments():
    meta, stages = stages_of("""
        ARG BASE=busybox
        FROM $BASE AS build
        COPY --from=other --chown=1:2 --chmod=0755 --link a b /dst/
        ADD --checksum=sha256:abc https://example.com/x /x
        RUN --mount=type=cache,target=/cache --network=none echo hi
        HEALTHCHECK --interval=5s --timeout=1m30s --retries=3 CMD curl -f http://x || exit 1
        EXPOSE 443 80/udp
        ONBUILD RUN echo trigger
        FROM scratch
        """)
    assert [a.args for a in meta] == [[("BASE", "busybox")]]
    build, last = stages
    assert (build.name, build.base, last.name, last.index) == ("build", "$BASE", "", 1)
    copy, add, run, health, expose, onbuild = build.commands
    assert (copy.from_, copy.chown, copy.chmod, copy.link) == ("other", "1:2", "0755", True)
    assert copy.sources == ["a", "b"] and copy.dest == "/dst/"
    assert add.checksum == "sha256:abc"
    assert run.mounts == ["type=cache,target=/cache"] and run.network == "none"
    assert health.test == ["CMD-SHELL", "curl -f http://x || exit 1"]
    assert health.config() == {"Test": ["CMD-SHELL", "curl -f http://x || exit 1"],
                               "Interval": 5_000_000_000, "Timeout": 90_000_000_000, "Retries": 3}
    assert expose.ports == ["443", "80/udp"]
    assert onbuild.expression == "RUN echo trigger"


@pytest.mark.parametrize("text, line, message", [
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("RUN echo\n", 1, "no build stage in current context"),
    ("FROM x\nFRUM y\n", 2, "unknown instruction: FRUM (did you mean FROM?)"),
    ("FROM x\nfoo bar\n", 2, "unknown instruction: foo"),
    ("FROM x\nCOPY --frm=a b c\n", 2, "unknown flag: --frm (did you mean from?)"),
    ("FROM x\nCOPY --link --link a b\n", 2, "duplicate flag specified: --link"),
    ("FROM x\nCOPY --chown a b\n", 2, "missing a value on flag: --chown"),
    ("FROM x\nCOPY a\n", 2, "COPY requires at least two arguments"),
    ("FROM x AS 1abc\n", 1, "invalid name for build stage"),
    ("FROM x AS a\nFROM y AS a\n", 2, "duplicate stage name 'a'"),
    ("FROM x\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
    ("FROM x\nSHELL /bin/bash -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM x\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD"),
    ("FROM x\nONBUILD FROM y\n", 2, "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM x\nHEALTHCHECK --interval=1us CMD x\n", 2, "cannot be less than 1ms"),
    ("FROM x\nHEALTHCHECK BOGUS x\n", 2, 'Unknown type "BOGUS" in HEALTHCHECK'),
    ("FROM x\nHEALTHCHECK CMD\n", 2, "Missing command after HEALTHCHECK CMD"),
    ("FROM x\nRUN --mount=type=nope,target=/x true\n", 2, "unsupported mount type"),
    ("FROM x\nRUN --mount=type=cache true\n", 2, "target is required"),
    ("FROM x\nARG =1\n", 2, "ARG names can not be blank"),
    ("\n\n# only comments\n", 3, "file with no instructions"),
])
def test_errors_carry_the_line(text, line, message):
    with pytest.raises(DockerfileSyntaxError) as info:
        parse_stages(parse(text))
    assert message in info.value.message
    assert info.value.line == line
    if line:
        assert f"on line {line}:" in info.value.message


def test_continuation_lines_count_for_errors():
    with pytest.raises(DockerfileSyntaxError) as info:
        stages_of("""
            FROM x
            RUN echo \\
                one \\
                two
            BOGUS here
            """)
    assert info.value.line == 5


def test_empty_continuation_line_warns():
    d = df("FROM x\nRUN echo \\\n\n  hi\n")
    assert d.nodes[1].args == ["echo   hi"]
    assert d.warnings and "Empty continuation line" in d.warnings[0]


def test_mount_parsing():
    m = parse_mount("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1000")
    assert (m.type, m.target, m.id, m.sharing, m.mode, m.uid) == ("cache", "/root/.cache", "pip",
                                                                  "locked", 0o700, 1000)
    b = parse_mount("target=/src,source=app,rw")
    assert (b.type, b.source, b.readonly) == ("bind", "app", False)
    with pytest.raises(ValueError, match="sharing"):
        parse_mount("type=cache,target=/x,sharing=bogus")


def test_durations():
    assert parse_duration("1m30s", "i") == 90_000_000_000
    assert parse_duration("1.5h", "i") == 5_400_000_000_000
    assert parse_duration("", "i") == 0
    with pytest.raises(ValueError):
        parse_duration("5", "i")
    assert go_duration(90_000_000_000) == "1m30s"
    assert go_duration(500_000_000) == "500ms"
    assert go_duration(0) == "0s"
    assert go_duration(3_600_000_000_000) == "1h0m0s"


def test_command_text_is_the_original_line():
    _, stages = stages_of("FROM x\nRUN   echo   hi  \n")
    assert stages[0].commands[0].text == "RUN   echo   hi"
    assert isinstance(stages[0].commands[0], ins.RunCommand)
