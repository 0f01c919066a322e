"""Bad input (issue §5): each gets a clear error and leaves nothing behind."""

from __future__ import annotations

import pytest

CASES = [
    # (files, expected text in stderr, exit code)
    ({"Dockerfile": "FROM busybox\nRUN echo ok\nENV\n"},
     "dockerfile parse error on line 3: ENV requires at least one argument", 1),
    ({"Dockerfile": "FROM busybox\nRUN echo \\\n  continued\nCOPPY a b\n"},
     "dockerfile parse error on line 4: unknown instruction: COPPY (did you mean COPY?)", 1),
    ({"Dockerfile": "FROM busybox\nRUN <<EOF\necho never closed\n"},
     "dockerfile parse error on line 2: unterminated heredoc", 1),
    ({"Dockerfile": "FROM busybox\nCOPY missing.txt /\n"},
     "COPY failed: file not found in build context or excluded by .dockerignore: "
     "stat missing.txt: file does not exist", 1),
    ({"Dockerfile": "FROM busybox\nCOPY ../outside /\n"},
     "COPY failed: forbidden path outside the build context: ../outside ()", 1),
    ({"Dockerfile": "FROM busybox\nCOPY excluded.txt /\n", ".dockerignore": "excluded.txt\n",
      "excluded.txt": "x"},
     "excluded by .dockerignore", 1),
    ({"Dockerfile": "FROM busybox\nRUN echo out; exit 3\n"},
     "The command '/bin/sh -c echo out; exit 3' returned a non-zero code: 3", 3),
    ({"Dockerfile": "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n"},
     "circular dependency detected on stage: b", 1),
    ({"Dockerfile": "FROM busybox AS a\nCOPY --from=a /x /x\n"},
     "circular dependency detected on stage: a", 1),
    ({"Dockerfile": "FROM busybox\n", ".dockerignore": "ok\n[unclosed\n"},
     ".dockerignore: invalid pattern '[unclosed': syntax error in pattern", 1),
    ({"Dockerfile": "FROM busybox\n", ".dockerignore": "!\n"},
     'illegal exclusion pattern: "!"', 1),
    ({"Dockerfile": ""}, "the Dockerfile (Dockerfile) cannot be empty", 1),
    ({"other": ""}, "Cannot locate specified Dockerfile: Dockerfile", 1),
    ({"Dockerfile": "FROM no-such-image:1.0\n"}, "no-such-image:1.0", 1),
    ({"Dockerfile": "FROM busybox\nENV A=${B:?must_be_set}\n"}, "B: must_be_set", 1),
    ({"Dockerfile": "FROM busybox\nSTOPSIGNAL SIGNOPE\n"}, "Invalid signal: SIGNOPE", 1),
    ({"Dockerfile": "FROM busybox\nEXPOSE 80/bogus\n"}, "invalid proto: bogus", 1),
]


@pytest.mark.parametrize("files, message, code", CASES,
                         ids=["syntax", "unknown-instruction", "heredoc", "copy-missing",
                              "copy-outside", "copy-ignored", "run-exit", "from-cycle",
                              "from-self", "broken-dockerignore", "bang-dockerignore",
                              "empty-dockerfile", "no-dockerfile", "missing-base",
                              "required-var", "bad-signal", "bad-port"])
def test_bad_input(builds, files, message, code):
    before = builds.image_ids()
    ctx = builds.context(files)
    result = builds.build(ctx, "-t", "broken", check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert builds.image_ids() == before  # no new image, dangling or not
    builds.assert_clean()


def test_unknown_target(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox AS one\nFROM busybox AS two\n"})
    result = builds.build(ctx, "--target", "three", check=False)
    assert result.returncode == 1
    assert 'target stage "three" could not be found' in result.stderr
    builds.assert_clean()


def test_bad_tag_and_flags(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\n"})
    result = builds.build(ctx, "-t", "Not:A:Valid:Tag", check=False)
    assert result.returncode == 1 and 'invalid tag "Not:A:Valid:Tag"' in result.stderr
    result = builds.build(ctx, "--platform", "linux/s390x", check=False)
    assert result.returncode == 1 and "cannot be built on this" in result.stderr
    result = builds.build(ctx, "--progress", "fancy", check=False)
    assert result.returncode == 125 and "--progress" in result.stderr
    result = builds.daemon.berth("build", str(builds.workdir / "nope"), check=False)
    assert result.returncode == 1 and 'unable to prepare context: path' in result.stderr
    builds.assert_clean()


def test_partial_success_then_failure_leaves_no_dangling_image(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nCOPY a /a\nRUN echo step > /s\nENV X=1\n"
                                        "RUN exit 5\n", "a": "a"})
    before = builds.image_ids()
    result = builds.build(ctx, "-t", "half", check=False)
    assert result.returncode == 5
    assert builds.image_ids() == before
    builds.assert_clean()


def test_client_going_away_stops_the_build(builds):
    import os
    import subprocess
    import time
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN echo started && sleep 300\n"})
    proc = subprocess.Popen([builds.daemon.env["PATH"].split(":")[0] + "/berth", "build", str(ctx)],
                            env=builds.daemon.env, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "started":
                break
        assert os.listdir(builds.daemon.root / "builder" / "run")  # the RUN container is up
    finally:
        proc.kill()
        proc.wait()
    # The daemon notices, kills the container and cleans up (waiting, not timing).
    deadline = time.monotonic() + 60
    while os.listdir(builds.daemon.root / "builder" / "run") and time.monotonic() < deadline:
        time.sleep(0.2)
    builds.assert_clean()
