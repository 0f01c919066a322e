"""The archive endpoints (docker cp), export, changes and commit over raw HTTP
and docker-py, on stopped and running containers."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import os
import tarfile
import time
import urllib.parse

import pytest
import zstandard

from archivekit import make_tar, post_json, read_tar


def path_stat(reply) -> dict:
    return json.loads(base64.b64decode(reply.headers["X-Docker-Container-Path-Stat"]))


def q(path: str) -> str:
    return urllib.parse.quote(path, safe="")


@pytest.fixture
def stopped(client, busybox):
    """A created (never started) container with a named volume at /vol."""
    c = client.containers.create("busybox", ["sh"], name="stopped", volumes=["cpvol:/vol"])
    yield c
    c.remove(force=True, v=True)


@pytest.fixture
def running(client, busybox, workdir):
    """A running container with a tmpfs at /run/t and a host bind at /hostdir."""
    host = workdir / "hostdir"
    host.mkdir()
    (host / "from-host").write_text("host file\n")
    c = client.containers.run("busybox", ["sh", "-c", "echo live > /run/t/live; exec sleep 600"],
                              name="running", detach=True, tmpfs={"/run/t": "size=1m"},
                              volumes=[f"{host}:/hostdir:ro", "runvol:/vol"])
    # The command writes /run/t/live before sleeping: wait for it through the API.
    for _ in range(200):
        if c.exec_run(["test", "-e", "/run/t/live"]).exit_code == 0:
            break
    yield c
    c.remove(force=True, v=True)


# -- HEAD / GET ---------------------------------------------------------------------------

def test_stat_of_a_file_a_directory_and_a_symlink(api, stopped):
    reply = api.request("HEAD", f"/containers/stopped/archive?path={q('/etc/passwd')}")
    assert reply.status == 200 and reply.body == b""
    st = path_stat(reply)
    assert st["name"] == "passwd" and st["size"] == 116 and st["mode"] == 0o644
    assert st["mtime"] == "1970-01-01T00:00:00Z" and st["linkTarget"] == ""
    st = path_stat(api.request("HEAD", "/containers/stopped/archive?path=/etc"))
    assert st["mode"] == (1 << 31) | 0o755
    st = path_stat(api.request("HEAD", "/v1.41/containers/stopped/archive?path=/bin/sh"))
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/bin/busybox"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_missing_path_and_container(api, stopped, method):
    reply = api.request(method, "/containers/stopped/archive?path=/no/such")
    assert reply.status == 404
    if method == "GET":
        assert reply.json() == {"message": "Could not find the file /no/such in container stopped"}
    reply = api.request(method, "/containers/nobody/archive?path=/etc")
    assert reply.status == 404
    reply = api.request(method, "/containers/stopped/archive")
    assert reply.status == 400
    if method == "GET":
        assert reply.json() == {"message": "bad parameter: path cannot be empty"}


def test_get_from_a_stopped_container_sees_its_volume(api, stopped, daemon):
    (daemon.root / "volumes/cpvol/_data/in-volume.txt").write_text("volume data\n")
    reply = api.get("/containers/stopped/archive?path=/vol")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/x-tar"
    members = read_tar(reply.body)
    assert sorted(members) == ["vol", "vol/in-volume.txt"]
    assert path_stat(reply)["name"] == "vol"
    tar = tarfile.open(fileobj=io.BytesIO(reply.body))
    assert tar.extractfile("vol/in-volume.txt").read() == b"volume data\n"


def test_get_from_a_running_container_sees_its_mounts(api, running):
    members = read_tar(api.get("/containers/running/archive?path=/run/t/live").body)
    assert list(members) == ["live"]
    reply = api.get("/containers/running/archive?path=/hostdir/.")
    assert sorted(read_tar(reply.body)) == [".", "./from-host"]
    reply = api.get("/containers/running/archive?path=/etc/hostname")
    tar = tarfile.open(fileobj=io.BytesIO(reply.body))
    assert tar.extractfile("hostname").read().strip() == running.id[:12].encode()


def test_get_of_the_root_does_not_walk_into_proc(api, running):
    names = read_tar(api.get("/containers/running/archive?path=/").body)
    assert "/bin/busybox" in names and "/proc" in names
    assert not any(n.startswith("/proc/") or n.startswith("/sys/") for n in names)


# -- PUT ----------------------------------------------------------------------------------

def test_put_into_a_stopped_container_then_run_it(api, client, stopped):
    tar = make_tar({"copied": None, "copied/hello.txt": b"copied in\n"})
    reply = api.request("PUT", "/containers/stopped/archive?path=/tmp", body=tar)
    assert reply.status == 200
    reply = api.request("PUT", "/containers/stopped/archive?path=/vol&noOverwriteDirNonDir=1",
                        body=make_tar({"v.txt": b"into the volume\n"}))
    assert reply.status == 200
    out = client.containers.run("busybox", ["cat", "/vol/v.txt"], volumes=["cpvol:/vol"], remove=True)
    assert out == b"into the volume\n"
    stopped.start()
    assert stopped.wait()["StatusCode"] == 0
    st = path_stat(api.request("HEAD", "/containers/stopped/archive?path=/tmp/copied/hello.txt"))
    assert st["size"] == 10


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress,
                                      lambda data: zstandard.ZstdCompressor().compress(data)],
                         ids=["gzip", "bzip2", "xz", "zstd"])
def test_put_into_a_running_container(api, running, compress):
    body = compress(make_tar({"packed.txt": b"compressed stream\n"}))
    assert api.request("PUT", "/containers/running/archive?path=/run/t", body=body).status == 200
    reply = api.get("/containers/running/archive?path=/run/t/packed.txt")
    tar = tarfile.open(fileobj=io.BytesIO(reply.body))
    assert tar.extractfile("packed.txt").read() == b"compressed stream\n"
    # The container sees it too (its exit status says so: `test` prints nothing).
    assert running.exec_run(["grep", "-qx", "compressed stream", "/run/t/packed.txt"]).exit_code == 0


def test_put_with_copy_uid_gid(api, client, busybox):
    c = client.containers.create("busybox", ["sh"], user="nobody")
    try:
        tar = make_tar({"mine.txt": b"x"}, owner=(4242, 4242))
        assert api.request("PUT", f"/containers/{c.id}/archive?path=/tmp&copyUIDGID=1",
                           body=tar).status == 200
        assert api.request("PUT", f"/containers/{c.id}/archive?path=/&copyUIDGID=0",
                           body=tar).status == 200
        reply = api.get(f"/containers/{c.id}/archive?path=/tmp/mine.txt")
        m = read_tar(reply.body)["mine.txt"]
        assert (m.uid, m.gid) == (65534, 65534)     # nobody:nogroup of the container
        m = read_tar(api.get(f"/containers/{c.id}/archive?path=/mine.txt").body)["mine.txt"]
        assert (m.uid, m.gid) == (4242, 4242)       # the archive's own owners
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("path, body, status, message", [
    ("/etc/passwd", make_tar({"x": b"x"}), 400, "extraction point is not a directory"),
    ("/no/such/dir", make_tar({"x": b"x"}), 404, "Could not find the file /no/such/dir in container stopped"),
    ("/tmp", make_tar({"../../escape": b"x"}), 400, "invalid tar entry '../../escape'"),
    ("/tmp", b"this is not a tar archive at all" * 40, 400, "invalid tar archive"),
    ("/tmp", gzip.compress(b"truncated")[:10], 400, "invalid archive: cannot decompress it"),
    ("/etc", make_tar({"passwd": None}), 200, None),
])
def test_put_refusals(api, stopped, path, body, status, message):
    before = read_tar(api.get("/containers/stopped/archive?path=/").body)
    reply = api.request("PUT", f"/containers/stopped/archive?path={q(path)}&noOverwriteDirNonDir=1"
                        if status != 200 else f"/containers/stopped/archive?path={q(path)}",
                        body=body)
    if status == 200:
        # Without noOverwriteDirNonDir a file may become a directory (Docker's rule).
        assert reply.status == 200
        return
    assert reply.status == status
    assert reply.json()["message"].startswith(message)
    after = read_tar(api.get("/containers/stopped/archive?path=/").body)
    assert sorted(after) == sorted(before)


def test_put_no_overwrite_dir_non_dir(api, stopped):
    reply = api.request("PUT", "/containers/stopped/archive?path=/&noOverwriteDirNonDir=true",
                        body=make_tar({"etc": b"a file where a directory is"}))
    assert reply.status == 400
    assert reply.json()["message"] == "cannot overwrite directory '/etc' with non-directory"


def test_symlink_escape_writes_nothing_outside(api, stopped, workdir):
    outside = workdir / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("esc")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        root = tarfile.TarInfo("rootlink")
        root.type, root.linkname = tarfile.SYMTYPE, "/"
        tar.addfile(root)
        for name in ("rootlink" + str(outside) + "/via-root", "esc/via-link"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    reply = api.request("PUT", "/containers/stopped/archive?path=/tmp", body=buf.getvalue())
    assert reply.status == 200
    assert os.listdir(outside) == []
    inside = read_tar(api.get(f"/containers/stopped/archive?path={q(str(outside))}").body)
    assert sorted(n.rsplit("/", 1)[-1] for n in inside) == ["outside", "via-link", "via-root"]


def test_read_only_volume_and_rootfs(api, client, busybox):
    c = client.containers.create("busybox", ["sh"], volumes=["rovol:/ro:ro"], read_only=True)
    try:
        reply = api.request("PUT", f"/containers/{c.id}/archive?path=/ro", body=make_tar({"x": b"x"}))
        assert reply.status == 400
        assert reply.json() == {"message": "mounted volume is marked read-only"}
        reply = api.request("PUT", f"/containers/{c.id}/archive?path=/tmp", body=make_tar({"x": b"x"}))
        assert reply.status == 400
        assert reply.json() == {"message": "container rootfs is marked read-only"}
    finally:
        c.remove(force=True, v=True)


def test_docker_py_get_and_put_archive(client, stopped):
    assert stopped.put_archive("/root", make_tar({"py.txt": b"from docker-py\n"}))
    stream, st = stopped.get_archive("/root/py.txt")
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    assert tar.extractfile("py.txt").read() == b"from docker-py\n"
    assert st["name"] == "py.txt" and st["size"] == 15
    docker = pytest.importorskip("docker")
    with pytest.raises(docker.errors.NotFound):
        stopped.get_archive("/nope")


# -- export, changes, commit ------------------------------------------------------------------

def test_export(api, client, busybox):
    c = client.containers.run("busybox", ["sh", "-c", "echo e > /exported; rm /etc/group"],
                              volumes=["expvol:/vol"], detach=True)
    try:
        c.wait()
        client.containers.run("busybox", ["touch", "/vol/in-volume"], volumes=["expvol:/vol"],
                              remove=True)
        reply = api.get(f"/containers/{c.id}/export")
        assert reply.status == 200
        names = read_tar(reply.body)
        assert "exported" in names and "bin/busybox" in names and "etc/passwd" in names
        assert "etc/group" not in names                # deleted in the container
        assert not any("in-volume" in n for n in names)  # volumes are not exported
        assert api.get("/containers/nope/export").status == 404
    finally:
        c.remove(force=True, v=True)


def test_changes(api, client, busybox):
    c = client.containers.run("busybox", ["sh", "-c",
                                          "echo x >> /etc/passwd; rm /etc/group; mkdir /added; "
                                          "touch /added/f"], detach=True)
    try:
        c.wait()
        reply = api.get(f"/containers/{c.id}/changes")
        assert reply.status == 200
        assert reply.json() == [{"Path": "/added", "Kind": 1}, {"Path": "/added/f", "Kind": 1},
                                {"Path": "/etc", "Kind": 0}, {"Path": "/etc/group", "Kind": 2},
                                {"Path": "/etc/passwd", "Kind": 0}]
        assert c.diff() == reply.json()
    finally:
        c.remove(force=True)


def test_changes_of_a_fresh_container_are_empty(api, client, busybox):
    c = client.containers.run("busybox", ["true"], detach=True)
    try:
        c.wait()
        reply = api.get(f"/containers/{c.id}/changes")
        assert reply.status == 200 and reply.json() is None
    finally:
        c.remove(force=True)


def test_commit(api, client, busybox):
    c = client.containers.run("busybox", ["sh", "-c", "echo committed > /state"], detach=True)
    try:
        c.wait()
        reply = api.post(f"/commit?container={c.id}&repo=snap&tag=one&comment=a+note&author=me"
                         "&changes=ENV%20MODE%3Dsnap&changes=CMD%20%5B%22cat%22%2C%22%2Fstate%22%5D")
        assert reply.status == 201
        image_id = reply.json()["Id"]
        image = client.images.get("snap:one")
        assert image.id == image_id
        assert image.attrs["Comment"] == "a note" and image.attrs["Author"] == "me"
        assert image.attrs["Config"]["Cmd"] == ["cat", "/state"]
        assert "MODE=snap" in image.attrs["Config"]["Env"]
        assert image.attrs["Parent"] == busybox
        assert len(image.attrs["RootFS"]["Layers"]) == 2
        assert client.containers.run("snap:one", remove=True) == b"committed\n"
        history = image.history()
        assert history[0]["Comment"] == "a note"
        assert history[0]["CreatedBy"] == "sh -c echo committed > /state"
        events = api.get(f"/events?since=0&until={time.time():.9f}").json_lines()
        commit = [e for e in events if e["Type"] == "container" and e["Action"] == "commit"]
        assert commit[0]["Actor"]["ID"] == c.id
        assert commit[0]["Actor"]["Attributes"]["imageID"] == image_id
        assert commit[0]["Actor"]["Attributes"]["imageRef"] == "snap:one"
    finally:
        c.remove(force=True)


def last_layer(client, image) -> dict[str, tarfile.TarInfo]:
    saved = tarfile.open(fileobj=io.BytesIO(b"".join(client.images.get(image).save())))
    manifest = json.load(saved.extractfile("manifest.json"))
    return read_tar(saved.extractfile(manifest[0]["Layers"][-1]).read())


@pytest.mark.parametrize("started", [False, True])
def test_commit_of_an_unchanged_container_adds_no_layer(api, client, busybox, started):
    c = client.containers.create("busybox", ["true"])
    try:
        if started:
            c.start()
            c.wait()   # the runtime made /etc/hosts & co. in the upper dir: not changes
        image_id = api.post(f"/commit?container={c.id}").json()["Id"]
        attrs = client.images.get(image_id).attrs
        assert len(attrs["RootFS"]["Layers"]) == 1
        assert client.images.get(image_id).history()[0]["Size"] == 0
    finally:
        c.remove(force=True)


def test_committed_layer_holds_the_changes_only(api, client, busybox):
    c = client.containers.run("busybox", ["sh", "-c", "echo n > /etc/new.conf; rm /etc/group"],
                              detach=True)
    try:
        c.wait()
        image_id = api.post(f"/commit?container={c.id}&repo=layered").json()["Id"]
        layer = last_layer(client, image_id)
        assert sorted(layer) == ["etc", "etc/.wh.group", "etc/new.conf"]
    finally:
        c.remove(force=True)


def test_commit_a_running_container_with_a_config_body(api, client, running):
    body = {"Cmd": ["cat", "/marker"], "Labels": {"committed": "yes"}}
    running.exec_run(["sh", "-c", "echo live-commit > /marker"])
    reply = post_json(api, f"/commit?container=running&repo=live", body)
    assert reply.status == 201
    assert running.reload() is None and running.status == "running"   # paused, then unpaused
    out = client.containers.run("live", remove=True)
    assert out == b"live-commit\n"
    assert client.images.get("live").attrs["Config"]["Labels"] == {"committed": "yes"}


@pytest.mark.parametrize("query, status, message", [
    ("", 400, "missing query parameter 'container': the container to commit"),
    ("container=ghost", 404, "No such container: ghost"),
    ("container=stopped&repo=Bad%20Name", 400, None),
    ("container=stopped&changes=RUN%20rm%20-rf%20%2F", 400, None),
])
def test_commit_refusals(api, stopped, query, status, message):
    before = api.get("/images/json").json()
    reply = api.post(f"/commit?{query}")
    assert reply.status == status
    if message:
        assert reply.json() == {"message": message}
    assert api.get("/images/json").json() == before
