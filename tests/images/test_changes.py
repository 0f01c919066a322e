"""``import --change``: Dockerfile instructions applied to a config."""

import pytest

from berth.errors import InvalidArgument
from berth.images.changes import apply_changes, parse_duration


def test_cmd_and_entrypoint_json_and_shell_forms():
    assert apply_changes({}, ['CMD ["sh", "-c", "echo hi"]'])["Cmd"] == ["sh", "-c", "echo hi"]
    assert apply_changes({}, ["CMD echo $HOME  && ls"])["Cmd"] == ["/bin/sh", "-c", "echo $HOME  && ls"]
    # Not a JSON array of strings -> shell form, as Docker does for invalid JSON.
    assert apply_changes({}, ["CMD [not json"])["Cmd"] == ["/bin/sh", "-c", "[not json"]
    with pytest.raises(InvalidArgument, match="arrays must be comprised of strings only"):
        apply_changes({}, ['CMD ["a", 1]'])
    cfg = apply_changes({"Cmd": ["old"]}, ['ENTRYPOINT ["/bin/app"]'])
    assert cfg["Entrypoint"] == ["/bin/app"] and cfg["Cmd"] is None
    cfg = apply_changes({}, ['CMD ["--help"]', "ENTRYPOINT /bin/app --flag"])
    assert cfg == {"Cmd": ["--help"], "Entrypoint": ["/bin/sh", "-c", "/bin/app --flag"]}


def test_env_forms_quotes_and_expansion():
    cfg = apply_changes({"Env": ["PATH=/bin", "KEEP=1"]}, [
        "ENV A=1 B=\"two words\" C='$A literal'",
        "ENV PATH=$PATH:/opt/bin D=${A}x E=${UNSET:-dflt} F=${A:+set}",
        "ENV LEGACY some value with spaces",
        r"ENV ESC=a\ b",
    ])
    assert cfg["Env"] == ["KEEP=1", "A=1", "B=two words", "C=$A literal", "PATH=/bin:/opt/bin",
                          "D=1x", "E=dflt", "F=set", "LEGACY=some value with spaces", "ESC=a b"]


def test_env_errors():
    with pytest.raises(InvalidArgument, match="ENV must have two arguments"):
        apply_changes({}, ["ENV ONLYKEY"])
    with pytest.raises(InvalidArgument, match="can't find = in 'b'"):
        apply_changes({}, ["ENV a=1 b"])


def test_label_expose_user_volume_workdir_stopsignal_onbuild():
    cfg = apply_changes({}, [
        'LABEL version="1.0" description="an app"',
        "LABEL legacy value here",
        "EXPOSE 80 53/udp 8000-8002/tcp",
        "USER nobody:nogroup",
        'VOLUME ["/data", "/logs"]',
        "VOLUME /cache /tmp/x",
        "WORKDIR /srv",
        "WORKDIR app/../www",
        "STOPSIGNAL SIGQUIT",
        "ONBUILD RUN echo built",
    ])
    assert cfg["Labels"] == {"version": "1.0", "description": "an app", "legacy": "value here"}
    assert sorted(cfg["ExposedPorts"]) == ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
    assert cfg["User"] == "nobody:nogroup"
    assert sorted(cfg["Volumes"]) == ["/cache", "/data", "/logs", "/tmp/x"]
    assert cfg["WorkingDir"] == "/srv/www"
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["OnBuild"] == ["RUN echo built"]


def test_healthcheck():
    cfg = apply_changes({}, ["HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/ || exit 1"])
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"],
                                  "Interval": 5_000_000_000, "Retries": 3}
    cfg = apply_changes({}, ['HEALTHCHECK CMD ["/bin/check", "-q"]'])
    assert cfg["Healthcheck"] == {"Test": ["CMD", "/bin/check", "-q"]}
    assert apply_changes({}, ["HEALTHCHECK NONE"])["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(InvalidArgument, match="Unknown flag: bogus"):
        apply_changes({}, ["HEALTHCHECK --bogus=1 CMD x"])
    with pytest.raises(InvalidArgument, match="cannot be less than 1ms"):
        apply_changes({}, ["HEALTHCHECK --timeout=10us CMD x"])


def test_durations_as_go_parses_them():
    assert parse_duration("1m30s") == 90_000_000_000
    assert parse_duration("1.5h") == 5_400_000_000_000
    assert parse_duration("250ms") == 250_000_000
    assert parse_duration("0") == 0
    with pytest.raises(InvalidArgument):
        parse_duration("5 seconds")


@pytest.mark.parametrize("change, message", [
    ("FROM busybox", "from is not a valid change command"),
    ("RUN echo hi", "run is not a valid change command"),
    ("ADD . /", "add is not a valid change command"),
    ("EXPOSE 99999", "invalid range specified for container port: 99999"),
    ("EXPOSE http", "invalid containerPort: http"),
    ("STOPSIGNAL SIGBOGUS", "Invalid signal: SIGBOGUS"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD ONBUILD RUN x", "ONBUILD isn't allowed as an ONBUILD trigger"),
    ("VOLUME [\"\"]", "VOLUME specified can not be an empty string"),
    ("USER a b", "USER requires exactly one argument"),
    ("ENV A=\"unterminated", "unexpected end of statement while looking for matching double-quote"),
])
def test_invalid_changes(change, message):
    with pytest.raises(InvalidArgument) as err:
        apply_changes({}, [change])
    assert message in err.value.message


def test_nothing_is_applied_when_one_change_is_invalid():
    original = {"Env": ["A=1"]}
    with pytest.raises(InvalidArgument):
        apply_changes(original, ["ENV B=2", "RUN x"])
    assert original == {"Env": ["A=1"]}


def test_lowercase_keywords_continuations_and_comments():
    cfg = apply_changes({}, ["cmd [\"a\"]", "# a comment", "", "env X=1 \\\n  Y=2"])
    assert cfg == {"Cmd": ["a"], "Env": ["X=1", "Y=2"]}
