"""The volume endpoints over raw HTTP (status codes, bodies, Docker's messages)
and through docker-py, plus volumes used by real containers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from volkit import needs_root


def post_json(api, path, body):
    return api.post(path, body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})


def test_create_inspect_list_remove(api, daemon):
    reply = post_json(api, "/v1.41/volumes/create",
                      {"Name": "app", "Labels": {"k": "v"}, "DriverOpts": {}})
    assert reply.status == 201
    vol = reply.json()
    assert vol["Name"] == "app" and vol["Driver"] == "local" and vol["Scope"] == "local"
    assert vol["Mountpoint"] == str(daemon.root / "volumes/app/_data")
    assert vol["Labels"] == {"k": "v"} and vol["Options"] is None
    assert api.get("/volumes/app").json() == vol
    listing = api.get("/volumes").json()
    assert listing == {"Volumes": [vol], "Warnings": []}
    filtered = api.get('/volumes?filters={"label":{"k=v":true}}').json()["Volumes"]
    assert [v["Name"] for v in filtered] == ["app"]
    assert api.get('/volumes?filters={"name":["zzz"]}').json()["Volumes"] == []
    reply = api.delete("/volumes/app")
    assert reply.status == 204 and reply.body == b""
    assert api.get("/volumes").json()["Volumes"] == []


def test_create_without_a_body_makes_an_anonymous_volume(api):
    reply = api.post("/volumes/create")
    assert reply.status == 201
    assert reply.json()["Labels"] == {"com.docker.volume.anonymous": ""}


@pytest.mark.parametrize("method, path, body, status, message", [
    ("GET", "/volumes/missing", None, 404, "get missing: no such volume"),
    ("DELETE", "/volumes/missing", None, 404, "get missing: no such volume"),
    ("POST", "/volumes/create", b"{not json", 400, None),
    ("POST", "/volumes/create", b"[]", 400, "invalid volume configuration: expected a JSON object"),
    ("POST", "/volumes/create", b'{"Name": "x y"}', 400,
     'create x y: "x y" includes invalid characters for a local volume name, only '
     '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
     "use absolute path"),
    ("POST", "/volumes/create", b'{"Name": "v", "Driver": "convoy"}', 404,
     'create v: error looking up volume plugin convoy: plugin "convoy" not found'),
    ("POST", "/volumes/create", b'{"Name": "vv", "DriverOpts": {"o": "size=1m"}}', 400,
     'create vv: missing required option: "device"'),
    ("GET", '/volumes?filters={"bogus":["1"]}', None, 400, "invalid filter 'bogus'"),
    ("POST", '/volumes/prune?filters={"dangling":["1"]}', None, 400, "invalid filter 'dangling'"),
    ("DELETE", "/volumes/x?force=maybe", None, 400, None),
])
def test_bad_requests(api, method, path, body, status, message):
    reply = api.request(method, path, body=body)
    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    if message is not None:
        assert reply.json() == {"message": message}
    assert api.get("/volumes").json()["Volumes"] == []


def test_force_remove_of_a_missing_volume_is_no_error(api):
    assert api.delete("/volumes/never?force=1").status == 204


def test_prune_report(api):
    post_json(api, "/volumes/create", {"Name": "named"})
    anon = api.post("/volumes/create").json()["Name"]
    reply = api.post("/volumes/prune")
    assert reply.status == 200
    assert reply.json() == {"VolumesDeleted": [anon], "SpaceReclaimed": 0}
    assert api.post('/volumes/prune?filters={"all":["true"]}').json()["VolumesDeleted"] == ["named"]
    assert api.post("/volumes/prune").json() == {"VolumesDeleted": [], "SpaceReclaimed": 0}


def test_volume_events(api):
    post_json(api, "/volumes/create", {"Name": "evt"})
    api.delete("/volumes/evt")
    reply = api.get(f"/events?since=0&until={time.time():.9f}")
    events = [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in reply.json_lines()]
    assert ("volume", "create", "evt") in events and ("volume", "destroy", "evt") in events


def test_docker_py_volumes(client):
    vol = client.volumes.create("pyvol", labels={"from": "docker-py"})
    assert vol.name == "pyvol" and vol.attrs["Labels"] == {"from": "docker-py"}
    assert [v.name for v in client.volumes.list(filters={"label": "from=docker-py"})] == ["pyvol"]
    assert client.volumes.get("pyvol").attrs["Mountpoint"].endswith("/volumes/pyvol/_data")
    vol.remove()
    docker = pytest.importorskip("docker")
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")


def test_named_volume_survives_a_daemon_restart(api, daemon):
    post_json(api, "/volumes/create", {"Name": "durable", "Labels": {"x": "y"}})
    data = daemon.root / "volumes/durable/_data"
    (data / "state").write_text("kept")
    before = api.get("/volumes/durable").json()
    daemon.stop()
    daemon.start()
    assert api.get("/volumes/durable").json() == before
    assert (data / "state").read_text() == "kept"


# -- with containers ----------------------------------------------------------------------

@needs_root
def test_data_written_in_a_volume_persists_across_containers(client, busybox):
    client.containers.run("busybox", ["sh", "-c", "echo persisted > /data/file"],
                          volumes={"shared": {"bind": "/data", "mode": "rw"}}, remove=True)
    out = client.containers.run("busybox", ["cat", "/data/file"],
                                volumes=["shared:/data:ro"], remove=True)
    assert out == b"persisted\n"


@needs_root
def test_volume_is_prefilled_from_the_image(client, busybox):
    out = client.containers.run("busybox", ["cat", "/etc/passwd"], volumes=["etcvol:/etc"],
                                remove=True)
    assert out.startswith(b"root:x:0:0:")
    inspect = client.volumes.get("etcvol").attrs
    assert (Path(inspect["Mountpoint"]) / "group").exists()


@needs_root
def test_mounts_in_container_inspect(client, busybox, workdir):
    host = workdir / "hostdir"
    host.mkdir()
    c = client.containers.create("busybox", ["true"], volumes=[f"{host}:/h:ro", "insp:/v"],
                                 mounts=[])
    try:
        mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert mounts["/h"] == {"Type": "bind", "Source": str(host), "Destination": "/h",
                                "Mode": "ro", "RW": False, "Propagation": "rprivate"}
        assert mounts["/v"]["Name"] == "insp" and mounts["/v"]["Driver"] == "local"
    finally:
        c.remove(v=True)
    assert client.volumes.get("insp").name == "insp"  # named: kept by rm -v


@needs_root
def test_volume_in_use_by_a_container_cannot_be_removed(api, client, busybox):
    c = client.containers.create("busybox", ["true"], volumes=["held:/held"])
    reply = api.delete("/volumes/held")
    assert reply.status == 409
    assert reply.json() == {"message": f"remove held: volume is in use - [{c.id}]"}
    c.remove()
    assert api.delete("/volumes/held").status == 204


@needs_root
def test_read_only_bind_is_enforced(client, busybox, workdir):
    host = workdir / "ro"
    host.mkdir()
    (host / "in").write_text("visible\n")
    docker = pytest.importorskip("docker")
    with pytest.raises(docker.errors.ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "cat /ro/in; touch /ro/out"],
                              volumes=[f"{host}:/ro:ro"], remove=True)
    assert b"Read-only file system" in err.value.stderr
    assert sorted(os.listdir(host)) == ["in"]


@needs_root
def test_missing_bind_source_is_refused_at_create(api, busybox):
    body = {"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]}}
    reply = post_json(api, "/containers/create", body)
    assert reply.status == 400
    assert reply.json() == {"message": 'invalid mount config for type "bind": bind source path '
                                       "does not exist: /no/such/dir"}
    assert api.get("/containers/json?all=1").json() == []
    assert api.get("/volumes").json()["Volumes"] == []
