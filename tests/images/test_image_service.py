"""ImageService behaviour as the daemon's users see it: list and filters,
inspect, history, tag, rmi with Docker's conflict rules, prune, gc, df,
register_image (pull/build), events and concurrent use."""

import io
import os
import threading
import time
from pathlib import Path

import pytest

from berth import _native
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.images import LayerBlob
from berth.images.service import _is_single_reference
from berth.images.reference import parse_normalized

from imagekit import (docker_save_archive, hex_of, image_config, layer_tar, make_image, sha256,
                      store_is_empty)

BASE = {"bin": None, "bin/sh": b"#!" + b"s" * 4000, "etc": None, "etc/hostname": "base\n"}


def load(service, *images, legacy=True):
    return service.load(io.BytesIO(docker_save_archive(list(images), legacy=legacy)))


@pytest.fixture
def base_and_app(service):
    base = make_image([BASE], tags=["base:1"], labels={"tier": "base"},
                      created="2024-01-01T00:00:00Z")
    app = make_image([BASE, {"app": "x" * 1000}], tags=["app:latest"], labels={"tier": "app"},
                     created="2024-06-01T00:00:00Z")
    load(service, base, app)
    return base, app


def blob_and_snapshot_names(service):
    return (sorted(b.digest for b in service.content.walk()),
            sorted(os.listdir(service.snapshots.root)))


# -- resolve ------------------------------------------------------------------------

def test_resolve_every_way_docker_does(service, base_and_app):
    base, app = base_and_app
    for name in ("app", "app:latest", "docker.io/library/app:latest", app.id, hex_of(app.id),
                 hex_of(app.id)[:12], "sha256:" + hex_of(app.id)[:10]):
        assert service.resolve(name) == app.id, name
    service.add_repo_digest(app.id, "localhost:5000/app@" + sha256(b"manifest"))
    assert service.resolve("localhost:5000/app@" + sha256(b"manifest")) == app.id
    with pytest.raises(NotFound, match=r"^No such image: app:v9$"):
        service.resolve("app:v9")
    with pytest.raises(NotFound, match=r"^No such image: nothere:latest$"):
        service.resolve("nothere")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        service.resolve("in valid")


def test_ambiguous_id_prefix_finds_nothing(service):
    ids = []
    for i in range(40):
        ids.append(service.import_image(io.BytesIO(layer_tar({"f": str(i)})), f"i{i}"))
    first = {i[7] for i in ids}
    shared = next(c for c in first if sum(1 for i in ids if i[7] == c) > 1)
    with pytest.raises(NotFound):
        service.resolve(shared)


# -- list -----------------------------------------------------------------------------

def test_list_summaries_and_filters(service, base_and_app):
    base, app = base_and_app
    dangling = make_image([{"d": "1"}], created="2023-01-01T00:00:00Z")
    load(service, dangling)
    summaries = service.list()
    assert [s["Id"] for s in summaries] == [app.id, base.id, dangling.id]
    s = summaries[0]
    assert list(s) == ["Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size",
                       "SharedSize", "VirtualSize", "Labels", "Containers"]
    assert s["RepoTags"] == ["app:latest"] and s["RepoDigests"] == []
    assert s["Created"] == 1717200000 and s["Labels"] == {"tier": "app"}
    assert s["Size"] == s["VirtualSize"] == 4002 + 5 + 1000
    assert (s["SharedSize"], s["Containers"]) == (-1, -1)
    assert summaries[2]["RepoTags"] == ["<none>:<none>"]
    assert summaries[2]["RepoDigests"] == ["<none>@<none>"]

    def ids(**filters):
        return [s["Id"] for s in service.list(filters=filters)]

    assert ids(dangling=["true"]) == [dangling.id]
    assert ids(dangling=["false"]) == [app.id, base.id]
    assert ids(label=["tier"]) == [app.id, base.id]
    assert ids(label=["tier=base"]) == [base.id]
    assert ids(reference=["app"]) == [app.id]
    assert ids(reference=["*:1"]) == [base.id]
    assert ids(before=["app"]) == [base.id, dangling.id]
    assert ids(since=["base:1"]) == [app.id]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        service.list(filters={"colour": ["red"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        service.list(filters={"dangling": ["maybe"]})
    with pytest.raises(NotFound, match="No such image: ghost:latest"):
        service.list(filters={"since": ["ghost"]})


def test_reference_filter_shows_only_matching_tags(service, base_and_app):
    base, app = base_and_app
    service.tag("app", "registry.local/app", "1")
    [s] = service.list(filters={"reference": ["registry.local/*"]})
    assert s["RepoTags"] == ["registry.local/app:1"]


# -- inspect / history / register_image -------------------------------------------

def _register_layer(service, workdir, files, name):
    src = workdir / f"src-{name}"
    src.mkdir()
    for rel, content in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(content)
    out = workdir / f"{name}.tar.gz"
    packed = _native.pack_layer(str(src), str(out), compression="gzip")
    with open(out, "rb") as f:
        service.content.ingest(f, expected=packed["digest"])
    return LayerBlob(packed["digest"], "application/vnd.oci.image.layer.v1.tar+gzip",
                     packed["size"], packed["diff_id"])


def test_register_built_images_with_parents_and_history(service, workdir, events):
    l1 = _register_layer(service, workdir, {"etc/base": "1"}, "l1")
    l2 = _register_layer(service, workdir, {"app/bin": "22"}, "l2")
    t0 = "2024-03-01T10:00:00Z"
    hist1 = [{"created": t0, "created_by": "ADD rootfs.tar /"}]
    parent_cfg = image_config([l1.diff_id], history=hist1, created=t0)
    parent = service.register_image(parent_cfg, [l1])
    hist2 = hist1 + [{"created": "2024-03-01T10:00:01Z", "created_by": "ENV A=1", "empty_layer": True},
                     {"created": "2024-03-01T10:00:02Z", "created_by": "COPY app /app"}]
    child_cfg = image_config([l1.diff_id, l2.diff_id], history=hist2, created="2024-03-01T10:00:02Z")
    child = service.register_image(child_cfg, [l1, l2], parent=parent, tags=["built:1"])
    assert events.actions()[-1] == ("tag", "built:1")

    info = service.inspect("built:1")
    assert info["Parent"] == parent and info["Id"] == child
    assert info["Created"] == "2024-03-01T10:00:02Z"
    lower, upper = info["GraphDriver"]["Data"]["LowerDir"], info["GraphDriver"]["Data"]["UpperDir"]
    assert Path(upper, "app/bin").read_text() == "22" and Path(lower, "etc/base").read_text() == "1"
    assert service.lowerdirs(child) == [upper, lower]

    history = service.history("built:1")
    assert [(h["Id"], h["CreatedBy"], h["Size"], h["Tags"]) for h in history] == [
        (child, "COPY app /app", 2, ["built:1"]),
        (parent, "ENV A=1", 0, None),        # Docker's quirk: one entry per parent image
        ("<missing>", "ADD rootfs.tar /", 1, None),
    ]
    # The parent is an intermediate image: hidden unless all=True.
    assert [s["Id"] for s in service.list()] == [child]
    assert {s["Id"] for s in service.list(all=True)} == {child, parent}
    assert service.list(all=True, filters={"dangling": ["true"]}) == []

    with pytest.raises(InvalidArgument, match="rootfs.diff_ids do not match"):
        service.register_image(child_cfg, [l1])
    missing = LayerBlob(sha256(b"nope"), l1.media_type, 4, sha256(b"nope-diff"))
    with pytest.raises(NotFound, match="blob not found"):
        service.register_image(image_config([missing.diff_id]), [missing])


def test_inspect_shape(service, base_and_app):
    base, _ = base_and_app
    info = service.inspect("base:1")
    assert list(info) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created",
                          "Container", "ContainerConfig", "DockerVersion", "Author", "Config",
                          "Architecture", "Os", "Size", "VirtualSize", "GraphDriver", "RootFS",
                          "Metadata"]
    assert info["Created"] == "2024-01-01T00:00:00Z"
    assert info["Config"]["Labels"] == {"tier": "base"} and info["Config"]["Cmd"] is None
    assert info["Config"]["Env"][0].startswith("PATH=")
    assert info["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    service.add_repo_digest("base:1", "docker.io/library/base@" + sha256(b"m"))
    assert service.inspect(base.id)["RepoDigests"] == ["base@" + sha256(b"m")]


# -- tag ----------------------------------------------------------------------------

def test_tag_and_retag(service, base_and_app, events):
    base, app = base_and_app
    assert service.tag("base:1", "myrepo/base", "stable") == "myrepo/base:stable"
    assert service.tag(base.id[:15], "localhost:5000/base:v1") == "localhost:5000/base:v1"
    assert service.tag("base:1", "plain") == "plain:latest"
    assert service.inspect(base.id)["RepoTags"] == [
        "base:1", "localhost:5000/base:v1", "myrepo/base:stable", "plain:latest"]
    # A tag moves from one image to another.
    service.tag("app", "plain")
    assert service.resolve("plain") == app.id
    assert ("tag", "plain:latest") in events.actions()
    tag_events = [e for e in events.history() if e["Action"] == "tag"]
    assert tag_events[-1]["Actor"]["Attributes"] == {"name": "plain:latest", "tier": "app"}


@pytest.mark.parametrize("repo, tag, error, message", [
    ("x@sha256:" + "a" * 64, None, InvalidArgument, "refusing to create a tag with a digest reference"),
    ("sha256", "abc", InvalidArgument, "ambiguous tag using digest algorithm as name"),
    ("UPPER", None, InvalidArgument, "must be lowercase"),
    ("ok", "bad tag", InvalidArgument, "invalid tag format"),
])
def test_tag_errors(service, base_and_app, repo, tag, error, message):
    with pytest.raises(error, match=message):
        service.tag("base:1", repo, tag)


def test_tag_missing_source(service):
    with pytest.raises(NotFound, match="No such image: ghost:latest"):
        service.tag("ghost", "x")


# -- rmi ------------------------------------------------------------------------------

def test_untag_one_of_several_tags(service, base_and_app):
    base, _ = base_and_app
    service.tag("base:1", "base", "2")
    assert service.remove("base:2") == [{"Untagged": "base:2"}]
    assert service.resolve("base:1") == base.id


def test_remove_last_tag_deletes_image_and_unshared_layers(service, base_and_app, events):
    base, app = base_and_app
    blobs_before, snaps_before = blob_and_snapshot_names(service)
    records = service.remove("app")
    chains = service.layer_chain_ids(base.id)
    app_top_chain = _native.Sha256(f"{chains[0]} {app.diff_ids[1]}".encode()).hexdigest()
    assert records == [{"Untagged": "app:latest"}, {"Deleted": app.id},
                       {"Deleted": "sha256:" + app_top_chain}]
    blobs, snaps = blob_and_snapshot_names(service)
    assert set(blobs_before) - set(blobs) == {app.id, sha256(app.layers[1])}
    assert set(snaps_before) - set(snaps) == {app_top_chain}
    assert [a for a, _ in events.actions()][-2:] == ["untag", "delete"]
    delete = [e for e in events.history() if e["Action"] == "delete"][-1]
    assert delete["Actor"]["ID"] == app.id and delete["Actor"]["Attributes"]["tier"] == "app"
    # The last image takes everything with it.
    service.remove("base:1")
    assert store_is_empty(Path(service.config.root))


def test_remove_by_id_with_several_tags_needs_force(service, base_and_app):
    base, _ = base_and_app
    service.tag("base:1", "other")
    with pytest.raises(Conflict) as err:
        service.remove(base.id[7:19])
    assert err.value.message == (f"conflict: unable to delete {base.id[7:19]} (must be forced)"
                                 " - image is referenced in multiple repositories")
    records = service.remove(base.id[7:19], force=True)
    assert records[:3] == [{"Untagged": "base:1"}, {"Untagged": "other:latest"}, {"Deleted": base.id}]


def test_remove_by_id_with_one_tag_untags_and_deletes(service, base_and_app):
    base, _ = base_and_app
    assert service.remove(base.id)[:2] == [{"Untagged": "base:1"}, {"Deleted": base.id}]


def test_remove_with_containers(service, base_and_app):
    base, app = base_and_app
    users = {app.id: [("c0ffee" * 10 + "abcd", True)], base.id: [("deadbeef" * 8, False)]}
    service.set_image_users(lambda image_id: users.get(image_id, []))
    roots = set()
    service.add_gc_root(lambda: roots)

    with pytest.raises(Conflict, match=r'unable to remove repository reference "app" \(must force\)'
                                       r' - container c0ffeec0ffee is using its referenced image'):
        service.remove("app")
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running "
                                       r"container c0ffeec0ffee"):
        service.remove(app.id, force=True)
    # By ID, a stopped container is a soft conflict...
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is being used by stopped "
                                       r"container deadbeefdead"):
        service.remove(base.id)
    # ... which force overrides; the container's layers (its gc roots) survive.
    roots.update(service.layer_chain_ids(base.id))
    records = service.remove(base.id, force=True)
    assert records == [{"Untagged": "base:1"}, {"Deleted": base.id}]
    assert os.path.isdir(service.snapshots.path(service.layer_chain_ids(app.id)[0]))
    df = service.df()
    assert [i["Containers"] for i in df["Images"]] == [1]


def test_children_and_pruning_of_parents(service, workdir):
    layer = _register_layer(service, workdir, {"f": "1"}, "l1")
    layer2 = _register_layer(service, workdir, {"g": "2"}, "l2")
    parent = service.register_image(image_config([layer.diff_id]), [layer])
    child = service.register_image(image_config([layer.diff_id, layer2.diff_id]), [layer, layer2],
                                   parent=parent, tags=["child:1"])
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image has dependent child images"):
        service.remove(parent, force=True)
    records = service.remove("child:1", noprune=True)
    assert {"Deleted": parent} not in records and service.resolve(parent) == parent
    # Rebuild the child (its own layer blob went with it); without noprune
    # its untagged parent goes too.
    assert not service.content.exists(layer2.digest)
    layer2 = _register_layer(service, workdir, {"g": "2"}, "l2-again")
    child = service.register_image(image_config([layer.diff_id, layer2.diff_id]), [layer, layer2],
                                   parent=parent, tags=["child:1"])
    records = service.remove("child:1")
    assert [r for r in records if "Deleted" in r][0] == {"Deleted": child}
    assert {"Deleted": parent} in records
    assert service.list(all=True) == []


def test_untagging_the_last_tag_drops_the_repositorys_digests(service, base_and_app):
    base, _ = base_and_app
    digest_ref = "docker.io/library/base@" + sha256(b"m")
    service.add_repo_digest("base:1", digest_ref)
    service.tag("base:1", "keep")
    assert service.remove("base:1") == [{"Untagged": "base:1"},
                                        {"Untagged": "base@" + sha256(b"m")}]
    assert service.inspect("keep")["RepoDigests"] == []


def test_is_single_reference_rules():
    refs = [parse_normalized(r) for r in ("a:1", "a@" + sha256(b"x"), "a@" + sha256(b"y"))]
    assert _is_single_reference(refs)
    assert not _is_single_reference(refs + [parse_normalized("a:2")])
    assert not _is_single_reference([parse_normalized("a:1"), parse_normalized("b@" + sha256(b"x"))])
    assert not _is_single_reference([])


def test_remove_missing_image(service):
    with pytest.raises(NotFound, match="No such image: ghost:latest"):
        service.remove("ghost")


# -- prune / gc / df ----------------------------------------------------------------

def test_prune_dangling_then_all(service, base_and_app, events):
    base, app = base_and_app
    dangling = make_image([{"big": "z" * 50_000}], created="2020-01-01T00:00:00Z")
    load(service, dangling)
    report = service.prune()
    assert report["ImagesDeleted"] == [{"Deleted": dangling.id},
                                       {"Deleted": "sha256:" + hex_of(dangling.diff_ids[0])}]
    assert report["SpaceReclaimed"] >= 50_000 + len(dangling.layers[0])
    assert events.history()[-1]["Action"] == "prune"
    assert events.history()[-1]["Actor"]["Attributes"] == {"reclaimed": str(report["SpaceReclaimed"])}
    assert service.prune() == {"ImagesDeleted": None, "SpaceReclaimed": 0}

    assert service.prune(all=True, filters={"label": ["tier=app"]})["ImagesDeleted"][0] == \
        {"Untagged": "app:latest"}
    assert [s["Id"] for s in service.list()] == [base.id]
    assert service.prune(all=True, filters={"until": ["2023-01-01T00:00:00Z"]})["ImagesDeleted"] is None
    assert service.prune(all=True, filters={"label!": ["tier=base"]})["ImagesDeleted"] is None
    report = service.prune(filters={"dangling": ["false"]})
    assert {"Deleted": base.id} in report["ImagesDeleted"]
    assert store_is_empty(Path(service.config.root))
    with pytest.raises(InvalidArgument, match="invalid filter 'reference'"):
        service.prune(filters={"reference": ["x"]})


def test_prune_keeps_images_used_by_containers(service, base_and_app):
    base, app = base_and_app
    service.set_image_users(lambda image_id: [("c1" * 32, False)] if image_id == app.id else [])
    report = service.prune(all=True)
    assert report["ImagesDeleted"][:2] == [{"Untagged": "base:1"}, {"Deleted": base.id}]
    assert [s["Id"] for s in service.list()] == [app.id]


def test_gc_removes_only_unreferenced_content(service, base_and_app, root):
    base, app = base_and_app
    keep_blobs, keep_snaps = blob_and_snapshot_names(service)
    # Garbage: an orphan blob, an unregistered snapshot dir, a half-unpacked
    # temp dir, a stale spool file and a crash-leftover ingest.
    orphan = service.content.ingest(b"orphan" * 1000)
    os.makedirs(root / "snapshots" / ("cd" * 32) / "usr")
    os.makedirs(root / "snapshots" / "tmp-0123" / "etc")
    stale = root / "tmp" / "api-upload-old"
    stale.write_bytes(b"s" * 10)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = root / "tmp" / "api-upload-new"
    fresh.write_bytes(b"f")
    (root / "content" / "ingest" / "crashed").write_bytes(b"p" * 20)
    os.utime(root / "content" / "ingest" / "crashed", (time.time() - 7200, time.time() - 7200))

    freed = service.gc()
    assert freed >= 6000 + 10 + 20
    assert not service.content.exists(orphan.digest)
    assert blob_and_snapshot_names(service) == (keep_blobs, keep_snaps)
    assert os.listdir(root / "tmp") == ["api-upload-new"]
    assert os.listdir(root / "content" / "ingest") == []
    # Everything an image needs is still there.
    assert Path(service.lowerdirs(app.id)[0], "app").exists()
    assert service.gc() == 0


def test_gc_roots_protect_content(service, base_and_app):
    base, app = base_and_app
    chains = service.layer_chain_ids(app.id)
    service.add_gc_root(lambda: set(chains))
    # Delete the image rows behind the service's back: only the roots hold the layers now.
    service.db.execute("DELETE FROM images")
    service.gc()
    assert all(os.path.isdir(service.snapshots.path(c)) for c in chains)
    assert not service.content.exists(app.id)


def test_df_shared_sizes(service, base_and_app):
    base, app = base_and_app
    df = service.df()
    base_size = 4002 + 5
    assert df["LayersSize"] == base_size + 1000
    by_id = {i["Id"]: i for i in df["Images"]}
    assert by_id[app.id]["SharedSize"] == base_size and by_id[app.id]["UniqueSize"] == 1000
    assert by_id[base.id]["SharedSize"] == base_size and by_id[base.id]["UniqueSize"] == 0
    assert by_id[app.id]["Containers"] == 0


# -- concurrency --------------------------------------------------------------------

def _run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_imports_of_the_same_and_different_layers(service, busybox_rootfs):
    data = busybox_rootfs.read_bytes()

    def work(i):
        service.import_image(io.BytesIO(data), f"same:{i}")
        service.import_image(io.BytesIO(layer_tar({"n": str(i)})), f"diff:{i}")

    assert _run_threads(work, 6) == []
    assert len(service.list()) == 12  # every import has its own created time, so its own ID
    assert len({tuple(service.layer_chain_ids(s["Id"])) for s in service.list()}) == 7
    assert len(os.listdir(service.snapshots.root)) == 7


def test_concurrent_load_remove_and_gc_keep_images_whole(service):
    images = [make_image([BASE, {f"layer{i}": "x" * (i + 1)}], tags=[f"img:{i}"]) for i in range(4)]
    archives = [docker_save_archive([img]) for img in images]
    stop = threading.Event()

    def churn(i):
        for _ in range(5):
            service.load(io.BytesIO(archives[i]))
            service.remove(f"img:{i}")
        service.load(io.BytesIO(archives[i]))

    gc_errors = []

    def collector():
        try:
            while not stop.is_set():
                service.gc(ingest_max_age=0)
        except Exception as e:  # noqa: BLE001
            gc_errors.append(e)

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    try:
        errors = _run_threads(churn, 4)
    finally:
        stop.set()
        gc_thread.join()
    assert errors == [] and gc_errors == []
    for img in images:
        dirs = service.lowerdirs(img.id)
        assert [sorted(os.listdir(d)) for d in dirs][-1] == ["bin", "etc"]
        for digest in [img.id, *(sha256(b) for b in img.layers)]:
            assert service.content.exists(digest)
    service.gc(ingest_max_age=0)
    assert len(os.listdir(service.snapshots.root)) == 5


def test_concurrent_tagging(service, base_and_app):
    base, app = base_and_app

    def work(i):
        for j in range(10):
            service.tag("base:1" if j % 2 else "app", f"t{i}", str(j))

    assert _run_threads(work, 5) == []
    tags = service.inspect("base:1")["RepoTags"] + service.inspect("app")["RepoTags"]
    assert len(tags) == 2 + 50


# -- start-up reconciliation -------------------------------------------------------

def test_restart_repairs_what_a_crash_left(service, base_and_app, root, events):
    from berth.config import Config
    from berth.images import ImageService

    base, app = base_and_app
    chains = service.layer_chain_ids(app.id)
    service.close()
    # A crash mid-unpack, one mid-remove, and a snapshot directory lost.
    os.makedirs(root / "snapshots" / "tmp-halfway" / "usr")
    os.makedirs(root / "snapshots" / ("ef" * 32) / "etc")
    import shutil
    shutil.rmtree(root / "snapshots" / hex_of(chains[1]))

    restarted = ImageService(Config(root=str(root)), events)
    try:
        assert sorted(os.listdir(root / "snapshots")) == sorted(hex_of(c) for c in chains)
        assert Path(restarted.lowerdirs(app.id)[0], "app").read_text() == "x" * 1000
        assert restarted.inspect("app")["Size"] == 4002 + 5 + 1000
    finally:
        restarted.close()


def test_prune_also_collects_leftovers(service, base_and_app):
    orphan = service.content.ingest(b"left over" * 100)
    report = service.prune()
    assert report == {"ImagesDeleted": None, "SpaceReclaimed": 900}
    assert not service.content.exists(orphan.digest)
