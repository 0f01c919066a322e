"""Multi-stage builds: targets, skipped stages, parallel stages, ordered output."""

from __future__ import annotations

from builderkit import steps

# Two stages that can only both finish when they run at the same time: each
# waits (up to a minute) for the other's marker in a shared cache mount.
PARALLEL = """\
FROM busybox AS left
RUN --mount=type=cache,id=rendezvous,target=/r \\
    touch /r/left && i=0; while [ ! -e /r/right ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \\
    test -e /r/right && echo left-saw-right > /left
FROM busybox AS right
RUN --mount=type=cache,id=rendezvous,target=/r \\
    touch /r/right && i=0; while [ ! -e /r/left ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \\
    test -e /r/left && echo right-saw-left > /right
FROM busybox
COPY --from=left /left /
COPY --from=right /right /
"""


def test_independent_stages_run_in_parallel(builds):
    ctx = builds.context({"Dockerfile": PARALLEL})
    out = builds.build(ctx, "-t", "par").stdout
    assert builds.output("par", "cat", "/left", "/right") == "left-saw-right\nright-saw-left\n"
    # each stage's lines stay together, in stage order
    assert [s.split(" : ")[0] for s in steps(out)] == [f"Step {i}/7" for i in range(1, 8)]
    lines = out.splitlines()
    assert lines.index("Step 3/7 : FROM busybox AS right") > lines.index(
        "Step 2/7 : RUN --mount=type=cache,id=rendezvous,target=/r     touch /r/left && i=0; "
        "while [ ! -e /r/right ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;     "
        "test -e /r/right && echo left-saw-right > /left")
    builds.assert_clean()


def test_stages_the_target_does_not_need_are_skipped(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox AS broken
RUN exit 1
FROM busybox AS base
RUN echo base > /base
FROM base AS app
RUN cat /base > /app
FROM busybox AS unrelated
RUN exit 2
"""})
    out = builds.build(ctx, "--target", "app", "-t", "app").stdout
    assert steps(out) == ["Step 1/4 : FROM busybox AS base", "Step 2/4 : RUN echo base > /base",
                          "Step 3/4 : FROM base AS app", "Step 4/4 : RUN cat /base > /app"]
    assert builds.output("app", "cat", "/app") == "base\n"
    builds.assert_clean()


def test_forward_reference_and_arg_in_from(builds):
    ctx = builds.context({"Dockerfile": """\
ARG SRC=producer
FROM busybox AS consumer
ARG SRC
COPY --from=${SRC} /made /made
FROM busybox AS producer
RUN echo made > /made
"""})
    builds.build(ctx, "--target", "consumer", "-t", "fwd")
    assert builds.output("fwd", "cat", "/made") == "made\n"


def test_failure_in_one_stage_stops_the_build(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox AS slow
RUN sleep 30 && echo never > /x
FROM busybox AS failing
RUN exit 4
FROM busybox
COPY --from=slow /x /x
COPY --from=failing /bin/sh /sh
"""})
    result = builds.build(ctx, check=False)
    assert result.returncode == 4
    assert "returned a non-zero code: 4" in result.stderr
    builds.assert_clean()
