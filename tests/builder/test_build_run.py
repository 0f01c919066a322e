"""RUN in real containers: forms, environment, user, mounts, network, layers."""

from __future__ import annotations

import io
import json
import tarfile

from builderkit import cache_hits


def test_shell_exec_forms_and_shell_instruction(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox
RUN echo "shell $0" > /shell
RUN ["sh", "-c", "echo exec > /exec"]
SHELL ["/bin/sh", "-xc"]
RUN echo traced > /traced
"""})
    out = builds.build(ctx, "-t", "forms")
    assert "+ echo traced" in out.stdout  # sh -x traces to stderr, streamed like stdout
    assert builds.output("forms", "cat", "/shell", "/exec", "/traced") == "shell /bin/sh\nexec\ntraced\n"


def test_environment_user_and_workdir(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox
ARG BUILD_ONLY=arg-value
ENV KEPT=env-value
WORKDIR /work/dir
USER nobody
RUN echo "$KEPT $BUILD_ONLY $(pwd) $(id -u) $HOME $HOSTNAME" > /tmp/env
USER root
RUN cp /tmp/env /env && test ! -e /etc/hosts.builder
"""})
    builds.build(ctx, "-t", "env")
    kept, arg, cwd, uid, home, hostname = builds.output("env", "cat", "/env").split()
    assert (kept, arg, cwd, uid, home) == ("env-value", "arg-value", "/work/dir", "65534", "/home")
    assert len(hostname) == 12
    assert builds.config("env")["WorkingDir"] == "/work/dir"


def test_run_heredocs(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox
RUN <<EOF
echo one > /one
echo two > /two
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
RUN cat <<A > /a && cat <<B > /b
first
A
second
B
"""})
    builds.build(ctx, "-t", "hd")
    assert builds.output("hd", "cat", "/one", "/two", "/a", "/b") == "one\ntwo\nfirst\nsecond\n"
    assert builds.output("hd", "cat", "/script").startswith("script ")


def test_deletions_and_runtime_mount_points_in_layers(builds, workdir):
    # A base without /proc, /sys, /dev or /etc/hosts: what the runtime needs
    # to mount there must not end up in the RUN layer.
    ctx = builds.context({"Dockerfile": """\
FROM scratch
COPY --from=busybox /bin /bin
COPY --from=busybox /etc/passwd /etc/group /etc/nsswitch.conf /etc/
RUN rm /etc/nsswitch.conf && echo new > /created
"""})
    builds.build(ctx, "-t", "mp")
    assert builds.output("mp", "sh", "-c", "test -e /etc/nsswitch.conf || cat /created") == "new\n"
    archive = workdir / "mp.tar"
    builds.daemon.berth("save", "-o", str(archive), "mp")
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        top = outer.extractfile(manifest[0]["Layers"][-1])
        with tarfile.open(fileobj=io.BytesIO(top.read())) as layer:
            names = sorted(m.name.rstrip("/") for m in layer.getmembers())
    assert names == ["created", "etc", "etc/.wh.nsswitch.conf"]


def test_failing_run_shows_its_exit_code(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN echo before-fail && exit 3\n"})
    result = builds.build(ctx, check=False)
    assert result.returncode == 3
    assert "before-fail" in result.stdout
    assert "The command '/bin/sh -c echo before-fail && exit 3' returned a non-zero code: 3" in result.stderr
    missing = builds.context({"Dockerfile": "FROM busybox\nRUN [\"/no/such/binary\"]\n"})
    result = builds.build(missing, check=False)
    assert result.returncode == 127
    assert "/no/such/binary" in result.stderr
    builds.assert_clean()


def test_cache_mount_persists_and_stays_out_of_the_image(builds):
    dockerfile = ("FROM busybox\nARG N\n"
                  "RUN --mount=type=cache,target=/cache,id=counter "
                  "echo run$N >> /cache/log && cat /cache/log > /seen\n")
    ctx = builds.context({"Dockerfile": dockerfile})
    builds.build(ctx, "--build-arg", "N=1", "-t", "m1")
    builds.build(ctx, "--build-arg", "N=2", "-t", "m2")
    assert builds.output("m2", "cat", "/seen") == "run1\nrun2\n"
    assert builds.run("m2", "test", "-e", "/cache/log", check=False).returncode == 1


def test_bind_mount_from_context_and_stage(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox AS tools
RUN echo tool-output > /tool.txt
FROM busybox
RUN --mount=type=bind,source=data,target=/mnt/data \\
    --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/tool.txt \\
    cat /mnt/data/input /mnt/tool.txt > /result && \\
    (touch /mnt/data/new 2>/dev/null && echo writable || echo read-only) >> /result
""", "data/input": "input-data\n", ".dockerignore": "data/secret\n", "data/secret": "s"})
    out = builds.build(ctx, "-t", "bind")
    assert builds.output("bind", "cat", "/result") == "input-data\ntool-output\nread-only\n"
    assert builds.run("bind", "test", "-e", "/mnt/data/input", check=False).returncode == 1
    # the mount's content is part of the cache key
    (ctx / "data" / "input").write_text("changed\n")
    out = builds.build(ctx, "-t", "bind").stdout
    assert not any(h.startswith("RUN --mount") for h in cache_hits(out))
    assert builds.output("bind", "cat", "/result").startswith("changed\n")
    # ignored files are not visible in a bind mount of the context
    leak = builds.context({"Dockerfile": "FROM busybox\nRUN --mount=type=bind,target=/c "
                                         "ls /c > /listing\n",
                           ".dockerignore": "secret\n", "secret": "s", "visible": "v"})
    builds.build(leak, "-t", "leak")
    assert "secret" not in builds.output("leak", "cat", "/listing").split()


def test_network_none(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net > /ifaces\n"})
    builds.build(ctx, "-t", "nonet")
    assert builds.output("nonet", "cat", "/ifaces").split() == ["lo"]
