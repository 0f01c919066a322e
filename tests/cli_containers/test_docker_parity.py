"""berth and the real docker CLI, same command line, same scripted daemon: the same
requests (create bodies field for field), the same output and exit codes. The
names differ only where each CLI names itself ("docker: ..." / "berth: ...")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from fakeengine import FakeContainer, Reply

DOCKER = shutil.which("docker")
BERTH = os.path.join(os.path.dirname(sys.executable), "berth")
pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
CID = "ab" * 32


@pytest.fixture
def both(engine, workdir):
    engine.route("HEAD", "/_ping", Reply(200, headers={"API-Version": "1.41", "OSType": "linux"}))
    engine.route("GET", "/_ping", Reply(200, body=b"OK", headers={"API-Version": "1.41", "OSType": "linux"}))
    env = dict(os.environ, DOCKER_HOST=engine.host, BERTH_HOST=engine.host, BERTH_NO_AUTOSTART="1",
               DOCKER_CONFIG=str(workdir / "docker"), BERTH_CONFIG=str(workdir / "berth"), HOME=str(workdir))
    env.pop("DOCKER_CONTEXT", None)

    def run(*argv, input: bytes = b"", before=None):
        """Each CLI in turn (``before()`` first, to reset the script); their
        (process, requests other than pings)."""
        results = {}
        for name, exe in (("docker", DOCKER), ("berth", BERTH)):
            if before is not None:
                before()
            start = len(engine.requests)
            proc = subprocess.run([exe, *argv], input=input, capture_output=True, env=env, timeout=60)
            results[name] = (proc, [r for r in engine.requests[start:] if r.path != "/_ping"])
        return results
    return run


def _same_text(docker: bytes, berth: bytes) -> None:
    assert berth.decode().replace("berth", "docker") == docker.decode()


CREATE_LINES = [
    ["busybox"],
    ["-it", "--name", "web", "-h", "myhost", "--entrypoint", "/bin/sh", "-w", "/tmp", "-u", "1000:1000",
     "-v", "vol:/data:ro", "-v", "/tmp:/host", "-v", "/anon", "--mount", "type=tmpfs,target=/t,tmpfs-size=64m",
     "--tmpfs", "/run:size=1m", "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m",
     "--cpus", "1.5", "-c", "512", "--cpuset-cpus", "0", "--pids-limit", "50", "--ulimit", "nofile=100:200",
     "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--privileged", "--security-opt", "no-new-privileges",
     "--restart", "on-failure:3", "--network", "none", "-p", "8080:80", "-P", "-l", "a=b", "--init",
     "--read-only", "--stop-signal", "SIGINT", "--stop-timeout", "5", "--platform", "linux/amd64",
     "-e", "X=1", "busybox", "-c", "echo hi"],
    ["--rm", "-e", "A=1", "-e", "HOME", "-e", "NOPE_NOT_SET", "--health-cmd", "true", "--health-interval", "1m30s",
     "-p", "127.0.0.1:80-81:80-81/udp", "--expose", "90-91", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4",
     "--network-alias", "x", "--network", "mynet", "--ip", "10.0.0.2", "--entrypoint=", "--sysctl", "net.a=1",
     "--shm-size", "1g", "--log-opt", "max-size=1m", "--device", "/dev/null:/dev/nil:r", "busybox"],
    ["-a", "stdin", "-a", "STDOUT", "--oom-kill-disable", "--memory-swappiness", "10", "--group-add", "5",
     "--pid", "host", "--ipc", "shareable", "--cgroupns", "private", "--no-healthcheck", "busybox", "top"],
]


@pytest.mark.parametrize("argv", CREATE_LINES, ids=range(len(CREATE_LINES)))
def test_create_requests_are_docker_s(both, engine, argv):
    engine.route("POST", "/containers/create", Reply(404, {"message": "No such image: busybox:latest"}))
    results = both("create", "--pull", "never", *argv)
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert (bproc.returncode, bproc.stdout) == (dproc.returncode, dproc.stdout)
    _same_text(dproc.stderr, bproc.stderr)
    assert [(r.method, r.path, r.query) for r in breqs] == [(r.method, r.path, r.query) for r in dreqs]
    assert breqs[0].body.endswith(b"\n") and dreqs[0].body.endswith(b"\n")
    assert _canonical(breqs[0].body) == _canonical(dreqs[0].body)  # same fields, same order


def _canonical(body: bytes) -> str:
    """The body as JSON text with the lists docker builds from Go maps (so in random
    order: Env, Binds) sorted; every other field keeps its place."""
    import json
    data = json.loads(body)
    if data.get("Env"):
        data["Env"] = sorted(data["Env"])
    if data.get("HostConfig", {}).get("Binds"):
        data["HostConfig"]["Binds"] = sorted(data["HostConfig"]["Binds"])
    return json.dumps(data)


@pytest.mark.parametrize("argv", [
    ["-m", "3x", "busybox"], ["--cpus", "abc", "busybox"], ["--ulimit", "nofile=3:2", "busybox"],
    ["--restart", "always", "--rm", "busybox"], ["--pull", "sometimes", "busybox"],
    ["--mount", "type=bind,tmpfs-size=1m", "busybox"], ["-p", "80/icmp", "busybox"],
    ["--memory-swappiness", "200", "busybox"], ["--no-such-flag", "busybox"], ["--mount", "src=x", "busybox"],
    ["--env-file", "/nonexistent", "busybox"], ["-e", "=x", "busybox"], ["-a", "stdweird", "busybox"],
], ids=" ".join)
def test_run_argument_errors_are_docker_s(both, argv):
    results = both("run", *argv)
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert bproc.returncode == dproc.returncode
    _same_text(dproc.stderr, bproc.stderr)
    assert breqs == [] and dreqs == []


@pytest.mark.parametrize("frames,code", [([(1, b"hello\n"), (2, b"warn\n")], 0), ([(1, b"x")], 3)])
def test_run_streams_and_exit_code_are_docker_s(both, engine, frames, code):
    results = both("run", "busybox", "sh",
                   before=lambda: FakeContainer(engine, CID, frames=frames, exit_code=code))
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert (bproc.returncode, bproc.stdout, bproc.stderr) == (dproc.returncode, dproc.stdout, dproc.stderr)
    # berth's one request carries docker's create, body and query alike.
    assert [(r.method, r.path) for r in breqs] == [("POST", "/berth/containers/run")]
    create = next(r for r in dreqs if r.path == "/containers/create")
    assert breqs[0].json() == create.json()
    assert {k: v for k, v in breqs[0].query.items() if k not in ("stdout", "stderr")} == create.query


@pytest.mark.parametrize("frames,code", [([(1, b"hello\n"), (2, b"warn\n")], 0), ([(1, b"x")], 3)])
def test_run_without_berths_endpoint_is_docker_s_sequence(both, engine, frames, code):
    results = both("run", "busybox", "sh",
                   before=lambda: FakeContainer(engine, CID, frames=frames, exit_code=code,
                                                one_request=False))
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert (bproc.returncode, bproc.stdout, bproc.stderr) == (dproc.returncode, dproc.stdout, dproc.stderr)
    assert (breqs[0].method, breqs[0].path) == ("POST", "/berth/containers/run")  # 404
    breqs = breqs[1:]
    # The docker CLI sends attach and wait concurrently: their order varies, the
    # rest (create first, start after both) does not.
    def calls(reqs):
        seq = [(r.method, r.path) for r in reqs]
        return seq[0], sorted(seq[1:-1]), seq[-1]
    assert calls(breqs) == calls(dreqs)
    for path in ("/containers/create", f"/containers/{CID}/attach", f"/containers/{CID}/wait"):
        d = next(r for r in dreqs if r.path == path)
        b = next(r for r in breqs if r.path == path)
        assert b.query == d.query, path


COMMAND_LINES = [
    ["ps", "-a", "-n", "3", "-s", "--filter", "status=exited", "--filter", "name=x"],
    ["ps", "-q", "--no-trunc"], ["container", "ls", "--format", "{{.Names}}"],
    ["stop", "-t", "3", "x"], ["restart", "-t", "1", "x", "y"], ["kill", "-s", "HUP", "x"],
    ["rm", "-fv", "x"], ["rm", "x", "y"], ["pause", "x"], ["unpause", "x", "y"], ["wait", "x"],
    ["logs", "-t", "--tail", "5", "-f", "x"], ["top", "x", "aux"], ["rename", "x", "y"], ["port", "x"],
    ["diff", "x"], ["export", "x"], ["start", "x", "y"], ["attach", "x"], ["stats", "--no-stream", "x"],
    ["update", "-m", "64m", "--cpus", "0.5", "--pids-limit", "10", "x"], ["update", "--restart", "always", "x"],
    ["commit", "-a", "me", "-m", "msg", "-c", 'CMD ["x"]', "x", "repo:tag"],
    ["container", "prune", "-f", "--filter", "until=1h"], ["container", "inspect", "x"],
    ["volume", "create", "-d", "local", "-o", "type=tmpfs", "--label", "a=b", "myvol"],
    ["volume", "ls", "-f", "dangling=true"], ["volume", "rm", "-f", "v"], ["volume", "inspect", "v"],
    ["volume", "prune", "-f"], ["cp", "x:/etc/hostname", "-"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_requests_and_errors_are_docker_s(both, argv):
    """Against a daemon that knows no container: the same requests, the same error
    text, the same exit code."""
    results = both(*argv)
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert (bproc.returncode, bproc.stdout) == (dproc.returncode, dproc.stdout)
    _same_text(dproc.stderr, bproc.stderr)
    def shape(reqs):  # several containers are handled at once: compare in any order
        return sorted((r.method, r.path, sorted(r.query.items()), r.body) for r in reqs)
    assert shape(breqs) == shape(dreqs)


def test_exec_create_body_is_docker_s(both, engine):
    engine.route("GET", "/containers/x/json", Reply(json_body={"Id": "x", "State": {"Running": True}}))
    engine.route("POST", "/containers/x/exec", Reply(409, {"message": "container x is not running"}))
    results = both("exec", "-e", "A=1", "-u", "root", "-w", "/tmp", "--privileged", "x", "sh", "-c", "true")
    (dproc, dreqs), (bproc, breqs) = results["docker"], results["berth"]
    assert bproc.returncode == dproc.returncode == 1
    _same_text(dproc.stderr, bproc.stderr)
    assert [(r.method, r.path, r.body) for r in breqs] == [(r.method, r.path, r.body) for r in dreqs]
