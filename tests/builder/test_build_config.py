"""berth build: output, the image config and history, CLI flags and inputs."""

from __future__ import annotations

import io
import json
import tarfile

from builderkit import steps


def test_output_like_docker_and_image_runs(builds):
    ctx = builds.context({
        "Dockerfile": "FROM busybox\nENV GREETING=hello\nRUN echo \"$GREETING from RUN\" > /msg\n"
                      "CMD [\"cat\", \"/msg\"]\n",
    })
    out = builds.build(ctx, "-t", "hello:1").stdout
    lines = out.splitlines()
    assert steps(out) == ["Step 1/4 : FROM busybox", "Step 2/4 : ENV GREETING=hello",
                          'Step 3/4 : RUN echo "$GREETING from RUN" > /msg',
                          'Step 4/4 : CMD ["cat", "/msg"]']
    run_at = lines.index('Step 3/4 : RUN echo "$GREETING from RUN" > /msg')
    assert lines[run_at + 1].startswith(" ---> Running in ")
    assert lines[run_at + 2].startswith(" ---> Removed intermediate container ")
    assert lines[run_at + 3].startswith(" ---> ") and len(lines[run_at + 3]) == len(" ---> ") + 12
    image_id = builds.inspect("hello:1")["Id"]
    assert lines[-2] == f"Successfully built {image_id[7:19]}"
    assert lines[-1] == "Successfully tagged hello:1"
    assert builds.output("hello:1") == "hello from RUN\n"
    builds.assert_clean()


def test_config_matches_dockerfile(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox
LABEL org.example.name="my app" version=1.0
ENV A=1 B="two words"
ENV PATH=/opt/bin:$PATH
USER nobody
WORKDIR /srv
WORKDIR app
EXPOSE 80 443/tcp 53/udp 8000-8001
VOLUME ["/data", "/logs"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --retries=3 CMD wget -q -O- localhost || exit 1
STOPSIGNAL SIGQUIT
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/echo"]
CMD ["default"]
"""})
    builds.build(ctx, "-t", "cfg")
    cfg = builds.config("cfg")
    assert cfg["Env"] == ["PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "A=1", "B=two words"]
    assert cfg["Labels"] == {"org.example.name": "my app", "version": "1.0"}
    assert cfg["User"] == "nobody"
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}, "53/udp": {}, "8000/tcp": {},
                                   "8001/tcp": {}}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}}
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"],
                                  "Interval": 30_000_000_000, "Timeout": 5_000_000_000,
                                  "StartPeriod": 60_000_000_000, "Retries": 3}
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["OnBuild"] == ["RUN echo triggered"]
    assert cfg["Entrypoint"] == ["/bin/echo"]
    assert cfg["Cmd"] == ["default"]
    assert builds.output("cfg") == "default\n"


def test_entrypoint_resets_inherited_cmd(builds):
    base = builds.context({"Dockerfile": "FROM busybox\nCMD [\"echo\", \"base\"]\n"})
    builds.build(base, "-t", "base-cmd")
    ctx = builds.context({"Dockerfile": "FROM base-cmd\nENTRYPOINT [\"echo\", \"ep\"]\n"})
    builds.build(ctx, "-t", "ep-only")
    cfg = builds.config("ep-only")
    assert cfg["Entrypoint"] == ["echo", "ep"] and cfg["Cmd"] is None
    # CMD in the same stage (before or after) survives the ENTRYPOINT
    ctx = builds.context({"Dockerfile": "FROM base-cmd\nCMD [\"x\"]\nENTRYPOINT [\"echo\"]\n"})
    builds.build(ctx, "-t", "both")
    cfg = builds.config("both")
    assert cfg["Entrypoint"] == ["echo"] and cfg["Cmd"] == ["x"]
    assert builds.output("both") == "x\n"
    # shell form goes through the SHELL
    ctx = builds.context({"Dockerfile": "FROM busybox\nENTRYPOINT echo from shell\n"})
    builds.build(ctx, "-t", "shell-ep")
    assert builds.config("shell-ep")["Entrypoint"] == ["/bin/sh", "-c", "echo from shell"]


def test_history_created_by_like_docker(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nARG V=1\nENV A=$V\nWORKDIR /w\nCOPY f /w/\n"
                                        "RUN true\nCMD [\"sh\"]\n", "f": "x"})
    builds.build(ctx, "-t", "hist")
    created_by = [h["CreatedBy"] for h in builds.history("hist")]
    assert created_by[0] == '/bin/sh -c #(nop)  CMD ["sh"]'
    assert created_by[1] == "|1 V=1 /bin/sh -c true"
    assert created_by[2].startswith("/bin/sh -c #(nop) COPY file:") and created_by[2].endswith(" in /w/ ")
    assert created_by[3] == "/bin/sh -c #(nop) WORKDIR /w"
    assert created_by[4] == "/bin/sh -c #(nop)  ENV A=1"
    assert created_by[5] == "/bin/sh -c #(nop)  ARG V=1"
    raw = json.loads(builds.daemon.berth("image", "inspect", "--format", "{{json .RootFS}}", "hist").stdout)
    assert len(raw["Layers"]) == 3  # busybox, WORKDIR's new directory, COPY (RUN true adds none)


def test_arg_scoping(builds):
    ctx = builds.context({"Dockerfile": """\
ARG TAG=latest
ARG ONLY_GLOBAL=global
FROM busybox:${TAG}
ARG ONLY_GLOBAL
ARG LOCAL=local-default
ENV FROM_ENV=env
ARG FROM_ENV=arg-loses
RUN echo "tag=${TAG:-unset} global=$ONLY_GLOBAL local=$LOCAL env=$FROM_ENV" > /args
"""})
    builds.build(ctx, "-t", "args")
    assert builds.output("args", "cat", "/args") == "tag=unset global=global local=local-default env=env\n"
    out = builds.build(ctx, "-t", "args2", "--build-arg", "LOCAL=override", "--build-arg",
                       "ONLY_GLOBAL=g2", "--build-arg", "UNUSED=1").stdout
    assert builds.output("args2", "cat", "/args") == "tag=unset global=g2 local=override env=env\n"
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    # ARG values are not left in the image's environment
    assert not any(e.startswith(("LOCAL=", "ONLY_GLOBAL=")) for e in builds.config("args2")["Env"])


def test_labels_and_target_flags(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox AS first\nRUN echo first > /f\n"
                                        "FROM busybox AS second\nRUN exit 1\n"})
    out = builds.build(ctx, "--target", "first", "--label", "a=b", "--label", "c=d", "-t", "tgt").stdout
    assert steps(out)[-2:] == ["Step 3/4 : LABEL a=b", "Step 4/4 : LABEL c=d"]
    assert builds.config("tgt")["Labels"] == {"a": "b", "c": "d"}
    assert builds.output("tgt", "cat", "/f") == "first\n"


def test_quiet_and_iidfile(builds, workdir):
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN echo noisy\n"})
    iid = workdir / "iid"
    out = builds.build(ctx, "-q", "--iidfile", str(iid)).stdout
    assert out.strip().startswith("sha256:") and "noisy" not in out and "Step" not in out
    assert iid.read_text() == out.strip()
    iid2 = workdir / "iid2"
    builds.build(ctx, "--iidfile", str(iid2))
    assert iid2.read_text() == out.strip()


def test_dockerfile_from_stdin_and_outside_the_context(builds, workdir):
    out = builds.daemon.berth("build", "-t", "from-stdin", "-",
                              input="FROM busybox\nRUN echo stdin > /s\n").stdout
    assert "Successfully tagged from-stdin:latest" in out
    assert builds.output("from-stdin", "cat", "/s") == "stdin\n"
    # -f outside the context, -f - with a context directory
    ctx = builds.context({"data.txt": "data\n"})
    other = workdir / "elsewhere.Dockerfile"
    other.write_text("FROM busybox\nCOPY data.txt /\n")
    builds.build(ctx, "-f", str(other), "-t", "outside")
    assert builds.output("outside", "cat", "/data.txt") == "data\n"
    builds.daemon.berth("build", "-f", "-", "-t", "df-stdin", str(ctx),
                        input="FROM busybox\nCOPY data.txt /copied\n")
    assert builds.output("df-stdin", "cat", "/copied") == "data\n"


def test_context_tar_on_stdin(builds):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY hello /hello\n"), ("hello", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    builds.daemon.berth("build", "-t", "tarctx", "-", input=buf.getvalue())
    assert builds.output("tarctx", "cat", "/hello") == "hi\n"


def test_maintainer_and_onbuild_triggers(builds):
    base = builds.context({"Dockerfile": "FROM busybox\nMAINTAINER Jane <jane@example.com>\n"
                                         "ONBUILD COPY marker /marker\nONBUILD RUN echo trig >> /log\n"})
    builds.build(base, "-t", "onbuild-base")
    assert builds.inspect("onbuild-base")["Author"] == "Jane <jane@example.com>"
    child = builds.context({"Dockerfile": "FROM onbuild-base\nRUN cat /marker /log\n",
                            "marker": "from child context\n"})
    out = builds.build(child, "-t", "onbuild-child").stdout
    assert "# Executing 2 build triggers" in out
    assert "from child context\ntrig\n" in out
    assert builds.config("onbuild-child")["OnBuild"] is None


def test_env_pairs_see_the_values_from_before_the_instruction(builds):
    # Docker's documented example: def gets the old abc.
    ctx = builds.context({"Dockerfile": "FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\n"
                                        "ENV ghi=$abc\n"})
    builds.build(ctx, "-t", "envs")
    env = builds.config("envs")["Env"]
    assert env[-3:] == ["abc=bye", "def=hello", "ghi=bye"]


def test_build_arg_without_value_comes_from_the_client_environment(builds, monkeypatch):
    ctx = builds.context({"Dockerfile": "FROM busybox\nARG FROM_ENV\nARG UNSET_ONE=default\n"
                                        "RUN echo \"$FROM_ENV $UNSET_ONE\" > /v\n"})
    monkeypatch.setenv("FROM_ENV", "client-value")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    builds.build(ctx, "-t", "envarg", "--build-arg", "FROM_ENV", "--build-arg", "UNSET_ONE")
    # a --build-arg NAME the client has no value for leaves the default in place
    assert builds.output("envarg", "cat", "/v") == "client-value default\n"


def test_predefined_proxy_args(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN echo \"proxy=$http_proxy\" > /p\n"})
    out = builds.build(ctx, "-t", "proxy", "--build-arg", "http_proxy=http://proxy.local:3128").stdout
    assert builds.output("proxy", "cat", "/p") == "proxy=http://proxy.local:3128\n"
    assert "were not consumed" not in out
    # usable without ARG, but kept out of the history (and the image's environment)
    created_by = [h["CreatedBy"] for h in builds.history("proxy")]
    assert created_by[0] == '/bin/sh -c echo "proxy=$http_proxy" > /p'
    assert not any("proxy" in e for e in builds.config("proxy")["Env"])
