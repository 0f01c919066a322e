"""``docker import``: one layer from a rootfs tar, with --change and message."""

import bz2
import gzip
import io
import lzma
import os
import subprocess
from pathlib import Path

import pytest

from berth.errors import InvalidArgument

from imagekit import layer_tar, sha256, store_is_empty


def test_import_busybox_rootfs(service, busybox_rootfs, events):
    image_id = service.import_image(str(busybox_rootfs), "busybox", ['CMD ["sh"]'])
    raw = busybox_rootfs.read_bytes()
    assert image_id.startswith("sha256:")
    info = service.inspect("busybox")
    assert info["Id"] == image_id
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["RootFS"] == {"Type": "layers", "Layers": [sha256(raw)]}
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Os"] == "linux" and info["Architecture"]
    assert info["Comment"] == ""
    # The unpacked layer is the image's only (upper) dir and holds the rootfs.
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert info["GraphDriver"]["Name"] == "overlay2" and "LowerDir" not in info["GraphDriver"]["Data"]
    assert (upper / "bin" / "busybox").stat().st_size > 100_000
    assert os.readlink(upper / "bin" / "sh") == "/bin/busybox"
    assert info["Size"] == (upper / "bin" / "busybox").stat().st_size + sum(
        (upper / "etc" / f).stat().st_size for f in ("passwd", "group", "nsswitch.conf"))
    # The layer blob is kept byte for byte as received.
    blobs = {b.digest for b in service.content.walk()}
    assert sha256(raw) in blobs and image_id in blobs
    [entry] = service.history("busybox")
    assert entry["Comment"] == "Imported from -" and entry["Id"] == image_id
    assert entry["Tags"] == ["busybox:latest"] and entry["Size"] == info["Size"]
    assert events.actions() == [("tag", "busybox:latest"), ("import", image_id)]


@pytest.mark.parametrize("compress, stored", [
    (lambda b: b, "none"),
    (lambda b: gzip.compress(b), "gzip"),
    (lambda b: subprocess.run(["zstd", "-q", "-c"], input=b, capture_output=True, check=True).stdout, "zstd"),
    (lambda b: bz2.compress(b), "plain after bzip2"),
    (lambda b: lzma.compress(b), "plain after xz"),
])
def test_import_compressed_sources(service, write, compress, stored):
    tar = layer_tar({"etc": None, "etc/motd": "hello\n"})
    data = compress(tar)
    image_id = service.import_image(write("rootfs", data), "x:1")
    info = service.inspect("x:1")
    assert info["RootFS"]["Layers"] == [sha256(tar)]
    [layer] = service.db.query("SELECT * FROM image_layers WHERE image_id=?", (image_id,))
    if stored in ("none", "gzip", "zstd"):
        assert layer["blob_digest"] == sha256(data)  # kept as received
    else:
        assert layer["blob_digest"] == sha256(tar)   # the native unpacker needs a plain tar
        assert layer["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    assert Path(info["GraphDriver"]["Data"]["UpperDir"], "etc/motd").read_text() == "hello\n"


def test_import_from_a_stream_with_message_changes_and_platform(service):
    tar = layer_tar({"app": "x"})
    image_id = service.import_image(
        io.BytesIO(tar), "localhost:5000/team/app:v2",
        ["ENV A=1", "EXPOSE 8080", "LABEL team=core", "WORKDIR /srv", 'ENTRYPOINT ["/app"]'],
        message="built by hand", platform="linux/arm64/v8", source_name="http://host/rootfs.tar")
    info = service.inspect(image_id)
    assert info["RepoTags"] == ["localhost:5000/team/app:v2"]
    assert info["Comment"] == "built by hand"
    assert info["Architecture"] == "arm64" and info["Variant"] == "v8"
    cfg = info["Config"]
    assert cfg["Env"] == ["A=1"] and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Labels"] == {"team": "core"} and cfg["WorkingDir"] == "/srv"
    assert cfg["Entrypoint"] == ["/app"]
    assert service.history(image_id)[0]["Comment"] == "built by hand"
    assert service.list(filters={"label": ["team=core"]})[0]["Id"] == image_id


def test_importing_the_same_tar_twice_shares_the_layer(service, write):
    tar = layer_tar({"f": "same"})
    path = write("rootfs.tar", tar)
    a = service.import_image(path, "a")
    b = service.import_image(path, "b", ["CMD [\"x\"]"])
    assert a != b
    assert len(os.listdir(service.snapshots.root)) == 1
    assert service.layer_chain_ids(a) == service.layer_chain_ids(b) == [sha256(tar)]


@pytest.mark.parametrize("data, message", [
    (b"", "import source is empty"),
    (b"this is not a tar archive at all" * 40, ""),
    (gzip.compress(layer_tar({"f": os.urandom(100_000)}))[:-4000], ""),
    (bz2.compress(layer_tar({"f": "x"}))[:-20], "truncated bzip2 stream"),
])
def test_bad_sources_leave_nothing(service, write, root, data, message):
    with pytest.raises(InvalidArgument) as err:
        service.import_image(write("bad", data), "bad")
    assert message in err.value.message
    assert store_is_empty(root)
    assert service.list(all=True) == []


def test_import_of_a_hostile_layer_leaves_nothing(service, write, root):
    tar = layer_tar({"ok": "1"}, hardlinks={"shadow": "/etc/shadow"})
    with pytest.raises(InvalidArgument, match="shadow"):
        service.import_image(write("evil.tar", tar), "evil")
    assert store_is_empty(root)


@pytest.mark.parametrize("reference, changes, platform, message", [
    ("Bad", [], None, "must be lowercase"),
    ("x@sha256:" + "a" * 64, [], None, "cannot import digest reference"),
    ("x", ["RUN rm -rf /"], None, "run is not a valid change command"),
    ("x", [], "windows/amd64", "operating system is not supported"),
    ("x", [], "linux/AMD 64", "invalid platform"),
])
def test_invalid_arguments_are_refused_before_reading(service, root, reference, changes,
                                                      platform, message):
    with pytest.raises(InvalidArgument, match=message):
        service.import_image(io.BytesIO(layer_tar({"f": "1"})), reference, changes,
                             platform=platform)
    assert store_is_empty(root)


def test_missing_source_file(service, workdir):
    with pytest.raises(InvalidArgument, match="no such file"):
        service.import_image(str(workdir / "nope.tar"))
