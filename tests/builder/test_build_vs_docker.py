"""Proof against stock Docker (issue §6): the same Dockerfile built by berth
and by Docker's classic builder gives the same Config; berth's image, moved
with ``berth save | docker load``, runs the same in Docker.

A private dockerd (own data root, exec root and socket; no iptables, no
bridge) is started for the test and removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

DOCKERFILE = """\
FROM busybox
ARG VERSION=1.2.3
LABEL org.opencontainers.image.version=$VERSION maintainer="berth tests"
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
WORKDIR $APP_HOME
COPY bin/ bin/
COPY config.ini /etc/app/
RUN chmod +x bin/hello && echo "app:x:1001:1001::/srv/app:/bin/sh" >> /etc/passwd \
    && echo "app:x:1001:" >> /etc/group && echo "built $VERSION" > /srv/app/built
USER app
EXPOSE 8080 9090/udp
VOLUME ["/var/lib/app"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=2 CMD hello --check
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["hello"]
CMD ["--greet", "world"]
"""

COMPARED = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes",
            "Healthcheck", "StopSignal", "Shell", "OnBuild")


class PrivateDockerd:
    def __init__(self, base: Path):
        self.dir = base / "dockerd"
        self.dir.mkdir()
        self.socket = self.dir / "d.sock"
        self.log = self.dir / "dockerd.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.dir / "root"), "--exec-root",
                 str(self.dir / "exec"), "-H", f"unix://{self.socket}", "--pidfile",
                 str(self.dir / "dockerd.pid"), "--iptables=false", "--ip6tables=false",
                 "--bridge=none"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log.read_text()[-2000:]}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("dockerd did not answer")

    def docker(self, *args: str, input=None, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", DOCKER_BUILDKIT="0",
                   DOCKER_CONFIG=str(self.dir / "client"))
        env.pop("DOCKER_CONTEXT", None)
        proc = subprocess.run(["docker", *args], env=env, input=input, capture_output=True,
                              timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
        return proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open("/proc/mounts") as f:
            leftovers = [line.split()[1] for line in f if str(self.dir) in line.split()[1]]
        for mount in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)


@pytest.fixture
def stock_docker(workdir):
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd is not installed")
    engine = PrivateDockerd(workdir)
    try:
        yield engine
    finally:
        engine.stop()


def test_same_config_as_docker_and_runs_in_docker(builds, stock_docker, workdir):
    ctx = builds.context({
        "Dockerfile": DOCKERFILE,
        "bin/hello": '#!/bin/sh\nif [ "$1" = --check ]; then exit 0; fi\n'
                     'echo "hello $2 from $(id -un) in $(pwd) ($(cat /srv/app/built))"\n',
        "config.ini": "[app]\n",
    })
    # The same base image in both engines.
    stock_docker.docker("load", input=builds.save("busybox:latest"))

    builds.build(ctx, "-t", "compare:berth")
    stock_docker.docker("build", "--network", "none", "-t", "compare:docker", str(ctx))
    docker_cfg = json.loads(stock_docker.docker("image", "inspect", "compare:docker").stdout)[0]["Config"]
    berth_cfg = builds.config("compare:berth")
    for key in COMPARED:
        assert berth_cfg.get(key) == docker_cfg.get(key), key

    stock_docker.docker("load", input=builds.save("compare:berth"))
    loaded = json.loads(stock_docker.docker("image", "inspect", "compare:berth").stdout)[0]
    assert loaded["Id"] == builds.inspect("compare:berth")["Id"]
    for key in COMPARED:
        assert loaded["Config"].get(key) == docker_cfg.get(key), key
    run_berth_image = stock_docker.docker("run", "--rm", "--network", "none", "compare:berth").stdout
    run_docker_image = stock_docker.docker("run", "--rm", "--network", "none", "compare:docker").stdout
    assert run_berth_image == run_docker_image == b"hello world from app in /srv/app (built 1.2.3)\n"
    assert builds.output("compare:berth").encode() == run_docker_image
    # same files, modes and owners where the Dockerfile put them
    ours = stock_docker.docker("run", "--rm", "--network", "none", "--entrypoint", "",
                               "compare:berth", "sh", "-c", "stat -c '%n %a %u:%g' /srv/app/bin/hello "
                               "/etc/app/config.ini /srv/app/built").stdout
    theirs = stock_docker.docker("run", "--rm", "--network", "none", "--entrypoint", "",
                                 "compare:docker", "sh", "-c", "stat -c '%n %a %u:%g' /srv/app/bin/hello "
                                 "/etc/app/config.ini /srv/app/built").stdout
    assert ours == theirs
