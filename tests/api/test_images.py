"""/images endpoints over raw HTTP: status codes, bodies, streams, and that a
failed request leaves nothing behind."""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.parse

import pytest


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@pytest.fixture
def busybox(api, busybox_rootfs) -> str:
    reply = api.post("/v1.41/images/create?fromSrc=-&repo=busybox&tag=latest",
                     body=busybox_rootfs.read_bytes())
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/json"
    return reply.json_lines()[-1]["status"]


def uploads_left(daemon) -> list[str]:
    tmp = daemon.root / "tmp"
    return [n for n in os.listdir(tmp) if n.startswith("api-upload-")] if tmp.exists() else []


def test_missing_image_is_404_everywhere(api):
    for method, path in (("GET", "/images/nosuch/json"), ("GET", "/v1.41/images/nosuch/history"),
                         ("DELETE", "/images/nosuch"), ("POST", "/images/nosuch/tag?repo=x"),
                         ("GET", "/images/nosuch/get"), ("GET", "/images/get?names=nosuch")):
        reply = api.request(method, path)
        assert reply.status == 404, (method, path, reply.body)
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.json() == {"message": "No such image: nosuch:latest"}, (method, path)


def test_import_list_inspect_history(api, busybox):
    [summary] = api.get("/images/json").json()
    assert summary["Id"] == busybox
    assert summary["RepoTags"] == ["busybox:latest"]
    image = api.get("/images/busybox:latest/json").json()
    assert image["Id"] == busybox
    assert image["RootFS"]["Type"] == "layers"
    history = api.get("/images/busybox/history").json()
    assert history[0]["Id"] == busybox
    assert api.get("/info").json()["Images"] == 1


def test_names_with_registry_and_slashes(api, busybox):
    name = "localhost:5000/team/app:v2"
    assert api.post(f"/images/busybox/tag?repo={q('localhost:5000/team/app')}&tag=v2").status == 201
    assert api.get(f"/images/{name}/json").json()["Id"] == busybox
    assert api.get(f"/v1.41/images/{name}/history").status == 200
    reply = api.get(f"/images/{name}/get")
    assert reply.status == 200
    reply = api.delete(f"/images/{name}")
    assert reply.json() == [{"Untagged": name}]


def test_tag_requires_repo(api, busybox):
    reply = api.post("/images/busybox/tag?tag=v1")
    assert reply.status == 400
    assert "missing query parameter 'repo'" in reply.json()["message"]


def test_tag_rejects_bad_reference(api, busybox):
    reply = api.post("/images/busybox/tag?repo=UPPER&tag=v1")
    assert reply.status == 400
    assert reply.json()["message"]


def test_create_without_source(api):
    reply = api.post("/images/create?repo=x")
    assert reply.status == 400
    assert "fromSrc" in reply.json()["message"]


def test_pull_from_unreachable_registry_is_a_clear_error(api):
    # Port 1 on loopback: nothing listens, and no traffic leaves the machine.
    reply = api.post("/images/create?fromImage=127.0.0.1:1/missing&tag=latest")
    assert reply.status >= 400
    message = reply.json()["message"]
    assert "cannot pull 127.0.0.1:1/missing:latest" in message
    assert "cannot reach registry 127.0.0.1:1" in message


def test_import_bad_url_scheme(api):
    reply = api.post("/images/create?fromSrc=ftp://example.com/x.tar&repo=x")
    assert reply.status == 400
    assert "invalid fromSrc 'ftp://example.com/x.tar'" in reply.json()["message"]


def test_import_garbage_leaves_nothing(api, daemon):
    reply = api.post("/images/create?fromSrc=-&repo=junk&tag=1", body=b"\x00garbage" * 1000)
    assert reply.status == 400, reply.body
    assert reply.json()["message"]
    assert api.get("/images/json?all=1").json() == []
    assert uploads_left(daemon) == []


def test_import_bad_reference_leaves_nothing(api, daemon, busybox_rootfs):
    reply = api.post("/images/create?fromSrc=-&repo=Bad%20Name", body=busybox_rootfs.read_bytes())
    assert reply.status == 400
    assert api.get("/images/json?all=1").json() == []
    assert uploads_left(daemon) == []


def test_save_streams_a_docker_archive(api, busybox):
    reply = api.get("/images/get?names=busybox")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/x-tar"
    assert reply.headers.get("Transfer-Encoding") == "chunked"  # streamed, not buffered
    with tarfile.open(fileobj=io.BytesIO(reply.body)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest"]


def test_save_without_names(api):
    reply = api.get("/images/get")
    assert reply.status == 400
    assert "missing query parameter 'names'" in reply.json()["message"]


def test_load_round_trip(api, busybox, daemon):
    archive = api.get(f"/images/{busybox}/get").body
    assert api.delete("/images/busybox").status == 200
    reply = api.post("/images/load?quiet=1", body=archive)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    lines = reply.json_lines()
    assert any("Loaded image" in line.get("stream", "") for line in lines), lines
    assert api.get(f"/images/{busybox}/json").status == 200
    assert uploads_left(daemon) == []


def test_load_garbage_reports_in_stream(api, daemon):
    reply = api.post("/images/load", body=b"not a tarball")
    assert reply.status == 200  # Docker reports load failures inside the stream
    [line] = reply.json_lines()
    assert line["error"] == line["errorDetail"]["message"]
    assert line["error"]
    assert api.get("/images/json?all=1").json() == []
    assert uploads_left(daemon) == []


def test_remove_and_prune(api, busybox):
    assert api.post(f"/images/{busybox}/tag?repo=second").status == 201
    reply = api.delete("/v1.41/images/second:latest")
    assert reply.json() == [{"Untagged": "second:latest"}]
    reply = api.post("/images/prune")
    assert reply.json() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    reply = api.post(f"/images/prune?filters={q(json.dumps({'dangling': ['false']}))}")
    report = reply.json()
    assert {"Deleted": busybox} in report["ImagesDeleted"]
    assert report["SpaceReclaimed"] > 0
    assert api.get("/images/json?all=1").json() == []


def test_prune_rejects_bad_dangling(api):
    reply = api.post(f"/images/prune?filters={q(json.dumps({'dangling': ['maybe']}))}")
    assert reply.status == 400
    assert "dangling" in reply.json()["message"]


def test_save_survives_a_client_that_hangs_up(api, workdir):
    # Big enough that the archive cannot sit whole in the socket and pipe buffers.
    payload = workdir / "payload.tar"
    with tarfile.open(payload, "w") as tar:
        blob = os.urandom(24 << 20)
        info = tarfile.TarInfo("data.bin")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    reply = api.post("/images/create?fromSrc=-&repo=big", body=payload.read_bytes())
    assert reply.status == 200, reply.body

    conn, resp = api.open_stream("/images/big/get")
    assert resp.status == 200
    assert len(resp.read(64 << 10)) == 64 << 10
    conn.close()  # mid-archive

    # The daemon is unharmed and the next save is complete.
    whole = api.get("/images/get?names=big").body
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        sizes = [m.size for m in tar.getmembers()]
    assert max(sizes) > 24 << 20
    assert api.get("/_ping").status == 200
