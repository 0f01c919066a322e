"""docker-py (the Docker SDK for Python) against berthd."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

docker = pytest.importorskip("docker")


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=120)
    yield c
    c.close()


@pytest.fixture
def busybox(client, busybox_rootfs) -> str:
    out = client.api.import_image_from_file(str(busybox_rootfs), repository="busybox", tag="latest")
    image_id = json.loads(out.strip().splitlines()[-1])["status"]
    assert image_id.startswith("sha256:")
    return image_id


def test_version_ping_info(client, daemon):
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.41"
    assert client.api.api_version == "1.41"  # negotiated through /version
    info = client.info()
    assert info["DockerRootDir"] == str(daemon.root)
    assert info["Driver"] == "overlay2"


def test_list_and_get(client, busybox):
    images = client.images.list()
    assert [i.id for i in images] == [busybox]
    image = client.images.get("busybox")
    assert image.id == busybox
    assert image.tags == ["busybox:latest"]
    assert image.short_id == busybox[:19]
    assert image.attrs["Os"] == "linux"
    assert client.images.list(filters={"reference": "busybox"})[0].id == busybox
    assert client.images.list(filters={"reference": "nomatch"}) == []


def test_missing_image(client):
    with pytest.raises(docker.errors.ImageNotFound) as err:
        client.images.get("nosuch:1")
    assert "No such image: nosuch:1" in str(err.value)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.remove("nosuch:1")


def test_tag_and_remove(client, busybox):
    image = client.images.get(busybox)
    assert image.tag("example/bb", "v1") is True
    assert client.images.get("example/bb:v1").id == busybox
    assert sorted(client.images.get(busybox).tags) == ["busybox:latest", "example/bb:v1"]
    client.images.remove("example/bb:v1")
    assert client.images.get(busybox).tags == ["busybox:latest"]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("example/bb:v1")


def test_save_and_load(client, busybox):
    archive = b"".join(client.images.get("busybox").save(named=True))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    client.images.remove("busybox")
    assert client.images.list() == []
    [loaded] = client.images.load(archive)
    assert loaded.id == busybox
    assert loaded.tags == ["busybox:latest"]


def test_load_error_is_raised(client):
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load(b"not an image archive")
    assert client.images.list() == []


def test_prune_and_df(client, busybox):
    df = client.df()
    assert [i["Id"] for i in df["Images"]] == [busybox]
    assert df["LayersSize"] > 0
    # Tagged images survive a dangling-only prune.
    assert client.images.prune()["SpaceReclaimed"] == 0
    assert client.images.get(busybox)
    report = client.images.prune(filters={"dangling": False})
    assert {"Deleted": busybox} in report["ImagesDeleted"]
    assert client.images.list() == []
