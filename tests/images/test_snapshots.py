"""Snapshots: chain IDs, verified unpack into place, hostile layers, parallel
preparation, removal and crash leftovers."""

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.metadata import Database
from berth.snapshots import LayerJob, SnapshotStore, chain_id, chain_ids

from imagekit import layer_tar, sha256


@pytest.fixture
def snapshots(workdir: Path) -> SnapshotStore:
    return SnapshotStore(str(workdir / "snapshots"), Database(str(workdir / "metadata.db")))


def inode_flags(path) -> int | None:
    """FS_IOC_GETFLAGS of a directory, None where the filesystem has none."""
    import array
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, 0x80086601, flags, True)
        return flags[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def entries(snapshots: SnapshotStore) -> list[str]:
    return sorted(os.listdir(snapshots.root))


def test_chain_ids_follow_the_oci_definition():
    d = [sha256(b"a"), sha256(b"b"), sha256(b"c")]
    c1 = "sha256:" + hashlib.sha256(f"{d[0]} {d[1]}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {d[2]}".encode()).hexdigest()
    assert chain_ids(d) == [d[0], c1, c2]
    assert chain_id(None, d[0]) == d[0]
    assert chain_id(c1, d[2]) == c2


def test_prepare_unpacks_into_place_once(snapshots, workdir):
    tar = layer_tar({"etc": None, "etc/hostname": "box\n", "bin": None, "bin/tool": b"x" * 100})
    blob = workdir / "layer.tar"
    blob.write_bytes(tar)
    snap = snapshots.prepare(str(blob), diff_id=sha256(tar))
    assert snap.chain_id == sha256(tar)
    assert snap.size == 104
    assert Path(snap.path, "etc/hostname").read_text() == "box\n"
    assert entries(snapshots) == [sha256(tar).split(":")[1]]
    inode = os.stat(snap.path).st_ino
    # Prepared again (another image with the same base): nothing is unpacked.
    again = snapshots.prepare(str(blob), diff_id=sha256(tar))
    assert again == snap and os.stat(snap.path).st_ino == inode
    assert snapshots.get(snap.chain_id) == snap
    assert [s.chain_id for s in snapshots.list()] == [snap.chain_id]


def test_prepare_without_a_known_diff_id_derives_the_chain(snapshots, workdir):
    tar = layer_tar({"f": "1"})
    blob = workdir / "layer.tar.gz"
    blob.write_bytes(gzip.compress(tar))
    snap = snapshots.prepare(str(blob))
    assert snap.diff_id == sha256(tar) and snap.chain_id == sha256(tar)


def test_diff_id_mismatch_leaves_nothing(snapshots, workdir):
    tar = layer_tar({"f": "1"})
    blob = workdir / "layer.tar"
    blob.write_bytes(tar)
    wrong = sha256(b"other")
    with pytest.raises(InvalidArgument) as err:
        snapshots.prepare(str(blob), diff_id=wrong, name="layer 1 of test")
    assert err.value.message == (
        f"layer 1 of test: diff ID mismatch: expected {wrong}, got {sha256(tar)}")
    assert entries(snapshots) == [] and snapshots.list() == []


def _outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["keep"], "something was written outside the snapshot"
    assert (outside / "keep").read_text() == "original"


@pytest.fixture
def outside(workdir) -> Path:
    path = workdir / "outside"
    path.mkdir()
    (path / "keep").write_text("original")
    return path


def test_dotdot_entries_are_confined_to_the_snapshot(snapshots, workdir, outside):
    tar = layer_tar({"../outside/evil": "x", "../../outside/evil2": "y"})
    blob = workdir / "l.tar"
    blob.write_bytes(tar)
    snap = snapshots.prepare(str(blob), diff_id=sha256(tar))
    # As Docker does: ".." stops at the layer root.
    assert Path(snap.path, "outside/evil").read_text() == "x"
    assert Path(snap.path, "outside/evil2").read_text() == "y"
    _outside_untouched(outside)


def test_symlink_to_outside_then_file_under_it_is_refused(snapshots, workdir, outside):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = str(outside)
        t.addfile(info)
        info = tarfile.TarInfo("link/pwned")
        info.size = 6
        t.addfile(info, io.BytesIO(b"gotcha"))
    tar = buf.getvalue()
    blob = workdir / "l.tar"
    blob.write_bytes(tar)
    with pytest.raises(InvalidArgument, match='tar entry "link/pwned"'):
        snapshots.prepare(str(blob), diff_id=sha256(tar), name="layer sha256:x")
    assert entries(snapshots) == [] and snapshots.list() == []
    _outside_untouched(outside)


def test_hard_link_to_etc_shadow_is_refused(snapshots, workdir):
    before = Path("/etc/shadow").stat()
    tar = layer_tar({"ok": "1"}, hardlinks={"shadow": "/etc/shadow"})
    blob = workdir / "l.tar"
    blob.write_bytes(tar)
    with pytest.raises(InvalidArgument) as err:
        snapshots.prepare(str(blob), diff_id=sha256(tar), name="layer sha256:x")
    assert err.value.message.startswith("layer sha256:x: ")
    assert '"shadow"' in err.value.message and "/etc/shadow" in err.value.message
    assert entries(snapshots) == [] and snapshots.list() == []
    after = Path("/etc/shadow").stat()
    assert (after.st_nlink, after.st_ino) == (before.st_nlink, before.st_ino)


def test_truncated_gzip_is_refused_and_leaves_nothing(snapshots, workdir):
    tar = layer_tar({"f": os.urandom(200_000)})
    blob = workdir / "l.tar.gz"
    blob.write_bytes(gzip.compress(tar)[:-5000])
    with pytest.raises(InvalidArgument):
        snapshots.prepare(str(blob), diff_id=sha256(tar))
    assert entries(snapshots) == [] and snapshots.list() == []


def test_prepare_many_in_parallel_and_lowerdirs(snapshots, workdir):
    tars = [layer_tar({f"layer{i}": str(i) * (i + 1)}) for i in range(5)]
    diffs = [sha256(t) for t in tars]
    chains = chain_ids(diffs)
    jobs = []
    for i, tar in enumerate(tars):
        path = workdir / f"{i}.tar.gz"
        path.write_bytes(gzip.compress(tar))
        jobs.append(LayerJob(str(path), diffs[i], chains[i - 1] if i else None, f"layer {i}"))
    snaps = snapshots.prepare_many(jobs)
    assert [s.chain_id for s in snaps] == chains
    assert [s.parent for s in snaps] == [None] + chains[:-1]
    assert [s.size for s in snaps] == [1, 2, 3, 4, 5]
    dirs = snapshots.lowerdirs(chains)
    assert dirs == [snapshots.path(c) for c in reversed(chains)]  # top first, for overlayfs
    assert [os.listdir(d) for d in dirs] == [[f"layer{i}"] for i in reversed(range(5))]


def test_prepare_many_is_all_or_nothing(snapshots, workdir):
    good = layer_tar({"a": "1"})
    bad = layer_tar({"b": "2"})
    (workdir / "good.tar").write_bytes(good)
    (workdir / "bad.tar").write_bytes(bad[:700])  # cut inside the tar
    jobs = [LayerJob(str(workdir / "good.tar"), sha256(good), None, "good"),
            LayerJob(str(workdir / "bad.tar"), sha256(bad), sha256(good), "bad layer")]
    with pytest.raises(InvalidArgument, match="^bad layer: "):
        snapshots.prepare_many(jobs)
    assert entries(snapshots) == [] and snapshots.list() == []


def test_remove_and_lowerdirs_of_a_missing_snapshot(snapshots, workdir):
    tar = layer_tar({"f": "12345"})
    (workdir / "l.tar").write_bytes(tar)
    snap = snapshots.prepare(str(workdir / "l.tar"), diff_id=sha256(tar))
    assert snapshots.remove(snap.chain_id) == 5
    assert entries(snapshots) == [] and not snapshots.exists(snap.chain_id)
    assert snapshots.remove(snap.chain_id) == 0
    with pytest.raises(NotFound, match=f"snapshot {snap.chain_id} does not exist"):
        snapshots.lowerdirs([snap.chain_id])


def test_crash_leftovers_are_found_and_removed(snapshots, workdir):
    tar = layer_tar({"f": "1"})
    (workdir / "l.tar").write_bytes(tar)
    snap = snapshots.prepare(str(workdir / "l.tar"), diff_id=sha256(tar))
    # A half-unpacked temp dir and a renamed dir whose row never got written.
    os.makedirs(os.path.join(snapshots.root, "tmp-deadbeef", "usr"))
    stray = os.path.join(snapshots.root, "ab" * 32)
    os.makedirs(stray)
    # And a row whose directory vanished.
    lost = layer_tar({"g": "2"})
    (workdir / "lost.tar").write_bytes(lost)
    lost_snap = snapshots.prepare(str(workdir / "lost.tar"), diff_id=sha256(lost))
    os.rename(lost_snap.path, os.path.join(str(workdir), "elsewhere"))

    dirs, missing = snapshots.orphans()
    assert sorted(dirs) == sorted([os.path.join(snapshots.root, "tmp-deadbeef"), stray])
    assert missing == [lost_snap.chain_id]
    assert not snapshots.exists(lost_snap.chain_id)
    for path in dirs:
        snapshots.remove_stray(path)
    assert entries(snapshots) == [snap.chain_id.split(":")[1]]
    # A missing directory is unpacked again by the next prepare.
    again = snapshots.prepare(str(workdir / "lost.tar"), diff_id=sha256(lost))
    assert Path(again.path, "g").read_text() == "2"


def test_snapshot_root_is_the_top_of_unrelated_trees(snapshots, workdir):
    # ext4 then places each snapshot in a block group of its own choosing
    # (chattr +T), away from trees that were just deleted.
    flags = inode_flags(snapshots.root)
    if flags is None:
        pytest.skip("the filesystem has no inode flags")
    assert flags & 0x00020000, f"FS_TOPDIR_FL not set on {snapshots.root}: flags {flags:#x}"
    # Idempotent, and the store still works on top of it.
    SnapshotStore(snapshots.root, Database(str(workdir / "metadata.db")))
    assert inode_flags(snapshots.root) == flags
    tar = layer_tar({"etc": None, "etc/hostname": "box\n"})
    blob = workdir / "layer.tar"
    blob.write_bytes(tar)
    snap = snapshots.prepare(str(blob), diff_id=sha256(tar))
    assert Path(snap.path, "etc/hostname").read_text() == "box\n"
