"""Snapshots compose under overlayfs: an image's lowerdirs, in the order
the service gives them, show the right merged tree, whiteouts included."""

import io
import os
import subprocess
import tarfile

import pytest

from berth.images import LayerBlob

from imagekit import docker_save_archive, image_config, make_image, sha256


def _tar(entries):
    """entries: (name, content or None for a directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@pytest.fixture
def mountpoint(workdir):
    path = workdir / "merged"
    path.mkdir()
    yield path
    subprocess.run(["umount", str(path)], capture_output=True)


def test_merged_view_of_an_image(service, workdir, mountpoint):
    layers = [
        _tar([("etc", None), ("etc/keep", b"base"), ("etc/gone", b"x"), ("var", None),
              ("var/cache", None), ("var/cache/old", b"old")]),
        _tar([("etc", None), ("etc/.wh.gone", b""), ("etc/keep", b"changed"),
              ("var", None), ("var/cache", None), ("var/cache/.wh..wh..opq", b""),
              ("var/cache/new", b"new")]),
        _tar([("top", b"top")]),
    ]
    diffs = [sha256(t) for t in layers]
    from imagekit import ImageFiles
    image = ImageFiles(layers, diffs, image_config(diffs), ["layered:1"])
    service.load(io.BytesIO(docker_save_archive([image])))
    lower = ":".join(service.lowerdirs(image.id))
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}",
                           str(mountpoint)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {proc.stderr.strip()}")
    assert sorted(os.listdir(mountpoint)) == ["etc", "top", "var"]
    assert (mountpoint / "etc" / "keep").read_bytes() == b"changed"
    assert not (mountpoint / "etc" / "gone").exists()
    assert os.listdir(mountpoint / "var" / "cache") == ["new"]


def test_image_layers_feed_a_child_build(service, workdir):
    base = make_image([{"etc": None, "etc/base": "1"}], tags=["base:1"])
    service.load(io.BytesIO(docker_save_archive([base])))
    layers = service.image_layers(base.id)
    assert layers == [LayerBlob(sha256(base.layers[0]), "application/vnd.oci.image.layer.v1.tar",
                                len(base.layers[0]), base.diff_ids[0])]
    child = service.register_image(image_config([l.diff_id for l in layers], cmd=["x"]), layers,
                                   parent=base.id, tags=["child:1"])
    assert service.inspect("child:1")["Parent"] == base.id
    assert service.layer_chain_ids(child) == service.layer_chain_ids(base.id)
