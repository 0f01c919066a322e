"""VolumeService on its own: volumes of the local driver, and the mounts of a
container from prepare_mounts to release."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from berth.config import Config
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.events import EventBus
from berth.volumes import VolumeService
from berth.volumes.mounts import ANONYMOUS_LABEL

from volkit import needs_root

CID = "c" * 64
CID2 = "d" * 64


def names(service, **filters) -> list[str]:
    return [v["Name"] for v in service.list({k: v for k, v in filters.items()})["Volumes"]]


def actions(service) -> list[tuple[str, str]]:
    return [(e["Action"], e["Actor"]["ID"]) for e in service.test_events.history()
            if e["Type"] == "volume"]


# -- volumes ------------------------------------------------------------------------------

def test_create_and_inspect(service, workdir):
    vol = service.create("web-data", labels={"tier": "db"})
    assert vol == {"CreatedAt": vol["CreatedAt"], "Driver": "local", "Labels": {"tier": "db"},
                   "Mountpoint": str(workdir / "root/volumes/web-data/_data"), "Name": "web-data",
                   "Options": None, "Scope": "local"}
    assert vol["CreatedAt"].endswith("Z")
    data = Path(vol["Mountpoint"])
    assert data.is_dir() and stat.S_IMODE(data.stat().st_mode) == 0o755
    assert service.inspect("web-data") == vol
    assert actions(service) == [("create", "web-data")]


def test_create_existing_returns_it_unchanged(service):
    first = service.create("same", labels={"a": "1"})
    (Path(first["Mountpoint"]) / "keep").write_text("x")
    again = service.create("same", labels={"b": "2"})
    assert again == first
    assert (Path(first["Mountpoint"]) / "keep").exists()
    assert actions(service) == [("create", "same")]


def test_anonymous_volume_gets_a_random_name_and_label(service):
    vol = service.create()
    assert len(vol["Name"]) == 64 and all(c in "0123456789abcdef" for c in vol["Name"])
    assert vol["Labels"] == {ANONYMOUS_LABEL: ""}


@pytest.mark.parametrize("kwargs, error, message", [
    ({"name": "x", "driver": "nfs-plugin"}, NotFound,
     'create x: error looking up volume plugin nfs-plugin: plugin "nfs-plugin" not found'),
    ({"name": "ok", "options": {"bogus": "1"}}, InvalidArgument, 'create ok: invalid option: "bogus"'),
    ({"name": "ok", "options": {"type": "tmpfs"}}, InvalidArgument,
     'create ok: missing required option: "device"'),
    ({"name": "ok", "options": {"size": "10m"}}, InvalidArgument,
     "create ok: quota size requested but no quota support"),
    ({"name": "x"}, InvalidArgument,
     "create x: volume name is too short, names should be at least two alphanumeric characters"),
    ({"name": "../etc"}, InvalidArgument, 'create ../etc: "../etc" includes invalid characters'),
    ({"name": "ok", "labels": {"a": 1}}, InvalidArgument, "create ok: Labels must be an object of strings"),
])
def test_create_refusals_leave_nothing(service, workdir, kwargs, error, message):
    with pytest.raises(error) as err:
        service.create(**kwargs)
    assert err.value.message.startswith(message)
    assert names(service) == []
    assert os.listdir(workdir / "root/volumes") == []


def test_list_filters(service):
    service.create("alpha", labels={"env": "prod", "team": "a"})
    service.create("beta", labels={"env": "dev"})
    service.create("alphabet")
    service.prepare_mounts(CID, {"Binds": ["beta:/b"]}, {}, [])
    assert names(service) == ["alpha", "alphabet", "beta"]
    assert names(service, name=["^alpha"]) == ["alpha", "alphabet"]
    assert names(service, name=["bet"]) == ["alphabet", "beta"]
    assert names(service, label=["env"]) == ["alpha", "beta"]
    assert names(service, label=["env=prod"]) == ["alpha"]
    assert names(service, label=["env=prod", "team=a"]) == ["alpha"]
    assert names(service, dangling=["true"]) == ["alpha", "alphabet"]
    assert names(service, dangling=["0"]) == ["beta"]
    assert names(service, driver=["local"]) == ["alpha", "alphabet", "beta"]
    assert names(service, driver=["other"]) == []
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        service.list({"colour": ["red"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        service.list({"dangling": ["maybe"]})


def test_remove(service, workdir):
    vol = service.create("gone")
    (Path(vol["Mountpoint"]) / "f").write_text("data")
    service.remove("gone")
    assert names(service) == []
    assert os.listdir(workdir / "root/volumes") == []
    with pytest.raises(NotFound) as err:
        service.remove("gone")
    assert err.value.message == "get gone: no such volume"
    service.remove("gone", force=True)  # force forgives a missing volume
    with pytest.raises(NotFound, match="get gone: no such volume"):
        service.inspect("gone")
    assert actions(service) == [("create", "gone"), ("destroy", "gone")]


def test_volume_in_use_cannot_be_removed_even_forced(service):
    service.prepare_mounts(CID, {"Binds": ["busy:/data"]}, {}, [])
    service.prepare_mounts(CID2, {"Mounts": [{"Type": "volume", "Source": "busy", "Target": "/x"}]},
                           {}, [])
    for force in (False, True):
        with pytest.raises(Conflict) as err:
            service.remove("busy", force=force)
        assert err.value.message == f"remove busy: volume is in use - [{CID}, {CID2}]"
    service.release(CID)
    with pytest.raises(Conflict, match=CID2):
        service.remove("busy")
    service.release(CID2)
    service.remove("busy")
    assert names(service) == []


def test_prune_removes_unused_anonymous_volumes_only(service):
    kept_named = service.create("named")
    anon = service.create()["Name"]
    (Path(service.inspect(anon)["Mountpoint"]) / "blob").write_bytes(b"x" * 5000)
    service.prepare_mounts(CID, {"Binds": ["/in-use"]}, {}, [])
    in_use = service.mount_records(CID)[0].name
    report = service.prune({})
    assert report == {"VolumesDeleted": [anon], "SpaceReclaimed": 5000}
    assert sorted(names(service)) == sorted(["named", in_use])
    assert kept_named == service.inspect("named")
    prune_events = [e for e in service.test_events.history() if e["Action"] == "prune"]
    assert prune_events[-1]["Actor"]["Attributes"] == {"reclaimed": "5000"}


def test_prune_all_and_label_filters(service):
    service.create("keep-me", labels={"keep": "yes"})
    service.create("drop-me", labels={"keep": "no"})
    service.create("plain")
    service.create("mounted-opts", options={"type": "tmpfs", "device": "tmpfs"})
    assert service.prune({"all": ["true"], "label!": ["keep=yes"], "label": ["keep"]}) == \
        {"VolumesDeleted": ["drop-me"], "SpaceReclaimed": 0}
    report = service.prune({"all": ["1"]})
    # Volumes with mount options hold no local data: never pruned (Docker too).
    assert report["VolumesDeleted"] == ["keep-me", "plain"]
    assert names(service) == ["mounted-opts"]
    with pytest.raises(InvalidArgument, match="invalid filter 'all=maybe'"):
        service.prune({"all": ["maybe"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        service.prune({"dangling": ["true"]})


def test_volumes_outlive_a_restart(workdir):
    config = Config(root=str(workdir / "root"))
    first = VolumeService(config, EventBus())
    vol = first.create("persist", labels={"a": "b"})
    (Path(vol["Mountpoint"]) / "state").write_text("kept")
    first.prepare_mounts(CID, {"Binds": ["persist:/p"]}, {}, [])
    first.close()
    second = VolumeService(config, EventBus())
    assert second.inspect("persist") == vol
    assert (Path(vol["Mountpoint"]) / "state").read_text() == "kept"
    assert second.users("persist") == [CID]
    assert second.mounts_inspect(CID)[0]["Name"] == "persist"
    second.close()


def test_reconcile_adopts_orphans_and_finishes_removals(workdir):
    root = workdir / "root"
    orphan = root / "volumes" / "orphan" / "_data"
    orphan.mkdir(parents=True)
    (orphan / "precious").write_text("never thrown away")
    trash = root / "volumes" / ".trash-old-1234"
    (trash / "_data").mkdir(parents=True)
    service = VolumeService(Config(root=str(root)), EventBus())
    assert names(service) == ["orphan"]
    # A removal that crashed after moving the data out finishes at start-up.
    service.create("half-removed")
    service.close()
    os.rename(root / "volumes" / "half-removed", root / "volumes" / ".trash-half-removed-abcd")
    service = VolumeService(Config(root=str(root)), EventBus())
    assert names(service) == ["orphan"]
    assert (orphan / "precious").read_text() == "never thrown away"
    assert not trash.exists()
    # A row whose directory vanished gets an empty one back.
    data = Path(service.inspect("orphan")["Mountpoint"])
    service.close()
    import shutil
    shutil.rmtree(data.parent)
    service = VolumeService(Config(root=str(root)), EventBus())
    assert data.is_dir() and names(service) == ["orphan"]
    service.close()


# -- a container's mounts -------------------------------------------------------------------

def test_prepare_mounts_specs_and_inspect(service, workdir):
    host = workdir / "host"
    host.mkdir()
    specs = service.prepare_mounts(CID, {
        "Binds": [f"{host}:/srv/host:ro", "named:/var/lib/data", "/anon"],
        "Mounts": [{"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1 << 20}}],
        "Tmpfs": {"/scratch": "size=2m"},
    }, {}, [])
    named = service.inspect("named")["Mountpoint"]
    anon = next(mp.name for mp in service.mount_records(CID) if mp.destination == "/anon")
    by_dest = {s["destination"]: s for s in specs}
    assert [s["destination"] for s in specs] == sorted(by_dest, key=lambda d: d.count("/"))
    assert by_dest["/srv/host"] == {"destination": "/srv/host", "type": "bind", "source": str(host),
                                    "options": ["rbind", "ro", "rprivate"]}
    assert by_dest["/var/lib/data"] == {"destination": "/var/lib/data", "type": "bind",
                                        "source": named, "options": ["rbind"]}
    assert by_dest["/scratch"]["type"] == "tmpfs" and "size=2m" in by_dest["/scratch"]["options"]
    assert by_dest["/run"]["options"][-1] == "size=1m"
    mounts = {m["Destination"]: m for m in service.mounts_inspect(CID)}
    assert set(mounts) == {"/srv/host", "/var/lib/data", "/anon", "/run"}
    assert mounts["/var/lib/data"] == {"Type": "volume", "Name": "named", "Source": named,
                                       "Destination": "/var/lib/data", "Driver": "local",
                                       "Mode": "z", "RW": True, "Propagation": ""}
    assert mounts["/anon"]["Name"] == anon and mounts["/anon"]["Mode"] == ""
    assert service.users("named") == [CID] and service.users(anon) == [CID]


def test_release_keeps_named_and_removes_anonymous_with_v(service):
    service.prepare_mounts(CID, {"Binds": ["named:/n", "/anon1"]}, {"Volumes": {"/anon2": {}}}, [])
    anon = sorted(mp.name for mp in service.mount_records(CID) if mp.anonymous)
    assert len(anon) == 2
    assert sorted(service.release(CID, remove_anonymous=True)) == anon
    assert names(service) == ["named"]
    assert service.mounts_inspect(CID) == []
    assert service.release(CID, remove_anonymous=True) == []  # idempotent


def test_release_without_v_keeps_anonymous_volumes(service):
    service.prepare_mounts(CID, {"Binds": ["/anon"]}, {}, [])
    anon = service.mount_records(CID)[0].name
    assert service.release(CID) == []
    assert names(service) == [anon]
    assert service.users(anon) == []


def test_anonymous_volume_shared_by_volumes_from_survives_rm_v(service):
    service.prepare_mounts(CID, {"Binds": ["/shared"]}, {}, [])
    service.set_container_resolver(lambda name: {"first": CID}[name])
    service.prepare_mounts(CID2, {"VolumesFrom": ["first:ro"]}, {}, [])
    anon = service.mount_records(CID)[0].name
    shared = service.mounts_inspect(CID2)
    assert shared[0]["Name"] == anon and shared[0]["RW"] is False
    assert service.release(CID2, remove_anonymous=True) == []
    assert service.release(CID, remove_anonymous=True) == [anon]


def test_image_volumes_skip_destinations_already_mounted(service):
    service.prepare_mounts(CID, {"Binds": ["mine:/data"]}, {"Volumes": {"/data": {}, "/logs/": {}}}, [])
    dests = {m["Destination"]: m.get("Name") for m in service.mounts_inspect(CID)}
    assert dests["/data"] == "mine"
    assert len(dests["/logs"]) == 64


@pytest.mark.parametrize("host_config, message", [
    ({"Binds": ["a1:/same", "/x:/same"]}, "Duplicate mount point: /same"),
    ({"Binds": ["a1:/same"], "Tmpfs": {"/same": ""}}, "Duplicate mount point: /same"),
    ({"Binds": ["a1:/same"], "Mounts": [{"Type": "volume", "Target": "/same"}]},
     "Duplicate mount point: /same"),
    ({"Mounts": [{"Type": "bind", "Source": "/does/not/exist", "Target": "/x"}]},
     'invalid mount config for type "bind": bind source path does not exist: /does/not/exist'),
    ({"Binds": ["a1:/ok"], "Mounts": [{"Type": "volume", "Source": "v2", "Target": "/v",
                                       "VolumeOptions": {"DriverConfig": {"Name": "flocker"}}}]},
     'create v2: error looking up volume plugin flocker: plugin "flocker" not found'),
    ({"Binds": "a1:/x"}, "invalid HostConfig.Binds: expected a JSON array"),
])
def test_bad_mount_requests_leave_nothing(service, workdir, host_config, message):
    with pytest.raises((InvalidArgument, NotFound)) as err:
        service.prepare_mounts(CID, host_config, {}, [])
    assert err.value.message == message
    assert names(service) == [] and service.mounts_inspect(CID) == []


def test_failure_midway_rolls_back_volumes_refs_and_bind_sources(service, workdir):
    made = workdir / "made-by-v" / "deeper"
    service.create("existing")
    with pytest.raises(InvalidArgument, match="create new-vol: invalid option"):
        service.prepare_mounts(CID, {
            "Binds": [f"{made}:/m", "existing:/e", "fresh:/f"],
            "Mounts": [{"Type": "volume", "Source": "new-vol", "Target": "/n",
                        "VolumeOptions": {"DriverConfig": {"Options": {"bogus": "1"}}}}],
        }, {}, [])
    assert names(service) == ["existing"]
    assert service.users("existing") == []
    assert not (workdir / "made-by-v").exists()
    assert service.mounts_inspect(CID) == []


def test_v_creates_a_missing_host_directory(service, workdir):
    target = workdir / "new" / "dir"
    service.prepare_mounts(CID, {"Binds": [f"{target}:/x"]}, {}, [])
    assert target.is_dir()


def test_relative_image_volume_is_refused(service):
    with pytest.raises(InvalidArgument, match="invalid mount path: 'data' mount path must be absolute"):
        service.prepare_mounts(CID, {}, {"Volumes": {"data": {}}}, [])


# -- filling volumes from the image -----------------------------------------------------------

@needs_root
def test_new_volume_is_filled_from_the_image(service, layers):
    service.prepare_mounts(CID, {"Binds": ["filled:/data"]}, {}, layers)
    data = Path(service.inspect("filled")["Mountpoint"])
    assert sorted(os.listdir(data)) == ["fifo", "hardlink.txt", "hello.txt", "link", "sub", "top.txt"]
    st = data.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o750)
    assert (data / "hello.txt").read_text() == "hello from the image\n"
    assert os.getxattr(data / "hello.txt", "user.origin") == b"image"
    assert (data / "hello.txt").stat().st_ino == (data / "hardlink.txt").stat().st_ino
    assert os.readlink(data / "link") == "hello.txt"
    assert stat.S_ISFIFO((data / "fifo").lstat().st_mode)
    assert (data / "sub").stat().st_mtime_ns == 1_000_000_000
    assert (data / "sub" / "deep.txt").read_text() == "deep\n"


@needs_root
def test_anonymous_image_volume_is_filled_too(service, layers):
    service.prepare_mounts(CID, {}, {"Volumes": {"/etc": {}}}, layers)
    mp = service.mount_records(CID)[0]
    assert (Path(mp.source) / "passwd").read_text().startswith("root:x:0:0")


@needs_root
def test_volume_with_content_and_nocopy_are_left_alone(service, layers):
    vol = service.create("busy")
    (Path(vol["Mountpoint"]) / "mine").write_text("mine")
    service.prepare_mounts(CID, {"Binds": ["busy:/data", "empty:/etc:nocopy"]}, {}, layers)
    assert os.listdir(vol["Mountpoint"]) == ["mine"]
    assert os.listdir(service.inspect("empty")["Mountpoint"]) == []


@needs_root
def test_volume_over_an_image_file_is_refused(service, layers):
    with pytest.raises(InvalidArgument) as err:
        service.prepare_mounts(CID, {}, {"Volumes": {"/file": {}}}, layers)
    assert err.value.message == "cannot mount volume over existing file, file exists /file"
    assert names(service) == []


@needs_root
def test_volume_with_mount_options_is_mounted_while_used(service):
    service.create("ram", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0700"})
    data = service.inspect("ram")["Mountpoint"]
    assert not service.driver.is_mounted("ram")
    service.prepare_mounts(CID, {"Binds": ["ram:/r"]}, {}, [])
    try:
        assert service.driver.is_mounted("ram")
        assert os.statvfs(data).f_blocks * os.statvfs(data).f_frsize == 1 << 20
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    finally:
        service.release(CID)
    assert not service.driver.is_mounted("ram")
    service.remove("ram")


@needs_root
def test_two_containers_creating_with_one_new_volume(service, layers):
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        specs = list(pool.map(lambda cid: service.prepare_mounts(cid, {"Binds": ["twice:/data"]},
                                                                 {}, layers),
                              [f"{i:064x}" for i in range(4)]))
    assert all(s == specs[0] for s in specs)
    data = Path(service.inspect("twice")["Mountpoint"])
    assert (data / "hello.txt").read_text() == "hello from the image\n"
    assert len(service.users("twice")) == 4
