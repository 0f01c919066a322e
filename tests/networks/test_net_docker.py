"""Proof with the real docker CLI through berthd's socket: network create,
run --network, two busybox containers talking by name (nc, and wget against
busybox httpd), -p reachable on 127.0.0.1 from the host, network inspect
showing the containers, connect/disconnect, prune. Each docker client found
runs the tests (v28 on PATH and Debian's v20.10, API 1.41)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from netkit import IMAGE
from netkit import free_port, http_get, wait_for


def _docker_binaries() -> list[str]:
    found = []
    for candidate in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            if os.path.realpath(candidate) not in {os.path.realpath(f) for f in found}:
                found.append(candidate)
    return found


@pytest.fixture(params=_docker_binaries() or [None], ids=lambda b: b or "no-docker")
def docker(request, net):
    if request.param is None:
        pytest.skip("no docker CLI installed")

    def run(*args: str, check: bool = True, input: str | None = None):
        env = net.env
        env["DOCKER_CONFIG"] = str(net.root.parent / "docker-config")
        env.pop("DOCKER_API_VERSION", None)
        proc = subprocess.run([request.param, *args], env=env, capture_output=True, text=True,
                              input=input, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc
    return run


def test_two_containers_talk_by_name(net, docker):
    nid = docker("network", "create", "--subnet", net.plan.subnet(0), "talk").stdout.strip()
    assert len(nid) == 64
    docker("run", "-d", "--name", "httpd", "--network", "talk", IMAGE,
           "httpd", "-f", "-p", "80", "-h", "/etc")
    # The listener's stdin stays open (a pipe from sleep): busybox nc half-closes at
    # stdin EOF, and with /dev/null a client whose echo had not yet written would
    # see that FIN and exit 0 having sent nothing.
    docker("run", "-d", "--name", "listener", "--network", "talk", IMAGE,
           "sh", "-c", "sleep 300 | nc -l -p 5000 > /tmp/got; sleep 300")
    hostname = docker("inspect", "-f", "{{.Config.Hostname}}", "httpd").stdout.strip()
    # `run -d` returns once the process runs, not once it listens (as with Docker).
    out = wait_for(lambda: docker("run", "--rm", "--network", "talk", IMAGE, "wget", "-qO-",
                                  "http://httpd/hostname", check=False).stdout,
                   what="httpd to answer by name")
    assert out == hostname + "\n"
    docker("run", "--rm", "--network", "talk", IMAGE, "sh", "-c",
           "until echo hello by name | nc listener 5000; do sleep 0.05; done")
    assert wait_for(lambda: docker("exec", "listener", "cat", "/tmp/got").stdout) == \
        "hello by name\n"
    info = json.loads(docker("network", "inspect", "talk").stdout)[0]
    assert info["Id"] == nid and info["Driver"] == "bridge"
    names = sorted(c["Name"] for c in info["Containers"].values())
    assert names == ["httpd", "listener"]
    for c in info["Containers"].values():
        assert c["IPv4Address"].endswith("/24") and c["MacAddress"].startswith("02:42:")
    ls = docker("network", "ls", "--format", "{{.Name}}\t{{.Driver}}").stdout.split("\n")
    assert "talk\tbridge" in ls and "bridge\tbridge" in ls and "none\tnull" in ls


def test_published_port_on_localhost(net, docker):
    port = free_port()
    docker("run", "-d", "--name", "pub", "-p", f"{port}:80", IMAGE,
           "httpd", "-f", "-p", "80", "-h", "/etc")
    hostname = docker("inspect", "-f", "{{.Config.Hostname}}", "pub").stdout.strip()

    def get():
        try:
            return http_get("127.0.0.1", port, "/hostname")
        except OSError:
            return None
    assert wait_for(get) == hostname + "\n"
    assert docker("port", "pub", "80").stdout.splitlines()[0] == f"0.0.0.0:{port}"
    ports = json.loads(docker("inspect", "pub").stdout)[0]["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    # The port is held: a second container cannot have it, and docker run --rm
    # returns (its container removed).
    r = docker("run", "--rm", "-p", f"{port}:80", IMAGE, "true", check=False)
    assert r.returncode == 125 and "already allocated" in r.stderr
    assert docker("ps", "-aq").stdout.split() == [docker("inspect", "-f", "{{.Id}}", "pub")
                                                  .stdout.strip()[:12]]


def test_connect_disconnect_prune_and_errors(net, docker):
    docker("network", "create", "--subnet", net.plan.subnet(0), "extra")
    docker("run", "-d", "--name", "box", IMAGE, "sleep", "300")
    docker("network", "connect", "--alias", "boxy", "extra", "box")
    nets = json.loads(docker("inspect", "box").stdout)[0]["NetworkSettings"]["Networks"]
    assert set(nets) == {"bridge", "extra"} and nets["extra"]["Aliases"] == ["boxy"]
    out = docker("run", "--rm", "--network", "extra", IMAGE, "ping", "-c1", "boxy").stdout
    assert f"({nets['extra']['IPAddress']})" in out
    docker("network", "disconnect", "extra", "box")
    assert set(json.loads(docker("inspect", "box").stdout)[0]["NetworkSettings"]["Networks"]) == \
        {"bridge"}
    r = docker("network", "rm", "bridge", check=False)
    assert r.returncode != 0 and "pre-defined network" in r.stderr
    r = docker("run", "--rm", "--network", "nosuchnet", IMAGE, "true", check=False)
    assert r.returncode == 125 and "network nosuchnet not found" in r.stderr
    assert "Unable to find image" not in r.stderr
    r = docker("network", "create", "--subnet", "10.0.0/24", "bad", check=False)
    assert r.returncode != 0 and "invalid CIDR address" in r.stderr
    out = docker("network", "prune", "-f").stdout
    assert out.startswith("Deleted Networks:\nextra\n")
    assert "extra" not in docker("network", "ls").stdout
