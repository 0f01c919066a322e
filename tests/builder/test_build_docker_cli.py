"""Proof with real clients (issue §6): the docker CLI's classic builder
(``DOCKER_BUILDKIT=0``) and docker-py build through berthd's socket."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from builderkit import cache_hits, steps

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")


def _docker_binaries() -> list[str]:
    found = []
    for candidate in (shutil.which("docker"), "/usr/bin/docker"):
        if candidate and os.access(candidate, os.X_OK) and \
                os.path.realpath(candidate) not in [os.path.realpath(f) for f in found]:
            found.append(candidate)
    return found


@pytest.fixture(params=_docker_binaries())
def docker(request, builds, monkeypatch):
    """Run the docker CLI (each installed version) with the classic builder."""
    binary = request.param
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    daemon = builds.daemon

    def run(*args, check=True, input=None):
        import subprocess
        env = daemon.env
        env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
        env["DOCKER_BUILDKIT"] = "0"
        proc = subprocess.run([binary, *args], env=env, input=input, capture_output=True,
                              text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
        return proc

    return run


def test_docker_build_tags_args_target_and_cache(builds, docker):
    ctx = builds.context({
        "Dockerfile": """\
FROM busybox AS base
ARG WHO=world
RUN echo "hello $WHO" > /greeting
COPY app/ /app/
FROM base AS final
LABEL stage=final
CMD ["cat", "/greeting"]
FROM busybox AS never
RUN exit 9
""",
        "app/main.sh": "#!/bin/sh\necho app\n", ".dockerignore": "*.tmp\n", "junk.tmp": "x" * 10000,
    })
    out = docker("build", "-t", "dk:1", "-t", "dk:latest", "--build-arg", "WHO=docker",
                 "--target", "final", "--label", "via=docker", str(ctx)).stdout
    assert "Sending build context to Docker daemon" in out
    assert steps(out)[0] == "Step 1/8 : FROM busybox AS base"  # the unneeded stage is skipped
    assert "Successfully tagged dk:1" in out and "Successfully tagged dk:latest" in out
    inspect = json.loads(docker("image", "inspect", "dk:1").stdout)[0]
    assert inspect["Config"]["Labels"] == {"stage": "final", "via": "docker"}
    assert inspect["Config"]["Cmd"] == ["cat", "/greeting"]
    assert builds.output("dk:1") == "hello docker\n"
    again = docker("build", "-t", "dk:1", "--build-arg", "WHO=docker", "--target", "final",
                   "--label", "via=docker", str(ctx)).stdout
    assert len(cache_hits(again)) == 6
    # the same Dockerfile through berth's in-place path hits the same cache
    mine = builds.build(ctx, "-t", "dk:1", "--build-arg", "WHO=docker", "--target", "final",
                        "--label", "via=docker").stdout
    assert len(cache_hits(mine)) == 6
    builds.assert_clean()


def test_docker_build_errors_and_exit_codes(builds, docker):
    failing = builds.context({"Dockerfile": "FROM busybox\nRUN echo visible && exit 42\n"})
    result = docker("build", str(failing), check=False)
    assert result.returncode == 42
    assert "visible" in result.stdout
    assert "The command '/bin/sh -c echo visible && exit 42' returned a non-zero code: 42" in result.stderr
    syntax = builds.context({"Dockerfile": "FROM busybox\nNOPE x\n"})
    result = docker("build", str(syntax), check=False)
    assert result.returncode == 1
    assert "dockerfile parse error on line 2: unknown instruction: NOPE" in result.stderr
    missing = builds.context({"Dockerfile": "FROM busybox\nCOPY nothere /\n"})
    result = docker("build", str(missing), check=False)
    assert result.returncode == 1 and "COPY failed: file not found in build context" in result.stderr
    builds.assert_clean()


def test_docker_build_quiet_iidfile_stdin_and_file(builds, docker, workdir):
    ctx = builds.context({"Dockerfile.custom": "FROM busybox\nRUN echo q > /q\n"})
    iid = workdir / "iid"
    out = docker("build", "-q", "-f", str(ctx / "Dockerfile.custom"), "--iidfile", str(iid),
                 str(ctx)).stdout.strip()
    assert out.startswith("sha256:") and iid.read_text().strip() == out
    out = docker("build", "-t", "from-stdin", "-", input="FROM busybox\nRUN echo s > /s\n").stdout
    assert "Successfully tagged from-stdin:latest" in out
    assert builds.output("from-stdin", "cat", "/s") == "s\n"


def test_docker_py_build(builds):
    docker_sdk = pytest.importorskip("docker")
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN echo py > /py\nCMD [\"cat\", \"/py\"]\n"})
    client = docker_sdk.DockerClient(base_url=builds.daemon.host, version="auto")
    try:
        image, logs = client.images.build(path=str(ctx), tag="dockerpy:1", rm=True)
        streamed = "".join(chunk.get("stream", "") for chunk in logs)
        assert "Step 2/3 : RUN echo py > /py" in streamed
        assert "dockerpy:1" in image.tags
        with pytest.raises(docker_sdk.errors.BuildError) as info:
            bad = builds.context({"Dockerfile": "FROM busybox\nRUN exit 6\n"})
            client.images.build(path=str(bad))
        assert "returned a non-zero code: 6" in str(info.value)
    finally:
        client.close()
    assert builds.output("dockerpy:1") == "py\n"
