"""``docker load`` / ``docker save``: both archive formats, compressed or not,
bad archives leaving nothing behind, and round trips checked by skopeo."""

import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from berth.config import Config
from berth.errors import InvalidArgument, NotFound
from berth.images import ImageService
from berth.images.manifest import host_platform

from imagekit import (docker_save_archive, files_under, hex_of, layer_tar, make_image,
                      oci_layout_archive, oci_manifest, sha256, store_is_empty)

BASE = {"bin": None, "bin/sh": b"#!fake shell\n" * 50, "etc": None, "etc/os-release": "ID=test\n"}


def two_images():
    base = make_image([BASE], tags=["base:1"], cmd=["sh"], labels={"tier": "base"})
    app = make_image([BASE, {"app": None, "app/run": "run!\n"}], tags=["app:latest", "app:v2"],
                     cmd=["/app/run"], created="2024-02-02T00:00:00Z")
    return base, app


def test_load_legacy_docker_save_archive(service, write, events):
    base, app = two_images()
    messages = service.load(write("images.tar", docker_save_archive([base, app])))
    assert messages == ["Loaded image: base:1", "Loaded image: app:latest", "Loaded image: app:v2"]
    assert service.resolve("base:1") == base.id
    assert service.resolve("app:v2") == service.resolve("app") == app.id
    assert service.inspect("app")["Config"]["Cmd"] == ["/app/run"]
    # The shared base layer is unpacked once.
    assert len(os.listdir(service.snapshots.root)) == 2
    assert service.layer_chain_ids(app.id)[0] == service.layer_chain_ids(base.id)[0]
    upper = service.inspect("app")["GraphDriver"]["Data"]
    assert Path(upper["UpperDir"], "app/run").read_text() == "run!\n"
    assert Path(upper["LowerDir"], "etc/os-release").read_text() == "ID=test\n"
    assert [a for a, _ in events.actions()] == ["load", "load"]
    assert service.list()[0]["Id"] == app.id  # newest first


def test_load_docker25_archive_keeps_its_manifest(service, write):
    base, app = two_images()
    service.load(write("images.tar", docker_save_archive([base, app], legacy=False)))
    manifest, media_type = service.manifest(app.id)
    assert manifest == oci_manifest(app)
    assert media_type == "application/vnd.oci.image.manifest.v1+json"


def test_load_oci_layout_with_gzip_layers_and_names(service, write):
    image = make_image([BASE, {"x": "1"}], gzip_layers=True, tags=["localhost:5000/gz:1"])
    untagged = make_image([{"other": "2"}], created="2020-01-01T00:00:00Z")
    messages = service.load(write("oci.tar", oci_layout_archive([image, untagged])))
    assert messages == ["Loaded image: localhost:5000/gz:1", f"Loaded image ID: {untagged.id}"]
    # Compressed blobs are stored as received, for save and push.
    assert {sha256(b) for b in image.layers} <= {b.digest for b in service.content.walk()}
    assert service.inspect(untagged.id)["RepoTags"] == []
    listing = service.list()
    assert [i["RepoTags"] for i in listing] == [["localhost:5000/gz:1"], ["<none>:<none>"]]


def test_load_oci_index_picks_the_host_platform(service, write):
    host = make_image([{"arch": "host"}], tags=[])
    other = make_image([{"arch": "other"}], arch="s390x" if host_platform()["architecture"] != "s390x" else "amd64")
    host_m, other_m = oci_manifest(host), oci_manifest(other)
    plat = host_platform()
    nested = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(other_m),
             "size": len(other_m), "platform": {"os": "linux", "architecture": json.loads(other.config)["architecture"]}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(host_m),
             "size": len(host_m), "platform": plat},
        ]}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(nested),
        "size": len(nested), "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}]}
    # The other platform's blobs are absent, as in a partial layout: not needed.
    archive = oci_layout_archive([host], index=index, extra_blobs=[nested])
    assert service.load(write("multi.tar", archive)) == ["Loaded image: multi:1"]
    assert service.resolve("multi:1") == host.id
    with pytest.raises(InvalidArgument, match="has no image for platform linux/riscv64"):
        service.load(write("multi.tar", archive), platform="linux/riscv64")


@pytest.mark.parametrize("compress", [
    lambda b: gzip.compress(b, mtime=0),
    lambda b: lzma.compress(b),
    lambda b: subprocess.run(["zstd", "-q", "-c"], input=b, capture_output=True, check=True).stdout,
])
def test_load_compressed_archives(service, write, compress):
    base, _ = two_images()
    archive = compress(docker_save_archive([base]))
    assert service.load(write("a.tar.x", archive)) == ["Loaded image: base:1"]


def test_load_from_a_stream(service):
    base, _ = two_images()
    assert service.load(io.BytesIO(docker_save_archive([base]))) == ["Loaded image: base:1"]


def test_load_symlinked_layers_as_older_docker_writes_them(service, write):
    base, app = two_images()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("aaa/layer.tar", app.layers[0])
        add("bbb/layer.tar", app.layers[1])
        link = tarfile.TarInfo("ccc/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../aaa/layer.tar"
        tar.addfile(link)
        add(hex_of(app.id) + ".json", app.config)
        add(hex_of(base.id) + ".json", base.config)
        add("manifest.json", json.dumps([
            {"Config": hex_of(app.id) + ".json", "RepoTags": ["app:1"],
             "Layers": ["aaa/layer.tar", "bbb/layer.tar"]},
            {"Config": hex_of(base.id) + ".json", "RepoTags": ["base:1"], "Layers": ["ccc/layer.tar"]},
        ]).encode())
    assert service.load(write("l.tar", archive.getvalue())) == ["Loaded image: app:1", "Loaded image: base:1"]


def test_loading_moves_an_existing_tag(service, write):
    base, app = two_images()
    service.load(write("a.tar", docker_save_archive([base])))
    app.tags = ["base:1"]
    messages = service.load(write("b.tar", docker_save_archive([app])))
    assert messages == [
        f"The image base:1 already exists, renaming the old one with ID {base.id} to empty string",
        "Loaded image: base:1"]
    assert service.resolve("base:1") == app.id
    assert service.inspect(base.id)["RepoTags"] == []


def test_loading_twice_is_idempotent(service, write):
    base, app = two_images()
    path = write("a.tar", docker_save_archive([base, app]))
    service.load(path)
    before = files_under(Path(service.config.root) / "content")
    assert service.load(path)[0] == "Loaded image: base:1"
    assert files_under(Path(service.config.root) / "content") == before
    assert len(service.list()) == 2


# -- bad archives ---------------------------------------------------------------

def _bad_archives():
    base, app = two_images()
    image = make_image([BASE, {"f": "1"}], tags=["x:1"])
    evil_layer = layer_tar({"ok": "1"}, hardlinks={"pw": "/etc/shadow"})
    evil = make_image([BASE], tags=["evil:1"])
    evil.layers[0] = evil_layer
    evil.diff_ids[0] = sha256(evil_layer)
    from imagekit import image_config
    evil.config = image_config(evil.diff_ids)
    wrong_diff = make_image([BASE], tags=["w:1"])
    wrong_diff.config = json.dumps({**json.loads(wrong_diff.config),
                                    "rootfs": {"type": "layers", "diff_ids": [sha256(b"x")]}}).encode()
    layer_name = hex_of(sha256(image.layers[1]))
    m = oci_manifest(image, layer_media_type="application/vnd.example.unknown")
    yield "manifest.json is not JSON", docker_save_archive([image], overrides={"manifest.json": b"{not json"}), \
        "manifest.json in the archive is not valid JSON"
    yield "config missing", docker_save_archive([image], overrides={hex_of(image.id) + ".json": None}), \
        f"image config {hex_of(image.id)}.json is missing from the archive"
    yield "blob missing", docker_save_archive([image], legacy=False,
                                              overrides={"blobs/sha256/" + layer_name: None}), \
        f"layer blobs/sha256/{layer_name} is missing from the archive"
    yield "blob digest mismatch", docker_save_archive([image], legacy=False, overrides={
        "blobs/sha256/" + layer_name: layer_tar({"f": "tampered"})}), \
        f"digest mismatch for blobs/sha256/{layer_name}: expected sha256:{layer_name}"
    yield "oci blob digest mismatch", oci_layout_archive([image], overrides={
        "blobs/sha256/" + layer_name: layer_tar({"f": "tampered"})}), \
        f"digest mismatch for layer sha256:{layer_name}"
    yield "unknown layer media type", oci_layout_archive([image], overrides={
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(m),
            "size": len(m)}]}).encode(), "blobs/sha256/" + hex_of(sha256(m)): m}), \
        "unsupported media type 'application/vnd.example.unknown' for layer"
    yield "unknown manifest media type", oci_layout_archive([image], overrides={
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "digest": sha256(m), "size": len(m)}]}).encode()}), \
        "unsupported media type 'application/vnd.docker.distribution.manifest.v1+prettyjws'"
    yield "diff ID mismatch", docker_save_archive([wrong_diff]), "diff ID mismatch: expected"
    yield "hostile layer", docker_save_archive([evil]), '"/etc/shadow"'
    yield "layer count mismatch", docker_save_archive([image], overrides={"manifest.json": json.dumps(
        [{"Config": hex_of(image.id) + ".json", "RepoTags": ["x:1"], "Layers": []}]).encode()}), \
        "lists 0 layers but its config"
    yield "path escaping the archive", docker_save_archive([image], overrides={"manifest.json": json.dumps(
        [{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]).encode()}), \
        "entry '../../etc/passwd' points outside the archive"
    yield "invalid tag", docker_save_archive([image], overrides={"manifest.json": json.dumps(
        [{"Config": hex_of(image.id) + ".json", "RepoTags": ["Bad:Tag"],
          "Layers": json.loads(docker_save_archive_manifest(image))}]).encode()}), "invalid tag 'Bad:Tag'"
    whole = gzip.compress(docker_save_archive([base, app]))
    yield "truncated gzip archive", whole[:len(whole) // 2], \
        "cannot read the tar stream"
    yield "not a tar", b"hello, I am not an archive" * 100, "cannot read the tar stream"
    yield "empty", b"", "the archive is empty"
    yield "no manifest", oci_layout_archive([image], overrides={"index.json": None}), \
        "no manifest.json or index.json found"
    yield "second image broken", docker_save_archive([base, wrong_diff]), "diff ID mismatch"


def docker_save_archive_manifest(image):
    with tarfile.open(fileobj=io.BytesIO(docker_save_archive([image]))) as tar:
        return json.dumps(json.load(tar.extractfile("manifest.json"))[0]["Layers"])


BAD = list(_bad_archives())


@pytest.mark.parametrize("archive, message", [(a, m) for _, a, m in BAD], ids=[n for n, _, _ in BAD])
def test_bad_archives_leave_nothing(service, write, root, archive, message):
    with pytest.raises(InvalidArgument) as err:
        service.load(write("bad.tar", archive))
    assert message in err.value.message
    assert err.value.message.startswith("invalid image archive: ")
    assert store_is_empty(root)
    assert service.list(all=True) == []
    assert service.db.query("SELECT * FROM tags") == []


def test_a_failed_load_keeps_what_other_images_use(service, write, root):
    base, app = two_images()
    service.load(write("base.tar", docker_save_archive([base])))
    before = files_under(root / "content") + files_under(root / "snapshots")
    broken = make_image([BASE, {"f": "1"}], tags=["broken:1"])
    broken.diff_ids[1] = sha256(b"wrong")
    from imagekit import image_config
    broken.config = image_config(broken.diff_ids)
    with pytest.raises(InvalidArgument, match="diff ID mismatch"):
        service.load(write("broken.tar", docker_save_archive([broken])))
    assert files_under(root / "content") + files_under(root / "snapshots") == before
    assert Path(service.lowerdirs(base.id)[0], "etc/os-release").exists()


# -- save -----------------------------------------------------------------------

def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def test_save_writes_both_layouts(service, write):
    base, app = two_images()
    service.load(write("in.tar", docker_save_archive([base, app], legacy=False)))
    out = io.BytesIO()
    service.save(["app"], out)
    members = _members(out.getvalue())
    assert list(members)[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
    for name, data in members.items():
        if name.startswith("blobs/sha256/") and data is not None:
            assert sha256(data) == "sha256:" + name.rsplit("/", 1)[1]
    [entry] = json.loads(members["manifest.json"])
    assert entry["Config"] == "blobs/sha256/" + hex_of(app.id)
    assert sorted(entry["RepoTags"]) == ["app:latest", "app:v2"]
    assert entry["Layers"] == ["blobs/sha256/" + hex_of(sha256(b)) for b in app.layers]
    index = json.loads(members["index.json"])
    names = sorted(m["annotations"]["io.containerd.image.name"] for m in index["manifests"])
    assert names == ["docker.io/library/app:latest", "docker.io/library/app:v2"]
    assert {m["digest"] for m in index["manifests"]} == {sha256(oci_manifest(app))}
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(members["repositories"]) == {
        "app": {"latest": hex_of(sha256(app.layers[-1])), "v2": hex_of(sha256(app.layers[-1]))}}


@pytest.mark.parametrize("names, expected_tags", [
    (["app"], {"app": ["app:latest", "app:v2"]}),
    (["app:v2"], {"app": ["app:v2"]}),
    (["APPID"], {"app": None}),
    (["app:v2", "base:1", "app:latest"], {"app": ["app:v2", "app:latest"], "base": ["base:1"]}),
])
def test_save_selection(service, write, names, expected_tags):
    base, app = two_images()
    service.load(write("in.tar", docker_save_archive([base, app])))
    names = [app.id[7:19] if n == "APPID" else n for n in names]
    out = io.BytesIO()
    service.save(names, out)
    manifest = json.loads(_members(out.getvalue())["manifest.json"])
    by_config = {e["Config"]: e["RepoTags"] for e in manifest}
    ids = {"app": app.id, "base": base.id}
    assert by_config == {"blobs/sha256/" + hex_of(ids[k]): v for k, v in expected_tags.items()}


def test_save_errors(service):
    with pytest.raises(NotFound, match="No such image: nothere:latest"):
        service.save(["nothere"], io.BytesIO())
    with pytest.raises(InvalidArgument, match="no images to save"):
        service.save([], io.BytesIO())


def test_save_streams_into_a_pipe_and_round_trips(service, write, workdir, busybox_rootfs, events):
    base, app = two_images()
    service.load(write("in.tar", docker_save_archive([base, app], legacy=False)))
    bb = service.import_image(str(busybox_rootfs), "busybox:1.36", ['CMD ["sh"]'])
    read_fd, write_fd = os.pipe()
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 1 << 16), b"")))
    reader.start()
    with os.fdopen(write_fd, "wb") as pipe:
        service.save(["app", "base:1", "busybox:1.36"], pipe)
    reader.join()
    os.close(read_fd)
    archive = b"".join(chunks)
    assert ("save", bb) in [(a, n) for a, n in events.actions()]

    other_root = workdir / "other"
    other = ImageService(Config(root=str(other_root)), service.events)
    try:
        messages = other.load(io.BytesIO(archive))
        assert sorted(messages) == ["Loaded image: app:latest", "Loaded image: app:v2",
                                    "Loaded image: base:1", "Loaded image: busybox:1.36"]
        for name in ("app:v2", "base:1", "busybox:1.36"):
            a, b = service.inspect(name), other.inspect(name)
            for key in ("Id", "RepoTags", "Config", "RootFS", "Size", "Created", "Architecture"):
                assert a[key] == b[key], key
            assert service.manifest(a["Id"]) == other.manifest(b["Id"])
        assert sorted(b.digest for b in service.content.walk()) == \
            sorted(b.digest for b in other.content.walk() if b.digest != sha256(
                service.manifest(bb)[0]))
    finally:
        other.close()


# -- an independent implementation (skopeo) reads ours and writes for us ----------

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                          check=True, timeout=120)


@needs_skopeo
def test_skopeo_reads_our_archive_both_ways(service, workdir, busybox_rootfs):
    image_id = service.import_image(str(busybox_rootfs), "busybox:latest", ['CMD ["sh"]'])
    path = workdir / "saved.tar"
    with open(path, "wb") as f:
        service.save(["busybox"], f)
    as_docker = json.loads(_skopeo("inspect", "--config", f"docker-archive:{path}").stdout)
    assert as_docker["config"]["Cmd"] == ["sh"]
    as_oci = json.loads(_skopeo("inspect", "--raw", f"oci-archive:{path}:latest").stdout)
    assert as_oci["config"]["digest"] == image_id
    # Copying verifies every blob digest.
    _skopeo("copy", f"docker-archive:{path}", f"oci:{workdir / 'copy'}:busybox")


@needs_skopeo
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_load_what_skopeo_writes(service, workdir, busybox_rootfs, fmt):
    image_id = service.import_image(str(busybox_rootfs), "busybox:latest", ['CMD ["sh"]'])
    ours = workdir / "ours.tar"
    with open(ours, "wb") as f:
        service.save(["busybox"], f)
    theirs = workdir / "theirs.tar"
    target = f"{fmt}:{theirs}:docker.io/library/skopeo:copy"
    _skopeo("copy", f"docker-archive:{ours}", target)
    other = ImageService(Config(root=str(workdir / "other")), service.events)
    try:
        messages = other.load(str(theirs))
        assert messages == ["Loaded image: skopeo:copy"]
        loaded = other.inspect("skopeo:copy")
        mine = service.inspect(image_id)
        # Converting to OCI, skopeo re-serialises the config (so a new ID)
        # and gzips the layer; the image itself is the same.
        assert (loaded["Id"] == image_id) is (fmt == "docker-archive")
        assert loaded["RootFS"] == mine["RootFS"] and loaded["Config"] == mine["Config"]
        assert Path(other.lowerdirs(loaded["Id"])[0], "bin/busybox").exists()
    finally:
        other.close()
