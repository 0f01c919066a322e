"""Pulling with berth's registry client from a scriptable registry: what
lands in the image store, and what every fault of section 3 leaves behind
(a clear error naming the image and cause, nothing half-registered)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os

import pytest
from aiohttp import web
from regkit import (DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, make_image, make_index, sha256)

from berth.errors import BerthError, InvalidArgument, NotFound, Unavailable
from berth.registry.errors import TransferError

LAYERS = [{"etc/os-release": b"NAME=test\n", "bin/a": os.urandom(50_000)},
          {"usr/lib/b": os.urandom(80_000)},
          {"srv/data/c.txt": b"c" * 70_000}]


def _snapshot_file(store, image_id: str, path: str) -> bytes:
    for lower in store.images.lowerdirs(image_id):
        candidate = os.path.join(lower, path)
        if os.path.exists(candidate):
            with open(candidate, "rb") as f:
                return f.read()
    raise FileNotFoundError(path)


def _assert_clean(store, allow_ingests: bool = False) -> None:
    left = store.leftovers()
    assert left["images"] == [], left
    assert left["blobs"] == [], left
    assert left["snapshots"] == [], left
    if not allow_ingests:
        assert left["ingests"] == [], left


def _blob_gets(fake, digest: str):
    return fake.requests("GET", f"/blobs/{digest}")


def test_pull_multi_layer_image(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("team/app", "v1", image)
    [result] = store.pull(f"{fake_registry.address}/team/app:v1")
    assert result.image_id == image.config_digest
    assert result.digest == image.digest
    assert result.updated
    inspect = store.images.inspect(f"{fake_registry.address}/team/app:v1")
    assert inspect["RepoTags"] == [f"{fake_registry.address}/team/app:v1"]
    assert inspect["RepoDigests"] == [f"{fake_registry.address}/team/app@{image.digest}"]
    assert inspect["RootFS"]["Layers"] == image.diff_ids
    assert _snapshot_file(store, result.image_id, "usr/lib/b") == LAYERS[1]["usr/lib/b"]
    assert _snapshot_file(store, result.image_id, "etc/os-release") == b"NAME=test\n"
    statuses = store.statuses()
    assert statuses[0] == "Pulling from team/app"
    assert statuses.count("Pull complete") == 3
    assert f"Digest: {image.digest}" in statuses
    assert statuses[-1] == f"Status: Downloaded newer image for {fake_registry.address}/team/app:v1"
    # Layers are stored as received, and the manifest with them.
    assert set(image.layer_digests) <= set(store.leftovers()["blobs"])
    data, media_type = store.images.manifest(result.image_id)
    assert (data, media_type) == (image.manifest, OCI_MANIFEST)
    assert store.leftovers()["ingests"] == []
    assert [e["Action"] for e in store.events.history() if e["Type"] == "image"][-1] == "pull"


def test_pull_again_skips_present_layers(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    store.pull(f"{fake_registry.address}/app:v1")
    before = len(fake_registry.requests("GET", "/blobs/"))
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    assert not result.updated
    assert len(fake_registry.requests("GET", "/blobs/")) == before
    assert store.statuses().count("Already exists") == 3
    assert store.statuses()[-1].startswith("Status: Image is up to date for ")


def test_shared_base_layer_is_fetched_once(store, fake_registry):
    first = make_image(LAYERS[:2])
    second = make_image([LAYERS[0], {"opt/other": b"other"}])
    fake_registry.add_image("one", "latest", first)
    fake_registry.add_image("two", "latest", second)
    store.pull(f"{fake_registry.address}/one")
    store.pull(f"{fake_registry.address}/two")
    base = first.layer_digests[0]
    assert second.layer_digests[0] == base
    assert len(_blob_gets(fake_registry, base)) == 1
    assert store.statuses().count("Already exists") == 1


def test_pull_by_digest(store, fake_registry):
    image = make_image(LAYERS[:1])
    fake_registry.add_image("app", None, image)
    [result] = store.pull(f"{fake_registry.address}/app@{image.digest}")
    inspect = store.images.inspect(result.image_id)
    assert inspect["RepoTags"] == []
    assert inspect["RepoDigests"] == [f"{fake_registry.address}/app@{image.digest}"]
    assert fake_registry.requests("GET", f"/manifests/{image.digest}")


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_index_platform_selection(store, fake_registry, docker):
    amd = make_image([{"arch": b"amd64"}], docker=docker)
    arm = make_image([{"arch": b"arm64"}], arch="arm64", variant="v8", docker=docker)
    index = make_index([amd, arm], [{"os": "linux", "architecture": "amd64"},
                                    {"os": "linux", "architecture": "arm64", "variant": "v8"}],
                       docker=docker)
    for img in (amd, arm):
        fake_registry.add_image("multi", None, img)
    fake_registry.add_manifest("multi", "latest", index, DOCKER_LIST if docker else OCI_INDEX)
    [result] = store.pull(f"{fake_registry.address}/multi:latest", platform="linux/arm64")
    assert result.image_id == arm.config_digest
    assert result.digest == sha256(index)  # the repo digest is the index's, as in Docker
    assert _snapshot_file(store, result.image_id, "arch") == b"arm64"
    with pytest.raises(NotFound, match=r"no matching manifest for linux/s390x in the manifest list "
                                       r"entries of .*multi:latest"):
        store.pull(f"{fake_registry.address}/multi:latest", platform="linux/s390x")
    with pytest.raises(InvalidArgument, match="invalid platform"):
        store.pull(f"{fake_registry.address}/multi:latest", platform="linux/a b")


def test_index_skips_attestations_and_defaults_to_host(store, fake_registry):
    from berth.images.manifest import host_platform
    host = host_platform()
    mine = make_image([{"arch": b"host"}], arch=host["architecture"])
    other = make_image([{"arch": b"other"}], arch="riscv64" if host["architecture"] != "riscv64" else "s390x")
    index = json.loads(make_index([other, mine], [
        {"os": "linux", "architecture": json.loads(other.config)["architecture"]},
        {"os": "linux", "architecture": host["architecture"]}]))
    index["manifests"].insert(0, {"mediaType": OCI_MANIFEST, "digest": sha256(b"att"), "size": 3,
                                  "platform": {"os": "unknown", "architecture": "unknown"}})
    body = json.dumps(index).encode()
    for img in (mine, other):
        fake_registry.add_image("multi", None, img)
    fake_registry.add_manifest("multi", "latest", body, OCI_INDEX)
    [result] = store.pull(f"{fake_registry.address}/multi")
    assert result.image_id == mine.config_digest


def test_explicit_platform_must_match_a_single_manifest(store, fake_registry):
    fake_registry.add_image("app", "v1", make_image([{"a": b"a"}], arch="amd64"))
    with pytest.raises(NotFound, match="does not match the specified platform"):
        store.pull(f"{fake_registry.address}/app:v1", platform="linux/ppc64le")
    _assert_clean(store)


def test_pull_all_tags(store, fake_registry):
    one, two = make_image([{"v": b"1"}]), make_image([{"v": b"2"}])
    fake_registry.add_image("app", "v1", one)
    fake_registry.add_image("app", "v2", two)
    results = store.pull(f"{fake_registry.address}/app", all_tags=True)
    assert sorted(r.image_id for r in results) == sorted([one.config_digest, two.config_digest])
    tags = {t for i in store.images.list() for t in i["RepoTags"]}
    assert tags == {f"{fake_registry.address}/app:v1", f"{fake_registry.address}/app:v2"}


def test_concurrent_pulls_download_each_layer_once(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)

    async def both():
        ref = f"{fake_registry.address}/app:v1"
        return await asyncio.gather(store.registry.pull(ref), store.registry.pull(ref))

    first, second = asyncio.run(both())
    assert first[0].image_id == second[0].image_id == image.config_digest
    for digest in image.layer_digests:
        assert len(_blob_gets(fake_registry, digest)) == 1


# -- section 3: bad input and faults ---------------------------------------------------

def test_missing_tag(store, fake_registry):
    fake_registry.add_image("app", "v1", make_image([{"a": b"a"}]))
    with pytest.raises(NotFound) as err:
        store.pull(f"{fake_registry.address}/app:v9")
    assert err.value.message == (f"manifest for {fake_registry.address}/app:v9 not found: "
                                 "manifest unknown: manifest unknown")
    _assert_clean(store)


def test_unknown_repository(store, fake_registry):
    with pytest.raises(NotFound, match=rf"manifest for {fake_registry.address}/ghost:latest not found"):
        store.pull(f"{fake_registry.address}/ghost")


def _short_blob(fake, digest: str, keep: int):
    """Serve only the first ``keep`` bytes of a blob, with a matching length."""
    def hook(request: web.Request):
        if request.method == "GET" and request.path.endswith(f"/blobs/{digest}"):
            data = fake.blobs[digest]
            start = 0
            if request.headers.get("Range"):
                start = int(request.headers["Range"].split("=")[1].split("-")[0])
            if start >= keep:
                return web.Response(status=416)
            return web.Response(status=206 if start else 200, body=data[start:keep], headers=(
                {"Content-Range": f"bytes {start}-{keep - 1}/{len(data)}"} if start else {}))
        return None
    return hook


def test_truncated_blob(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    victim = image.layer_digests[1]
    fake_registry.hooks.append(_short_blob(fake_registry, victim, 1000))
    with pytest.raises(TransferError) as err:
        store.pull(f"{fake_registry.address}/app:v1")
    message = err.value.message
    assert f"failed to download layer {victim} of {fake_registry.address}/app:v1" in message
    assert "unexpected end of blob after 1000 of" in message
    # Only the partial download stays, to be resumed: no blob, snapshot or image.
    _assert_clean(store, allow_ingests=True)
    assert store.leftovers()["ingests"] == [f"pull-{victim.replace(':', '-')}"]


def test_resume_after_an_interrupted_pull(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    victim = image.layer_digests[0]
    hook = _short_blob(fake_registry, victim, 20_000)
    fake_registry.hooks.append(hook)
    with pytest.raises(TransferError):
        store.pull(f"{fake_registry.address}/app:v1")
    fake_registry.hooks.remove(hook)
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    assert result.image_id == image.config_digest
    last = _blob_gets(fake_registry, victim)[-1]
    assert last.headers.get("Range") == "bytes=20000-"
    assert _snapshot_file(store, result.image_id, "bin/a") == LAYERS[0]["bin/a"]
    assert store.leftovers()["ingests"] == []


def test_digest_mismatch(store, fake_registry):
    image = make_image(LAYERS, compress=False)
    fake_registry.add_image("app", "v1", image)
    victim = image.layer_digests[2]
    real = fake_registry.blobs[victim]
    # Same length, still a valid tar, other content: only the digest can tell.
    forged = real.replace(b"c" * 100, b"d" * 100, 1)
    assert len(forged) == len(real) and forged != real
    fake_registry.blobs[victim] = forged
    with pytest.raises(InvalidArgument) as err:
        store.pull(f"{fake_registry.address}/app:v1")
    assert err.value.message == (
        f"{fake_registry.address}/app:v1: layer {victim} failed verification: got {len(real)} "
        f"bytes with digest {sha256(forged)}")
    _assert_clean(store)


def test_connection_reset_mid_layer_resumes_with_range(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    victim = image.layer_digests[1]
    state = {"reset": False}

    async def reset_once(request: web.Request):
        if request.method == "GET" and request.path.endswith(victim) and not state["reset"]:
            state["reset"] = True
            data = fake_registry.blobs[victim]
            response = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await response.prepare(request)
            await response.write(data[:30_000])
            request.transport.abort()
            return response
        return None

    fake_registry.hooks.append(reset_once)
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    gets = _blob_gets(fake_registry, victim)
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    start = int(gets[1].headers["Range"].split("=")[1].rstrip("-"))
    assert 0 < start <= 30_000
    assert _snapshot_file(store, result.image_id, "usr/lib/b") == LAYERS[1]["usr/lib/b"]
    assert any(s.startswith("Retrying") for s in store.statuses())


def test_resume_when_the_server_ignores_range(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    fake_registry.ranges = False
    victim = image.layer_digests[0]
    hook = _short_blob(fake_registry, victim, 5000)
    fake_registry.hooks.append(hook)
    with pytest.raises(TransferError):
        store.pull(f"{fake_registry.address}/app:v1")
    fake_registry.hooks.remove(hook)
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    assert _snapshot_file(store, result.image_id, "bin/a") == LAYERS[0]["bin/a"]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_statuses_are_retried(store, fake_registry, status):
    image = make_image(LAYERS[:1])
    fake_registry.add_image("app", "v1", image)
    failures = {"left": 2}

    def flaky(request: web.Request):
        if "/manifests/" in request.path and failures["left"]:
            failures["left"] -= 1
            return web.Response(status=status, headers={"Retry-After": "0"})
        return None

    fake_registry.hooks.append(flaky)
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    assert result.image_id == image.config_digest
    assert len(fake_registry.requests("GET", "/manifests/v1")) == 3


@pytest.mark.parametrize("status,error,text", [
    (429, Unavailable, "the registry is throttling requests: toomanyrequests: slow down"),
    (503, Unavailable, "received unexpected HTTP status: 503 Service Unavailable"),
    (401, NotFound, "pull access denied for"),
    (403, NotFound, "pull access denied for"),
    (404, NotFound, "not found: blob unknown"),
])
@pytest.mark.parametrize("where", ["manifest", "layer"])
def test_registry_errors(store, fake_registry, status, error, text, where):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    victim = f"/blobs/{image.layer_digests[1]}" if where == "layer" else "/manifests/v1"
    if status == 404 and where == "manifest":
        text = "not found: blob unknown"  # whatever the registry says is passed on

    def fail(request: web.Request):
        if request.path.endswith(victim):
            body = {429: {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]},
                    404: {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]},
                    403: {"errors": [{"code": "DENIED", "message": "no"}]},
                    }.get(status)
            return web.Response(status=status, body=json.dumps(body).encode() if body else b"",
                                headers={"Content-Type": "application/json", "Retry-After": "0"})
        return None

    fake_registry.hooks.append(fail)
    with pytest.raises(error) as err:
        store.pull(f"{fake_registry.address}/app:v1")
    assert text in err.value.message
    assert "app" in err.value.message
    _assert_clean(store, allow_ingests=True)


def test_oversized_manifest(store, fake_registry):
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (5 << 20)}).encode()
    fake_registry.add_manifest("app", "big", body, OCI_MANIFEST)
    with pytest.raises(InvalidArgument) as err:
        store.pull(f"{fake_registry.address}/app:big")
    assert err.value.message.startswith(f"manifest for {fake_registry.address}/app:big is too large")
    _assert_clean(store)


def test_unknown_manifest_media_type(store, fake_registry):
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}).encode()
    fake_registry.add_manifest("app", "odd", body, "application/vnd.example.thing+json")
    with pytest.raises(InvalidArgument, match="unsupported manifest media type "
                                              "'application/vnd.example.thing\\+json'"):
        store.pull(f"{fake_registry.address}/app:odd")


def test_unknown_layer_media_type(store, fake_registry):
    image = make_image(LAYERS[:1], layer_media_type="application/vnd.example.layer")
    fake_registry.add_image("app", "v1", image)
    with pytest.raises(InvalidArgument) as err:
        store.pull(f"{fake_registry.address}/app:v1")
    assert "unsupported media type 'application/vnd.example.layer'" in err.value.message
    assert f"{fake_registry.address}/app:v1" in err.value.message
    _assert_clean(store)


def test_schema1_manifest_is_refused_by_name(store, fake_registry):
    fake_registry.add_manifest("old", "v1", json.dumps({"schemaVersion": 1}).encode(),
                               "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(InvalidArgument, match="Docker schema 1 manifests are not supported"):
        store.pull(f"{fake_registry.address}/old:v1")


def test_announced_digest_must_match(store, fake_registry):
    image = make_image(LAYERS[:1])
    fake_registry.add_image("app", "v1", image)

    def lie(request: web.Request):
        if request.path.endswith("/manifests/v1"):
            return web.Response(body=image.manifest, headers={
                "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(b"not it")})
        return None

    fake_registry.hooks.append(lie)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        store.pull(f"{fake_registry.address}/app:v1")


def test_diff_id_mismatch(store, fake_registry):
    image = make_image(LAYERS[:2])
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"][1] = sha256(b"some other tar")
    bad = make_image(LAYERS[:2])
    bad.config = json.dumps(config).encode()
    manifest = json.loads(bad.manifest)
    manifest["config"].update(digest=sha256(bad.config), size=len(bad.config))
    bad.manifest = json.dumps(manifest).encode()
    fake_registry.add_image("app", "v1", bad)
    with pytest.raises(InvalidArgument, match="diff ID mismatch"):
        store.pull(f"{fake_registry.address}/app:v1")
    _assert_clean(store)


def test_corrupt_layer_stream(store, fake_registry):
    image = make_image(LAYERS[:1])
    garbage = gzip.compress(b"this is not a tar archive at all" * 50)
    manifest = json.loads(image.manifest)
    manifest["layers"][0].update(digest=sha256(garbage), size=len(garbage))
    image.manifest = json.dumps(manifest).encode()
    image.layers = [garbage]
    fake_registry.add_image("app", "v1", image)
    with pytest.raises(InvalidArgument) as err:
        store.pull(f"{fake_registry.address}/app:v1")
    assert f"{fake_registry.address}/app:v1: layer {sha256(garbage)}" in err.value.message
    _assert_clean(store)


def test_layer_count_must_match_the_config(store, fake_registry):
    image = make_image(LAYERS[:2])
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][:1]
    image.config = json.dumps(config).encode()
    manifest = json.loads(image.manifest)
    manifest["config"].update(digest=sha256(image.config), size=len(image.config))
    image.manifest = json.dumps(manifest).encode()
    fake_registry.add_image("app", "v1", image)
    with pytest.raises(InvalidArgument, match="the manifest has 2 layers but the config lists 1"):
        store.pull(f"{fake_registry.address}/app:v1")
    _assert_clean(store)


def test_failure_in_one_layer_stops_the_others(make_store, fake_registry):
    store = make_store(downloads=3)
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    fake_registry.hooks.append(lambda r: web.Response(status=404) if r.path.endswith(
        image.layer_digests[0]) else None)
    with pytest.raises(BerthError):
        store.pull(f"{fake_registry.address}/app:v1")
    _assert_clean(store, allow_ingests=True)


def test_stale_partial_downloads_are_replaced(store, fake_registry):
    image = make_image(LAYERS)
    fake_registry.add_image("app", "v1", image)
    ingest_dir = store.images.content.ingest_dir
    longer, wrong = image.layer_digests[0], image.layer_digests[1]
    # one partial download longer than its blob, one whose bytes are not the blob's
    with open(os.path.join(ingest_dir, f"pull-{longer.replace(':', '-')}"), "wb") as f:
        f.write(b"x" * (len(image.layers[0]) + 10))
    with open(os.path.join(ingest_dir, f"pull-{wrong.replace(':', '-')}"), "wb") as f:
        f.write(b"garbage" * 100)
    [result] = store.pull(f"{fake_registry.address}/app:v1")
    assert result.image_id == image.config_digest
    assert _snapshot_file(store, result.image_id, "usr/lib/b") == LAYERS[1]["usr/lib/b"]
    assert store.leftovers()["ingests"] == []
    # the corrupt one was resumed (Range from its length), then fetched again whole
    ranges = [g.headers.get("Range") for g in _blob_gets(fake_registry, wrong)]
    assert ranges == ["bytes=700-", None]


def test_unreachable_registry(store):
    from regkit import free_port
    port = free_port()  # nothing listens there
    with pytest.raises(TransferError) as err:
        store.pull(f"127.0.0.1:{port}/app:v1")
    assert err.value.message.startswith(f"cannot pull 127.0.0.1:{port}/app:v1: cannot reach "
                                        f"registry 127.0.0.1:{port}: https: ")
    assert "Connect call failed" in err.value.message
    _assert_clean(store)


def test_local_write_errors_are_named(store, fake_registry):
    from berth.errors import SystemError_
    image = make_image(LAYERS[:1])
    fake_registry.add_image("app", "v1", image)
    ingest = store.images.content.ingest_dir
    os.rmdir(ingest)
    with open(ingest, "w"):
        pass  # the ingest directory is now a file: every write into it fails
    try:
        with pytest.raises(SystemError_) as err:
            store.pull(f"{fake_registry.address}/app:v1")
        assert err.value.message.startswith(f"cannot pull {fake_registry.address}/app:v1: Not a directory")
    finally:
        os.unlink(ingest)
        os.mkdir(ingest)
    assert store.leftovers()["images"] == []
