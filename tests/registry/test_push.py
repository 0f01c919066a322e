"""Pushing with berth's registry client: HEAD checks, mounts, monolithic and
chunked uploads (with resume), recompression, tag, digest and all-tag
pushes; read back with another store to prove what the registry holds."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import urllib.request

import pytest
from aiohttp import web
from regkit import OCI_MANIFEST, FakeRegistry, make_image, sha256

from berth.errors import NotFound, Unauthorized
from berth.registry.auth import AuthConfig

LAYERS = [{"etc/issue": b"berth\n", "bin/tool": os.urandom(40_000)},
          {"var/data": os.urandom(120_000)}]


@pytest.fixture
def local_image(store, fake_registry):
    """An image in the store, pulled from a fake registry."""
    image = make_image(LAYERS)
    fake_registry.add_image("origin/app", "v1", image)
    store.pull(f"{fake_registry.address}/origin/app:v1")
    return image


def _tags(registry, repo: str) -> list[str]:
    with urllib.request.urlopen(f"{registry.url}/v2/{repo}/tags/list") as resp:
        return json.load(resp)["tags"]


def _manifest(registry, repo: str, reference: str) -> tuple[bytes, str]:
    request = urllib.request.Request(f"{registry.url}/v2/{repo}/manifests/{reference}")
    with urllib.request.urlopen(request) as resp:
        return resp.read(), resp.headers["Content-Type"]


def _blob(registry, repo: str, digest: str) -> bytes:
    with urllib.request.urlopen(f"{registry.url}/v2/{repo}/blobs/{digest}") as resp:
        return resp.read()


def test_push_to_berth_registry_and_pull_back(store, make_store, local_image, berth_registry, fake_registry):
    target = f"{berth_registry.address}/team/app"
    store.images.tag(f"{fake_registry.address}/origin/app:v1", target, "v1")
    [result] = store.push(f"{target}:v1")
    # Layers already compressed are pushed as stored: the manifest keeps its digest.
    assert result.digest == local_image.digest
    assert result.size == len(local_image.manifest)
    statuses = store.statuses()
    assert statuses[0] == f"The push refers to repository [{target}]"
    assert statuses.count("Pushed") == 2
    assert statuses[-1] == f"v1: digest: {local_image.digest} size: {len(local_image.manifest)}"
    aux = [m["aux"] for m in store.messages if "aux" in m]
    assert aux == [{"Tag": "v1", "Digest": local_image.digest, "Size": len(local_image.manifest)}]
    assert _tags(berth_registry, "team/app") == ["v1"]
    assert _manifest(berth_registry, "team/app", "v1") == (local_image.manifest, OCI_MANIFEST)
    assert f"{target}@{local_image.digest}" in store.images.inspect(f"{target}:v1")["RepoDigests"]
    other = make_store("reader")
    [pulled] = other.pull(f"{target}:v1")
    assert pulled.image_id == local_image.config_digest


def test_second_push_finds_layers_and_other_repos_mount(store, local_image, berth_registry, fake_registry):
    first = f"{berth_registry.address}/one/app"
    second = f"{berth_registry.address}/two/app"
    store.images.tag(f"{fake_registry.address}/origin/app:v1", first, "latest")
    store.images.tag(f"{fake_registry.address}/origin/app:v1", second, "latest")
    store.push(first)
    store.push(first)
    assert store.statuses().count("Layer already exists") == 2
    store.push(second)
    assert store.statuses().count("Mounted from one/app") == 2
    assert _blob(berth_registry, "two/app", local_image.layer_digests[1]) == local_image.layers[1]


def test_monolithic_and_chunked_uploads(store, local_image, fake_registry):
    target = FakeRegistry().start()
    try:
        name = f"{target.address}/app"
        store.images.tag(f"{fake_registry.address}/origin/app:v1", name, "mono")
        store.push(f"{name}:mono")
        assert not target.requests("PATCH")
        puts = [s for s in target.requests("PUT", "/blobs/uploads/")]
        assert len(puts) == 3  # two layers and the config, one request each
        assert all("digest=sha256%3A" in s.query or "digest=sha256:" in s.query for s in puts)

        target.blobs.clear()
        target.seen.clear()
        store.images.tag(f"{fake_registry.address}/origin/app:v1", name, "chunked")
        store.push(f"{name}:chunked", chunk_size=16_384)
        big = local_image.layer_digests[1]
        size = len(local_image.layers[1])
        patches = target.requests("PATCH")
        ranges = [p.headers["Content-Range"] for p in patches]
        assert f"0-{16_384 - 1}" in ranges
        assert f"{(size - 1) // 16_384 * 16_384}-{size - 1}" in ranges
        assert target.blobs[big] == local_image.layers[1]
    finally:
        target.stop()


def test_chunked_upload_resumes_after_a_broken_chunk(store, local_image, fake_registry):
    target = FakeRegistry().start()
    state = {"broken": False}

    async def break_third_patch(request: web.Request):
        if request.method == "PATCH" and len(target.requests("PATCH")) == 3 and not state["broken"]:
            state["broken"] = True
            await request.content.read(5000)  # then the connection breaks: nothing is kept
            request.transport.abort()
            return web.Response()
        return None

    target.hooks.append(break_third_patch)
    try:
        name = f"{target.address}/app"
        store.images.tag(f"{fake_registry.address}/origin/app:v1", name, "c")
        store.push(f"{name}:c", chunk_size=20_000)
        assert state["broken"]
        status_checks = [s for s in target.requests("GET", "/blobs/uploads/")]
        assert status_checks, "the client did not ask where the upload stood"
        for digest, data in local_image.blobs.items():
            assert target.blobs[digest] == data
    finally:
        target.stop()


def test_zstd_push_keeps_the_image(store, make_store, local_image, berth_registry, fake_registry):
    target = f"{berth_registry.address}/z/app"
    store.images.tag(f"{fake_registry.address}/origin/app:v1", target, "zstd")
    [result] = store.push(f"{target}:zstd", compression="zstd")
    manifest = json.loads(_manifest(berth_registry, "z/app", "zstd")[0])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"] * 2
    blob = _blob(berth_registry, "z/app", manifest["layers"][0]["digest"])
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert manifest["config"]["digest"] == local_image.config_digest
    other = make_store("reader")
    [pulled] = other.pull(f"{target}@{result.digest}")
    assert pulled.image_id == local_image.config_digest
    lower = other.images.lowerdirs(pulled.image_id)
    assert any(os.path.exists(os.path.join(d, "var/data")) for d in lower)


def test_uncompressed_layers_are_gzipped(store, make_store, berth_registry, workdir):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        data = b"plain layer\n" * 1000
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    path = workdir / "layer.tar"
    path.write_bytes(tar.getvalue())
    target = f"{berth_registry.address}/plain/app:v1"
    image_id = store.images.import_image(str(path), target)
    [result] = store.push(target)
    manifest = json.loads(_manifest(berth_registry, "plain/app", "v1")[0])
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert gzip.decompress(_blob(berth_registry, "plain/app", layer["digest"])) == tar.getvalue()
    assert result.digest == sha256(_manifest(berth_registry, "plain/app", "v1")[0])
    [pulled] = make_store("reader").pull(target)
    assert pulled.image_id == image_id


def test_push_by_digest_and_all_tags(store, local_image, berth_registry, fake_registry):
    repo = f"{berth_registry.address}/multi"
    for tag in ("a", "b"):
        store.images.tag(f"{fake_registry.address}/origin/app:v1", repo, tag)
    results = store.push(repo)
    assert sorted(r.tag for r in results) == ["a", "b"]
    assert _tags(berth_registry, "multi") == ["a", "b"]
    digest_ref = f"{berth_registry.address}/bydigest@{local_image.digest}"
    store.images.tag(f"{fake_registry.address}/origin/app:v1", f"{berth_registry.address}/bydigest", "x")
    [result] = store.push(digest_ref)
    assert result.tag is None and result.digest == local_image.digest
    assert _manifest(berth_registry, "bydigest", local_image.digest)[0] == local_image.manifest
    assert _tags(berth_registry, "bydigest") == []
    assert store.statuses()[-1] == f"digest: {local_image.digest} size: {len(local_image.manifest)}"


def test_push_errors(store, local_image, berth_registry_auth, fake_registry):
    with pytest.raises(NotFound, match="An image does not exist locally with the tag: "
                                       f"{berth_registry_auth.address}/nothing:latest"):
        store.push(f"{berth_registry_auth.address}/nothing:latest")
    target = f"{berth_registry_auth.address}/app"
    store.images.tag(f"{fake_registry.address}/origin/app:v1", target, "v1")
    with pytest.raises(Unauthorized) as err:
        store.push(f"{target}:v1")
    assert err.value.message.startswith(f"cannot push {target}:v1: ")
    assert "no basic auth credentials" in err.value.message
    [result] = store.push(f"{target}:v1", auth=AuthConfig("alice", "s3cret"))
    assert result.digest == local_image.digest


def test_push_denied(store, local_image, fake_registry):
    target = FakeRegistry().start()
    target.hooks.append(lambda r: web.Response(
        status=403, content_type="application/json",
        body=json.dumps({"errors": [{"code": "DENIED", "message": "read only"}]}).encode())
        if r.method in ("POST", "PUT") else None)
    try:
        name = f"{target.address}/app:v1"
        store.images.tag(f"{fake_registry.address}/origin/app:v1", f"{target.address}/app", "v1")
        with pytest.raises(Exception) as err:
            store.push(name)
        assert err.value.message == f"cannot push {name}: denied: denied: read only"
    finally:
        target.stop()
