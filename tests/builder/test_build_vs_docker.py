"""Proof against stock Docker (issue §6): the same Dockerfile built by berth
and by Docker's classic builder gives the same Config; berth's image, moved
with ``berth save | docker load``, runs the same in Docker.

A private dockerd (own data root, exec root and socket; no iptables, no
bridge) is started for the test and removed afterwards.
"""

from __future__ import annotations

import json

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


@pytest.fixture
def stock_docker(private_dockerd):
    return private_dockerd(text=False)


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
