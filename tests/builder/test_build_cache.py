"""The layer cache: what busts a step and what does not."""

from __future__ import annotations

import os
import time

from builderkit import cache_hits, steps

DOCKERFILE = """\
FROM busybox
COPY first.txt /first.txt
COPY dir/ /dir/
RUN cat /first.txt /dir/* > /all
COPY last.txt /last.txt
CMD ["cat", "/all"]
"""


def _context(builds):
    return builds.context({"Dockerfile": DOCKERFILE, "first.txt": "one\n", "dir/a": "a\n",
                           "dir/b": "b\n", "last.txt": "last\n", "unused.txt": "x\n",
                           ".dockerignore": "ignored/\n", "ignored/big": "not in context\n"})


def test_noop_rebuild_uses_the_cache_everywhere(builds):
    ctx = _context(builds)
    first = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(first) == []
    image = builds.inspect("c")["Id"]
    second = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(second) == [s.split(" : ", 1)[1] for s in steps(second)][1:]
    assert builds.inspect("c")["Id"] == image
    builds.assert_clean()


def test_changed_file_busts_exactly_the_steps_that_read_it(builds):
    ctx = _context(builds)
    builds.build(ctx, "-t", "c")
    replaced = {builds.inspect("c")["Id"]}
    (ctx / "dir" / "b").write_text("b changed\n")
    out = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(out) == ["COPY first.txt /first.txt"]
    assert builds.output("c") == "one\na\nb changed\n"
    # a file no step reads, and an ignored file, change nothing
    (ctx / "unused.txt").write_text("changed\n")
    (ctx / "ignored" / "big").write_text("changed too\n")
    replaced.add(builds.inspect("c")["Id"])
    out = builds.build(ctx, "-t", "c").stdout
    assert len(cache_hits(out)) == 5
    # the last COPY only
    (ctx / "last.txt").write_text("new last\n")
    out = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(out) == ["COPY first.txt /first.txt", "COPY dir/ /dir/",
                               "RUN cat /first.txt /dir/* > /all"]
    # As with Docker, images whose tag moved to a newer build stay (untagged).
    builds.assert_clean(allow_dangling=replaced)


def test_mtime_does_not_bust_but_mode_and_new_files_do(builds):
    ctx = _context(builds)
    builds.build(ctx, "-t", "c")
    later = time.time() + 1000
    for path in (ctx / "first.txt", ctx / "dir" / "a"):
        os.utime(path, (later, later))
    out = builds.build(ctx, "-t", "c").stdout
    assert len(cache_hits(out)) == 5
    os.chmod(ctx / "dir" / "a", 0o600)
    out = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(out) == ["COPY first.txt /first.txt"]
    (ctx / "dir" / "new").write_text("new\n")
    out = builds.build(ctx, "-t", "c").stdout
    assert cache_hits(out) == ["COPY first.txt /first.txt"]
    assert builds.output("c") == "one\na\nb\nnew\n"


def test_instruction_and_build_arg_changes(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nARG V=1\nRUN echo $V > /v\nRUN echo other\n"})
    builds.build(ctx)
    out = builds.build(ctx, "--build-arg", "V=2", "-t", "v2").stdout
    # ARG itself is cached (its default did not change); RUNs see a new value
    assert cache_hits(out) == ["ARG V=1"]
    assert builds.output("v2", "cat", "/v") == "2\n"
    out = builds.build(ctx, "--build-arg", "V=2").stdout
    assert len(cache_hits(out)) == 3
    (ctx / "Dockerfile").write_text("FROM busybox\nARG V=1\nRUN echo $V > /v\nRUN echo changed\n")
    out = builds.build(ctx).stdout
    assert cache_hits(out) == ["ARG V=1", "RUN echo $V > /v"]


def test_no_cache(builds):
    ctx = _context(builds)
    builds.build(ctx, "-t", "c")
    out = builds.build(ctx, "--no-cache", "-t", "c").stdout
    assert cache_hits(out) == []


def test_cache_survives_daemon_restart_and_removed_images(builds):
    ctx = _context(builds)
    builds.build(ctx, "-t", "c")
    builds.daemon.stop()
    builds.daemon.start()
    assert len(cache_hits(builds.build(ctx, "-t", "c").stdout)) == 5
    # the image and all its untagged parents go; the cache brings them back
    builds.daemon.berth("rmi", "c")
    out = builds.build(ctx, "-t", "c").stdout
    assert len(cache_hits(out)) == 5
    assert builds.output("c") == "one\na\nb\n"
    builds.assert_clean()


def test_prune_drops_the_cache(builds):
    ctx = _context(builds)
    builds.build(ctx, "-t", "c")
    # without --all only the records no image is made of go: none here
    out = builds.daemon.berth("builder", "prune", "-f").stdout
    assert out == "Total reclaimed space: 0B\n"
    assert len(cache_hits(builds.build(ctx, "-t", "c").stdout)) == 5
    out = builds.daemon.berth("builder", "prune", "-af").stdout
    assert "Deleted build cache objects:" in out and "Total reclaimed space:" in out
    assert cache_hits(builds.build(ctx, "-t", "c").stdout) == []
    # once the images are gone (the rebuilt one, and the first one its tag left
    # dangling), their records are dangling cache
    builds.daemon.berth("rmi", "c")
    builds.daemon.berth("image", "prune", "-f")
    out = builds.daemon.berth("builder", "prune", "-f").stdout
    assert "Deleted build cache objects:" in out
    reclaimed = out.rsplit("Total reclaimed space: ", 1)[1]
    assert reclaimed.strip() not in ("0B", "")
    assert cache_hits(builds.build(ctx, "-t", "c").stdout) == []


def test_failed_build_keeps_the_cache_of_steps_that_worked(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nCOPY a /a\nRUN exit 7\n", "a": "a\n"})
    builds.build(ctx, check=False)
    builds.assert_clean()
    out = builds.build(ctx, check=False).stdout
    assert cache_hits(out) == ["COPY a /a"]
    builds.assert_clean()
