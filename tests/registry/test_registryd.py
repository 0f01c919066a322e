"""berth's registry server against the OCI distribution spec, over raw HTTP:
status codes, headers and error bodies as any client sees them."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from regkit import OCI_INDEX, OCI_MANIFEST, basic, make_image, sha256, start_berth_registry


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


def call(registry, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def upload(registry, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = call(registry, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data)
    assert r.status == 201, r.body
    return digest


def push_image(registry, repo: str, tag: str, image=None):
    image = image or make_image([{"etc/hostname": b"box\n"}, {"bin/tool": b"\x7fELF" * 100}])
    for data in [*image.layers, image.config]:
        upload(registry, repo, data)
    r = call(registry, "PUT", f"/v2/{repo}/manifests/{tag}", image.manifest,
             {"Content-Type": image.manifest_type})
    assert r.status == 201, r.body
    return image


def test_base_endpoint_answers_with_the_api_version_header(berth_registry):
    r = call(berth_registry, "GET", "/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert r.json() == {}


def test_monolithic_upload_in_one_post(berth_registry):
    data = os.urandom(100_000)
    digest = sha256(data)
    r = call(berth_registry, "POST", f"/v2/app/blobs/uploads/?digest={digest}", data)
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/app/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    head = call(berth_registry, "HEAD", f"/v2/app/blobs/{digest}")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert call(berth_registry, "GET", f"/v2/app/blobs/{digest}").body == data


def test_post_then_put_upload(berth_registry):
    data = b"hello registry"
    r = call(berth_registry, "POST", "/v2/team/app/blobs/uploads/")
    assert r.status == 202
    assert r.headers["Range"] == "0-0"
    location = r.headers["Location"]
    assert location.startswith("/v2/team/app/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
    r = call(berth_registry, "PUT", f"{location}?digest={sha256(data)}", data)
    assert r.status == 201
    assert call(berth_registry, "GET", f"/v2/team/app/blobs/{sha256(data)}").body == data


def test_chunked_upload_with_content_range_and_status(berth_registry):
    data = os.urandom(3000)
    location = call(berth_registry, "POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = call(berth_registry, "PATCH", location, data[:1000],
             {"Content-Range": "0-999", "Content-Type": "application/octet-stream"})
    assert r.status == 202
    assert r.headers["Range"] == "0-999"
    status = call(berth_registry, "GET", location)
    assert status.status == 204
    assert status.headers["Range"] == "0-999"
    # A chunk that does not continue where the upload stands is refused.
    bad = call(berth_registry, "PATCH", location, data[1500:2000], {"Content-Range": "1500-1999"})
    assert bad.status == 416
    assert bad.headers["Range"] == "0-999"
    r = call(berth_registry, "PATCH", location, data[1000:2000], {"Content-Range": "1000-1999"})
    assert r.status == 202 and r.headers["Range"] == "0-1999"
    # The last chunk may come with the closing PUT.
    r = call(berth_registry, "PUT", f"{location}?digest={sha256(data)}", data[2000:],
             {"Content-Range": "2000-2999"})
    assert r.status == 201
    assert call(berth_registry, "GET", f"/v2/app/blobs/{sha256(data)}").body == data
    assert call(berth_registry, "GET", location).status == 404


def test_content_range_and_length_must_agree(berth_registry):
    location = call(berth_registry, "POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = call(berth_registry, "PATCH", location, b"x" * 10, {"Content-Range": "0-19"})
    assert r.status == 400
    assert r.error_codes() == ["SIZE_INVALID"]


def test_digest_mismatch_is_refused_and_leaves_nothing(berth_registry):
    data = b"real content"
    wrong = sha256(b"something else")
    location = call(berth_registry, "POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = call(berth_registry, "PUT", f"{location}?digest={wrong}", data)
    assert r.status == 400
    assert r.error_codes() == ["DIGEST_INVALID"]
    assert call(berth_registry, "HEAD", f"/v2/app/blobs/{wrong}").status == 404
    assert call(berth_registry, "HEAD", f"/v2/app/blobs/{sha256(data)}").status == 404
    assert call(berth_registry, "GET", location).status == 404
    assert os.listdir(berth_registry.root / "blobs" / "sha256") == []
    assert os.listdir(berth_registry.root / "uploads") == []


def test_put_without_digest_and_malformed_digests(berth_registry):
    location = call(berth_registry, "POST", "/v2/app/blobs/uploads/").headers["Location"]
    r = call(berth_registry, "PUT", location, b"x")
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]
    r = call(berth_registry, "HEAD", "/v2/app/blobs/sha256:nothex")
    assert r.status == 400
    r = call(berth_registry, "GET", "/v2/app/blobs/sha512:" + "a" * 128)
    assert r.status == 400
    assert "unsupported digest algorithm" in r.json()["errors"][0]["message"]


def test_cancel_upload(berth_registry):
    location = call(berth_registry, "POST", "/v2/app/blobs/uploads/").headers["Location"]
    call(berth_registry, "PATCH", location, b"partial")
    assert call(berth_registry, "DELETE", location).status == 204
    r = call(berth_registry, "GET", location)
    assert r.status == 404
    assert r.error_codes() == ["BLOB_UPLOAD_UNKNOWN"]


def test_blob_range_requests(berth_registry):
    data = bytes(range(256)) * 40
    digest = upload(berth_registry, "app", data)
    r = call(berth_registry, "GET", f"/v2/app/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert r.body == data[100:200]
    r = call(berth_registry, "GET", f"/v2/app/blobs/{digest}", headers={"Range": "bytes=10000-"})
    assert r.status == 206 and r.body == data[10000:]
    r = call(berth_registry, "GET", f"/v2/app/blobs/{digest}",
             headers={"Range": f"bytes={len(data) + 5}-"})
    assert r.status == 416


def test_blobs_belong_to_repositories_and_mounts_link_them(berth_registry):
    digest = upload(berth_registry, "source/app", b"shared layer")
    assert call(berth_registry, "HEAD", f"/v2/other/blobs/{digest}").status == 404
    r = call(berth_registry, "GET", f"/v2/other/blobs/{digest}")
    assert r.status == 404 and r.error_codes() == ["BLOB_UNKNOWN"]
    r = call(berth_registry, "POST", f"/v2/other/blobs/uploads/?mount={digest}&from=source/app")
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/other/blobs/{digest}"
    assert call(berth_registry, "GET", f"/v2/other/blobs/{digest}").body == b"shared layer"
    # Mounting from a repository that does not have it starts an upload instead.
    r = call(berth_registry, "POST", f"/v2/third/blobs/uploads/?mount={digest}&from=nowhere")
    assert r.status == 202
    assert "/v2/third/blobs/uploads/" in r.headers["Location"]


def test_blob_delete_unlinks_from_one_repository(berth_registry):
    digest = upload(berth_registry, "a", b"layer")
    call(berth_registry, "POST", f"/v2/b/blobs/uploads/?mount={digest}&from=a")
    assert call(berth_registry, "DELETE", f"/v2/a/blobs/{digest}").status == 202
    assert call(berth_registry, "HEAD", f"/v2/a/blobs/{digest}").status == 404
    assert call(berth_registry, "HEAD", f"/v2/b/blobs/{digest}").status == 200
    r = call(berth_registry, "DELETE", f"/v2/a/blobs/{digest}")
    assert r.status == 404 and r.error_codes() == ["BLOB_UNKNOWN"]


def test_manifest_put_get_head_by_tag_and_digest(berth_registry):
    image = push_image(berth_registry, "lib/app", "v1")
    r = call(berth_registry, "GET", "/v2/lib/app/manifests/v1",
             headers={"Accept": OCI_MANIFEST})
    assert r.status == 200
    assert r.body == image.manifest
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.headers["Docker-Content-Digest"] == image.digest
    r = call(berth_registry, "GET", f"/v2/lib/app/manifests/{image.digest}")
    assert r.body == image.manifest
    r = call(berth_registry, "HEAD", "/v2/lib/app/manifests/v1")
    assert r.status == 200 and r.body == b""
    assert r.headers["Content-Length"] == str(len(image.manifest))
    assert r.headers["Docker-Content-Digest"] == image.digest
    # the manifest is also a blob of the repository
    assert call(berth_registry, "GET", f"/v2/lib/app/blobs/{image.digest}").body == image.manifest


def test_manifest_errors(berth_registry):
    image = make_image([{"a": b"a"}])
    r = call(berth_registry, "PUT", "/v2/app/manifests/v1", image.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 400
    assert r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]
    assert set(r.json()["errors"][0]["detail"]["digests"]) == {image.config_digest, *image.layer_digests}
    r = call(berth_registry, "PUT", "/v2/app/manifests/v1", b"{not json", {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_INVALID"]
    odd = json.dumps({"schemaVersion": 2, "mediaType": "application/x-strange"}).encode()
    r = call(berth_registry, "PUT", "/v2/app/manifests/v1", odd, {"Content-Type": "application/x-strange"})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_INVALID"]
    assert "unsupported manifest media type" in r.json()["errors"][0]["message"]
    huge = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (5 << 20)}).encode()
    r = call(berth_registry, "PUT", "/v2/app/manifests/v1", huge, {"Content-Type": OCI_MANIFEST})
    assert r.status == 413 and r.error_codes() == ["MANIFEST_INVALID"]
    push_image(berth_registry, "app", "v1", image)
    r = call(berth_registry, "PUT", f"/v2/app/manifests/{sha256(b'other')}", image.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.error_codes() == ["DIGEST_INVALID"]
    r = call(berth_registry, "GET", "/v2/app/manifests/nope")
    assert r.status == 404 and r.error_codes() == ["MANIFEST_UNKNOWN"]
    r = call(berth_registry, "GET", "/v2/ghost/manifests/v1")
    assert r.status == 404 and r.error_codes() == ["NAME_UNKNOWN"]
    r = call(berth_registry, "GET", "/v2/Bad_Name/manifests/v1")
    assert r.status == 400 and r.error_codes() == ["NAME_INVALID"]
    r = call(berth_registry, "DELETE", "/v2/app/tags/list")
    assert r.status == 405 and r.error_codes() == ["UNSUPPORTED"]


def test_index_needs_its_manifests(berth_registry):
    amd = push_image(berth_registry, "multi", "amd", make_image([{"x": b"amd"}]))
    arm = make_image([{"x": b"arm"}], arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": len(amd.manifest),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": len(arm.manifest),
         "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
    r = call(berth_registry, "PUT", "/v2/multi/manifests/latest", index, {"Content-Type": OCI_INDEX})
    assert r.status == 400 and r.error_codes() == ["MANIFEST_BLOB_UNKNOWN"]
    push_image(berth_registry, "multi", "arm", arm)
    r = call(berth_registry, "PUT", "/v2/multi/manifests/latest", index, {"Content-Type": OCI_INDEX})
    assert r.status == 201
    r = call(berth_registry, "GET", "/v2/multi/manifests/latest")
    assert r.headers["Content-Type"] == OCI_INDEX and r.body == index


def test_delete_manifest_by_digest_and_tag(berth_registry):
    image = push_image(berth_registry, "app", "v1")
    call(berth_registry, "PUT", "/v2/app/manifests/v2", image.manifest, {"Content-Type": OCI_MANIFEST})
    assert call(berth_registry, "DELETE", "/v2/app/manifests/v2").status == 202
    assert call(berth_registry, "GET", "/v2/app/tags/list").json()["tags"] == ["v1"]
    assert call(berth_registry, "GET", f"/v2/app/manifests/{image.digest}").status == 200
    assert call(berth_registry, "DELETE", f"/v2/app/manifests/{image.digest}").status == 202
    assert call(berth_registry, "GET", "/v2/app/manifests/v1").status == 404
    assert call(berth_registry, "GET", f"/v2/app/manifests/{image.digest}").status == 404
    assert call(berth_registry, "GET", "/v2/app/tags/list").json()["tags"] == []
    assert call(berth_registry, "DELETE", f"/v2/app/manifests/{image.digest}").status == 404


def _follow(registry, path: str, key: str) -> list[list[str]]:
    pages = []
    while path:
        r = call(registry, "GET", path)
        assert r.status == 200
        pages.append(r.json()[key])
        link = r.headers.get("Link")
        path = link[link.index("<") + 1:link.index(">")] if link else ""
        if link:
            assert link.endswith('rel="next"')
    return pages


def test_tag_list_pagination(berth_registry):
    image = push_image(berth_registry, "app", "t1")
    for tag in ("t2", "t3", "t4", "t5"):
        call(berth_registry, "PUT", f"/v2/app/manifests/{tag}", image.manifest,
             {"Content-Type": OCI_MANIFEST})
    assert call(berth_registry, "GET", "/v2/app/tags/list").json() == {
        "name": "app", "tags": ["t1", "t2", "t3", "t4", "t5"]}
    assert _follow(berth_registry, "/v2/app/tags/list?n=2", "tags") == [["t1", "t2"], ["t3", "t4"], ["t5"]]
    assert call(berth_registry, "GET", "/v2/app/tags/list?n=2&last=t3").json()["tags"] == ["t4", "t5"]
    r = call(berth_registry, "GET", "/v2/app/tags/list?n=-1")
    assert r.status == 400 and r.error_codes() == ["PAGINATION_NUMBER_INVALID"]
    r = call(berth_registry, "GET", "/v2/ghost/tags/list")
    assert r.status == 404 and r.error_codes() == ["NAME_UNKNOWN"]


def test_catalog_pagination(berth_registry):
    for repo in ("b/one", "a", "c/two/three"):
        upload(berth_registry, repo, repo.encode())
    assert call(berth_registry, "GET", "/v2/_catalog").json() == {
        "repositories": ["a", "b/one", "c/two/three"]}
    assert _follow(berth_registry, "/v2/_catalog?n=1", "repositories") == [["a"], ["b/one"], ["c/two/three"]]


def test_referrers(berth_registry):
    image = push_image(berth_registry, "app", "v1")
    empty = b"{}"
    upload(berth_registry, "app", empty)
    signature = b"signature bytes"
    upload(berth_registry, "app", signature)
    artifact = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(signature),
                    "size": len(signature)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest)},
        "annotations": {"org.example.signer": "alice"}}).encode()
    r = call(berth_registry, "PUT", f"/v2/app/manifests/{sha256(artifact)}", artifact,
             {"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert r.headers["OCI-Subject"] == image.digest
    r = call(berth_registry, "GET", f"/v2/app/referrers/{image.digest}")
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json()["manifests"] == [{
        "mediaType": OCI_MANIFEST, "digest": sha256(artifact), "size": len(artifact),
        "artifactType": "application/vnd.example.signature",
        "annotations": {"org.example.signer": "alice"}}]
    r = call(berth_registry, "GET", f"/v2/app/referrers/{image.digest}?artifactType=application/x-other")
    assert r.json()["manifests"] == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    # No referrers is an empty index, never a 404.
    r = call(berth_registry, "GET", f"/v2/app/referrers/{sha256(b'unknown')}")
    assert r.status == 200 and r.json()["manifests"] == []
    call(berth_registry, "DELETE", f"/v2/app/manifests/{sha256(artifact)}")
    assert call(berth_registry, "GET", f"/v2/app/referrers/{image.digest}").json()["manifests"] == []


def test_concurrent_pushes_of_one_blob(berth_registry):
    data = os.urandom(2 << 20)
    digest = sha256(data)

    def push(i: int) -> int:
        location = call(berth_registry, "POST", f"/v2/repo{i % 3}/blobs/uploads/").headers["Location"]
        half = len(data) // 2
        call(berth_registry, "PATCH", location, data[:half], {"Content-Range": f"0-{half - 1}"})
        return call(berth_registry, "PUT", f"{location}?digest={digest}", data[half:]).status

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(push, range(8))) == [201] * 8
    for i in range(3):
        assert call(berth_registry, "GET", f"/v2/repo{i}/blobs/{digest}").body == data
    assert os.listdir(berth_registry.root / "blobs" / "sha256") == [digest.split(":")[1]]
    assert os.listdir(berth_registry.root / "uploads") == []


def test_basic_auth_from_htpasswd(berth_registry_auth):
    r = call(berth_registry_auth, "GET", "/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith('Basic realm="berth-registry"')
    assert r.error_codes() == ["UNAUTHORIZED"]
    assert call(berth_registry_auth, "GET", "/v2/",
                headers={"Authorization": basic("alice", "wrong")}).status == 401
    assert call(berth_registry_auth, "GET", "/v2/",
                headers={"Authorization": basic("mallory", "s3cret")}).status == 401
    assert call(berth_registry_auth, "GET", "/v2/",
                headers={"Authorization": basic("alice", "s3cret")}).status == 200
    assert call(berth_registry_auth, "GET", "/v2/_catalog",
                headers={"Authorization": basic("bob", "hunter2")}).status == 200


def test_htpasswd_made_by_apache_htpasswd(workdir):
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd (apache2-utils) is not installed")
    path = workdir / "apache.htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(path), "carol", "pa55"], check=True,
                   capture_output=True)
    registry = start_berth_registry(workdir, path)
    try:
        assert call(registry, "GET", "/v2/", headers={"Authorization": basic("carol", "pa55")}).status == 200
        assert call(registry, "GET", "/v2/", headers={"Authorization": basic("carol", "x")}).status == 401
    finally:
        registry.stop()


def test_serve_refuses_bad_htpasswd_and_address(workdir):
    from regkit import VENV_BIN
    bad = workdir / "plain.htpasswd"
    bad.write_text("dave:plaintextpassword\n")
    proc = subprocess.run([str(VENV_BIN / "berth"), "registry", "serve", "--addr", "127.0.0.1:0",
                           "--root", str(workdir / "r"), "--htpasswd", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "does not have a bcrypt hash" in proc.stderr
    proc = subprocess.run([str(VENV_BIN / "berth"), "registry", "serve", "--addr", "nonsense",
                           "--root", str(workdir / "r")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 125
    assert "invalid address 'nonsense'" in proc.stderr


def test_storage_survives_restart(workdir):
    registry = start_berth_registry(workdir)
    try:
        image = push_image(registry, "app", "v1")
    finally:
        registry.stop()
    registry = start_berth_registry(workdir)
    try:
        r = call(registry, "GET", "/v2/app/manifests/v1")
        assert r.status == 200 and r.body == image.manifest
        layer = image.layer_digests[0]
        assert call(registry, "GET", f"/v2/app/blobs/{layer}").body == image.layers[0]
    finally:
        registry.stop()

