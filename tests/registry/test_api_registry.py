"""The registry endpoints of berthd, as raw HTTP and through docker-py:
streamed pull and push progress, errors before and inside the stream,
X-Registry-Auth, /auth, /distribution, and the daemon's mirror option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from regkit import OCI_INDEX, FakeRegistry, make_image, make_index, x_registry_auth

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from unixhttp import API  # noqa: E402

IMAGE = make_image([{"etc/api": b"api\n"}, {"usr/bin/thing": os.urandom(20_000)}])


@pytest.fixture
def api(daemon) -> API:
    return API(str(daemon.socket))


def _lines(reply) -> list[dict]:
    return [json.loads(line) for line in reply.body.splitlines() if line.strip()]


def test_pull_streams_docker_progress(api, fake_registry, daemon):
    fake_registry.add_image("team/app", "v1", IMAGE)
    reply = api.post(f"/v1.41/images/create?fromImage={fake_registry.address}/team/app&tag=v1")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    messages = _lines(reply)
    assert messages[0] == {"status": "Pulling from team/app", "id": "v1"}
    layer_ids = {d.split(":")[1][:12] for d in IMAGE.layer_digests}
    assert {m["id"] for m in messages if m.get("status") == "Pull complete"} == layer_ids
    assert all("progressDetail" in m for m in messages if m.get("id") in layer_ids)
    downloading = [m for m in messages if m.get("status") == "Downloading"]
    assert downloading and all(m["progressDetail"]["total"] in {len(b) for b in IMAGE.layers}
                               for m in downloading)
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {fake_registry.address}/team/app:v1"}
    inspect = api.get(f"/images/{fake_registry.address}/team/app:v1/json").json()
    assert inspect["Id"] == IMAGE.config_digest
    assert inspect["RepoDigests"] == [f"{fake_registry.address}/team/app@{IMAGE.digest}"]


def test_pull_errors_before_and_inside_the_stream(api, fake_registry):
    reply = api.post(f"/images/create?fromImage={fake_registry.address}/team/app&tag=nope")
    assert reply.status == 404
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {"message": f"manifest for {fake_registry.address}/team/app:nope not found: "
                                       "manifest unknown: manifest unknown"}
    image = make_image([{"x": b"y" * 1000}], compress=False)
    fake_registry.add_image("bad", "v1", image)
    fake_registry.blobs[image.layer_digests[0]] = image.layers[0].replace(b"y" * 10, b"z" * 10, 1)
    reply = api.post(f"/images/create?fromImage={fake_registry.address}/bad&tag=v1")
    assert reply.status == 200  # progress was sent, so the error comes in the stream
    last = _lines(reply)[-1]
    assert "failed verification" in last["error"]
    assert last["errorDetail"]["message"] == last["error"]
    assert api.get("/images/json").json() == []
    for query, message in [
            ("fromImage=UPPER", "must be lowercase"),
            ("fromImage=x&fromSrc=-", "exclusive"),
            ("fromImage=x&tag=bad%20tag", "invalid tag format")]:
        reply = api.post(f"/images/create?{query}")
        assert reply.status == 400, query
        assert message in reply.json()["message"]
    reply = api.post("/images/create?fromImage=x", headers={"X-Registry-Auth": "%%%"})
    assert reply.status == 400
    assert "X-Registry-Auth" in reply.json()["message"]


def test_pull_with_auth_header(api, fake_registry):
    fake_registry.auth = "basic"
    fake_registry.add_image("private", "v1", IMAGE)
    denied = api.post(f"/images/create?fromImage={fake_registry.address}/private&tag=v1")
    assert denied.status == 404
    assert "pull access denied" in denied.json()["message"]
    reply = api.post(f"/images/create?fromImage={fake_registry.address}/private&tag=v1",
                     headers={"X-Registry-Auth": x_registry_auth("alice", "s3cret")})
    assert reply.status == 200
    assert "Downloaded newer image" in _lines(reply)[-1]["status"]


def test_push_and_auth_endpoints(api, fake_registry, berth_registry):
    fake_registry.add_image("src", "v1", IMAGE)
    api.post(f"/images/create?fromImage={fake_registry.address}/src&tag=v1")
    api.post(f"/images/{fake_registry.address}/src:v1/tag?repo={berth_registry.address}/dst&tag=v2")
    reply = api.post(f"/images/{berth_registry.address}/dst/push?tag=v2",
                     headers={"X-Registry-Auth": x_registry_auth()})
    assert reply.status == 200
    messages = _lines(reply)
    assert messages[0] == {"status": f"The push refers to repository [{berth_registry.address}/dst]"}
    assert {"Tag": "v2", "Digest": IMAGE.digest, "Size": len(IMAGE.manifest)} in [
        m["aux"] for m in messages if "aux" in m]
    reply = api.post(f"/images/{berth_registry.address}/nothing/push?tag=v1")
    assert reply.status == 404
    assert reply.json()["message"] == ("An image does not exist locally with the tag: "
                                       f"{berth_registry.address}/nothing:v1")
    reply = api.post(f"/berth/images/{berth_registry.address}/dst/push?tag=v2&compression=lzma")
    assert reply.status == 400 and "compression" in reply.json()["message"]
    ok = api.post("/auth", json.dumps({"username": "u", "password": "p",
                                        "serveraddress": berth_registry.address}).encode(),
                  headers={"Content-Type": "application/json"})
    assert ok.status == 200
    assert ok.json()["Status"] == "Login Succeeded"
    assert api.post("/auth", b"", headers={"Content-Type": "application/json"}).status == 400
    assert api.post("/auth", b"[1]", headers={"Content-Type": "application/json"}).status == 400


def test_auth_refused(api, berth_registry_auth):
    bad = api.post("/auth", json.dumps({"username": "alice", "password": "nope",
                                         "serveraddress": berth_registry_auth.address}).encode())
    assert bad.status == 401
    assert bad.json() == {"message": f"login attempt to http://{berth_registry_auth.address}/v2/ "
                                     "failed with status: 401 Unauthorized"}
    good = api.post("/auth", json.dumps({"username": "alice", "password": "s3cret",
                                          "serveraddress": berth_registry_auth.address}).encode())
    assert good.json() == {"Status": "Login Succeeded", "IdentityToken": ""}


def test_distribution_inspect(api, fake_registry):
    amd = make_image([{"a": b"amd"}])
    arm = make_image([{"a": b"arm"}], arch="arm64", variant="v8")
    for img in (amd, arm):
        fake_registry.add_image("multi", None, img)
    index = make_index([amd, arm], [{"os": "linux", "architecture": "amd64"},
                                    {"os": "linux", "architecture": "arm64", "variant": "v8"}])
    fake_registry.add_manifest("multi", "latest", index, OCI_INDEX)
    reply = api.get(f"/v1.41/distribution/{fake_registry.address}/multi:latest/json")
    assert reply.status == 200
    assert reply.json() == {
        "Descriptor": {"mediaType": OCI_INDEX, "digest": f"sha256:{__import__('hashlib').sha256(index).hexdigest()}",
                       "size": len(index)},
        "Platforms": [{"architecture": "amd64", "os": "linux"},
                      {"architecture": "arm64", "os": "linux", "variant": "v8"}]}
    fake_registry.add_image("single", "v1", amd)
    single = api.get(f"/distribution/{fake_registry.address}/single:v1/json").json()
    assert single["Descriptor"]["digest"] == amd.digest
    assert single["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    missing = api.get(f"/distribution/{fake_registry.address}/single:v9/json")
    assert missing.status == 404


def test_docker_py(daemon, fake_registry, berth_registry_auth):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    fake_registry.add_image("py/app", "v1", IMAGE)
    image = client.images.pull(f"{fake_registry.address}/py/app", tag="v1")
    assert image.id == IMAGE.config_digest
    data = client.images.get_registry_data(f"{fake_registry.address}/py/app:v1")
    assert data.id == IMAGE.digest
    with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
        client.images.pull(f"{fake_registry.address}/py/app", tag="v9")
    with pytest.raises(docker.errors.APIError, match="401 Unauthorized"):
        client.login("alice", "wrong", registry=berth_registry_auth.address)
    assert client.login("alice", "s3cret", registry=berth_registry_auth.address)["Status"] == "Login Succeeded"
    image.tag(f"{berth_registry_auth.address}/py/copy", "v1")
    lines = list(client.api.push(f"{berth_registry_auth.address}/py/copy", tag="v1", stream=True,
                                 decode=True, auth_config={"username": "alice", "password": "s3cret"}))
    assert not [m for m in lines if "error" in m], lines
    assert any(m.get("aux", {}).get("Digest") == IMAGE.digest for m in lines)
    client.close()


def _start_berthd(workdir: Path, *extra: str) -> tuple[subprocess.Popen, API, Path]:
    root, sock = workdir / "mroot", workdir / "m.sock"
    log = workdir / "m.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "berthd"), "--root", str(root),
                             "--host", f"unix://{sock}", *extra], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    api = API(str(sock))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, api, log
        try:
            if api.get("/_ping").status == 200:
                return proc, api, log
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(log.read_text())


def test_daemon_registry_mirror(workdir):
    mirror = FakeRegistry().start()
    mirror.add_image("library/busybox", "latest", IMAGE)
    proc, api, log = _start_berthd(workdir, "--registry-mirror", f"http://{mirror.address}",
                                   "--insecure-registry", "10.0.0.0/8")
    try:
        assert proc.poll() is None, log.read_text()
        reply = api.post("/images/create?fromImage=busybox&tag=latest")
        assert reply.status == 200, reply.body
        assert _lines(reply)[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}
        assert mirror.requests("GET", "/v2/library/busybox/manifests/latest")
        assert api.get("/images/busybox/json").json()["Id"] == IMAGE.config_digest
    finally:
        proc.terminate()
        proc.wait(20)
        mirror.stop()


@pytest.mark.parametrize("args,message", [
    (["--registry-mirror", "ftp://mirror"], "invalid registry mirror 'ftp://mirror'"),
    (["--registry-mirror", "https://mirror/path"], "a mirror URL has no path"),
    (["--insecure-registry", "10.0.0.0/77"], "bad CIDR"),
    (["--insecure-registry", "http://reg:5000"], "without a scheme"),
])
def test_daemon_registry_options_are_checked(workdir, args, message):
    proc, _, log = _start_berthd(workdir, *args)
    try:
        assert proc.wait(20) == 2
        assert message in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
