"""unpack_layer / unpack_layers through the binding: every entry kind, metadata,
compressions, whiteouts checked with a real overlay mount."""

from __future__ import annotations

import gzip
import io
import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from berth import _native
from layertar import LayerTar, sha256, tree

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, overlay)")


def sample_layer() -> LayerTar:
    return (LayerTar()
            .dir("bin/", mode=0o755, mtime=1_500_000_000)
            .file("bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755, uid=1000, gid=1001)
            .file("bin/suid", b"x", mode=0o4755, uid=0, gid=0)
            .file("bin/sgid", b"y", mode=0o2711, uid=33, gid=44)
            .symlink("bin/sh", "tool", uid=7, gid=8, mtime=1_400_000_000)
            .hardlink("bin/tool2", "bin/tool")
            .dir("empty/", mode=0o1777, mtime=1_300_000_000)
            .file("data/blob", os.urandom(3 << 20)))


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions_are_detected_and_hashed(workdir, compression):
    tar = sample_layer().bytes()
    raw = {"gzip": gzip.compress(tar), "zstd": zstandard.ZstdCompressor().compress(tar),
           "none": tar}[compression]
    layer = workdir / "layer"
    layer.write_bytes(raw)
    result = _native.unpack_layer(str(layer), str(workdir / "root"))
    assert result == {
        "diff_id": sha256(tar),
        "digest": sha256(raw),
        "compressed_size": len(raw),
        "size": len(b"#!/bin/sh\necho hi\n") + 2 + (3 << 20),
        "entries": 8,
        "compression": compression,
    }
    assert (workdir / "root/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"


@needs_root
def test_metadata_modes_owners_times(workdir):
    root = workdir / "root"
    sample_layer().write(workdir / "l.tgz")
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))

    def st(p):
        return os.lstat(root / p)

    assert (stat.S_IMODE(st("bin/tool").st_mode), st("bin/tool").st_uid, st("bin/tool").st_gid) == (0o755, 1000, 1001)
    # setuid/setgid survive because the mode is applied after chown
    assert stat.S_IMODE(st("bin/suid").st_mode) == 0o4755
    assert (stat.S_IMODE(st("bin/sgid").st_mode), st("bin/sgid").st_uid, st("bin/sgid").st_gid) == (0o2711, 33, 44)
    assert stat.S_IMODE(st("empty").st_mode) == 0o1777
    assert os.readlink(root / "bin/sh") == "tool"
    assert (st("bin/sh").st_uid, st("bin/sh").st_gid) == (7, 8)  # lchown, not the target
    assert st("bin/sh").st_mtime == 1_400_000_000
    assert st("bin/tool").st_mtime == 1_600_000_000
    # Directory times are set after their children are written.
    assert st("bin").st_mtime == 1_500_000_000
    assert st("empty").st_mtime == 1_300_000_000
    assert st("bin/tool2").st_ino == st("bin/tool").st_ino and st("bin/tool").st_nlink == 2


def test_pax_subsecond_mtime_and_xattrs(workdir):
    root = workdir / "root"
    (LayerTar()
     .file("f", b"x", pax_headers={"mtime": "1600000000.25", "SCHILY.xattr.user.color": "blue",
                                   "SCHILY.xattr.user.empty": ""})
     .dir("d", pax_headers={"SCHILY.xattr.user.dir": "yes"})
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert os.stat(root / "f").st_mtime_ns == 1_600_000_000_250_000_000
    assert os.getxattr(root / "f", "user.color") == b"blue"
    assert os.getxattr(root / "f", "user.empty") == b""
    assert os.getxattr(root / "d", "user.dir") == b"yes"


@needs_root
def test_security_capability_survives_chown(workdir):
    # chown clears file capabilities, so they must be set after it
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # v2, cap_net_raw+ep
    root = workdir / "root"
    (LayerTar()
     .file("ping", b"elf", mode=0o4755, uid=0, gid=0,
           pax_headers={"SCHILY.xattr.security.capability": cap.decode("ascii")})
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert os.getxattr(root / "ping", "security.capability") == cap
    assert stat.S_IMODE(os.stat(root / "ping").st_mode) == 0o4755


@needs_root
def test_devices_and_fifos(workdir):
    root = workdir / "root"
    (LayerTar()
     .device("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666)
     .device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660, gid=6)
     .device("run/fifo", tarfile.FIFOTYPE, mode=0o600, mtime=1_234_567_890)
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(root / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    assert loop.st_gid == 6
    fifo = os.lstat(root / "run/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and fifo.st_mtime == 1_234_567_890


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_link_targets(workdir, fmt):
    root = workdir / "root"
    deep = "/".join(["d" * 60] * 5)  # 304 bytes: beyond ustar's name + prefix
    long_file = f"{deep}/{'f' * 200}"
    (LayerTar(format=fmt)
     .file(long_file, b"deep")
     .symlink("short", long_file)
     .hardlink("hard", long_file)
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert (root / long_file).read_bytes() == b"deep"
    assert os.readlink(root / "short") == long_file
    assert os.stat(root / "hard").st_ino == os.stat(root / long_file).st_ino


def test_later_entries_replace_earlier_ones(workdir):
    root = workdir / "root"
    (LayerTar()
     .file("a", b"file first")
     .dir("a/")                      # file -> dir
     .file("a/inside", b"1")
     .dir("b/")
     .file("b/keep", b"kept")
     .dir("b/", mode=0o700)          # dir over dir: merged, metadata updated
     .dir("c/")
     .file("c/gone", b"x")
     .symlink("c", "b")              # dir -> symlink: the old tree goes
     .file("d", b"old")
     .file("d", b"new")              # file -> file
     .symlink("e", "/nowhere")
     .file("e", b"not a link")       # symlink -> file, without following it
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert (root / "a/inside").read_bytes() == b"1"
    assert (root / "b/keep").read_bytes() == b"kept"
    assert stat.S_IMODE(os.stat(root / "b").st_mode) == 0o700
    assert os.readlink(root / "c") == "b"
    assert (root / "d").read_bytes() == b"new"
    assert not (root / "e").is_symlink() and (root / "e").read_bytes() == b"not a link"


def test_missing_parents_are_created_and_root_entry_applies_to_root(workdir):
    root = workdir / "root"
    (LayerTar()
     .dir("./", mode=0o750, mtime=1_111_111_111)
     .file("x/y/z/file", b"deep")
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert (root / "x/y/z/file").read_bytes() == b"deep"
    assert stat.S_IMODE(os.stat(root / "x/y").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o750
    assert os.stat(root).st_mtime == 1_111_111_111


def test_trailing_bytes_after_end_of_archive_are_hashed(workdir):
    tar = LayerTar().file("f", b"x").bytes() + b"\0" * 20480 + b"trailing junk"
    layer = workdir / "l.tar"
    layer.write_bytes(tar)
    result = _native.unpack_layer(str(layer), str(workdir / "root"))
    assert result["diff_id"] == sha256(tar)
    assert result["digest"] == sha256(tar)


def test_multi_member_gzip(workdir):
    tar = LayerTar().file("f", os.urandom(50_000)).bytes()
    raw = gzip.compress(tar[:10240]) + gzip.compress(tar[10240:])
    layer = workdir / "l.tgz"
    layer.write_bytes(raw)
    result = _native.unpack_layer(str(layer), str(workdir / "root"))
    assert result["diff_id"] == sha256(tar) and result["digest"] == sha256(raw)


def test_source_as_file_descriptor_and_pipe(workdir):
    layer = sample_layer().write(workdir / "l.tgz")
    fd = os.open(layer, os.O_RDONLY)
    try:
        result = _native.unpack_layer(fd, str(workdir / "r1"))
        os.fstat(fd)  # still the caller's, still open
    finally:
        os.close(fd)
    # A pipe, as when the daemon streams a blob straight from the network.
    proc = subprocess.Popen(["cat", str(layer)], stdout=subprocess.PIPE)
    try:
        piped = _native.unpack_layer(proc.stdout.fileno(), str(workdir / "r2"))
    finally:
        proc.stdout.close()
        proc.wait()
    assert piped == result
    assert (workdir / "r2/data/blob").read_bytes() == (workdir / "r1/data/blob").read_bytes()


def test_unpack_layers_in_parallel_reports_each_job(workdir):
    jobs = []
    for i in range(5):
        LayerTar().file(f"f{i}", str(i).encode() * 100_000).write(workdir / f"l{i}.tgz")
        jobs.append((str(workdir / f"l{i}.tgz"), str(workdir / f"r{i}")))
    (workdir / "bad.tgz").write_bytes(gzip.compress(b"not a tar at all" * 100)[:30])
    jobs.insert(2, (str(workdir / "bad.tgz"), str(workdir / "rbad")))
    results = _native.unpack_layers(jobs, threads=3)
    assert len(results) == 6
    assert isinstance(results[2], _native.LayerError) and "gzip" in str(results[2])
    for i, r in enumerate(r for j, r in enumerate(results) if j != 2):
        assert r["entries"] == 1
        assert (workdir / f"r{i}" / f"f{i}").read_bytes() == str(i).encode() * 100_000


def test_unpack_layers_checks_expected_digests(workdir):
    tar = LayerTar().file("f", b"x").bytes()
    (workdir / "l.tgz").write_bytes(gzip.compress(tar))
    layer = str(workdir / "l.tgz")
    good, bad, malformed = _native.unpack_layers([
        (layer, str(workdir / "r1"), {"expected_diff_id": sha256(tar)}),
        (layer, str(workdir / "r2"), {"expected_diff_id": "sha256:" + "1" * 64, "expected_digest": None}),
        (layer, str(workdir / "r3"), {"expected_digest": "sha256:nope"}),
    ])
    assert good["diff_id"] == sha256(tar)
    assert isinstance(bad, _native.LayerError) and "layer diff_id mismatch" in str(bad)
    assert isinstance(malformed, ValueError) and "not a digest" in str(malformed)
    with pytest.raises(TypeError, match="unknown unpack option"):
        _native.unpack_layers([(layer, str(workdir / "r4"), {"expected": "x"})])


def test_bad_arguments(workdir):
    with pytest.raises(TypeError):
        _native.unpack_layer(True, str(workdir / "r"))
    with pytest.raises(TypeError):
        _native.unpack_layer(1.5, str(workdir / "r"))
    with pytest.raises(OSError):
        _native.unpack_layer(987654, str(workdir / "r"))  # not an open fd
    with pytest.raises(TypeError, match=r"each job must be \(source, target\)"):
        _native.unpack_layers([("only-one",)])


# --- whiteouts, checked by the kernel's overlayfs -------------------------------------

def overlay_view(workdir: Path, lowers: list[Path]):
    """Mount lowers (top first) read-only; return the mount point."""
    mnt = workdir / "merged"
    mnt.mkdir()
    lowerdir = ":".join(str(p) for p in lowers)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir}", str(mnt)],
                   check=True, capture_output=True)
    return mnt


@needs_root
def test_whiteouts_hide_lower_content_in_a_real_overlay(workdir):
    base, top = workdir / "base", workdir / "top"
    (LayerTar()
     .file("gone", b"lower file")
     .file("kept", b"lower kept")
     .dir("opaque/")
     .file("opaque/old", b"lower only")
     .dir("merged/")
     .file("merged/lower", b"visible")
     .write(workdir / "base.tgz"))
    (LayerTar()
     .file(".wh.gone", b"")
     .dir("opaque/")
     .file("opaque/.wh..wh..opq", b"")
     .file("opaque/new", b"upper")
     .file("merged/upper", b"also visible")
     .write(workdir / "top.tgz"))
    _native.unpack_layer(str(workdir / "base.tgz"), str(base))
    _native.unpack_layer(str(workdir / "top.tgz"), str(top))

    # The overlayfs form on disk.
    wh = os.lstat(top / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert not (top / ".wh.gone").exists()
    assert os.getxattr(top / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (top / "opaque/.wh..wh..opq").exists()

    mnt = overlay_view(workdir, [top, base])
    try:
        assert sorted(os.listdir(mnt)) == ["kept", "merged", "opaque"]
        assert sorted(os.listdir(mnt / "opaque")) == ["new"]
        assert sorted(os.listdir(mnt / "merged")) == ["lower", "upper"]
        assert (mnt / "kept").read_bytes() == b"lower kept"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@needs_root
def test_whiteout_replaces_same_layer_entry(workdir):
    root = workdir / "root"
    (LayerTar()
     .dir("d/")
     .file("d/x", b"1")
     .file(".wh.d", b"")
     .write(workdir / "l.tgz"))
    _native.unpack_layer(str(workdir / "l.tgz"), str(root))
    assert stat.S_ISCHR(os.lstat(root / "d").st_mode)


def test_sha256_of_layer_matches_hashlib_on_large_stream(workdir):
    data = os.urandom(5 << 20)
    tar = LayerTar().file("a", data).file("b", data[::-1]).bytes()
    raw = gzip.compress(tar, compresslevel=1)
    (workdir / "l.tgz").write_bytes(raw)
    r = _native.unpack_layer(str(workdir / "l.tgz"), str(workdir / "root"))
    assert r["diff_id"] == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert r["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (workdir / "root/b").read_bytes() == data[::-1]


def test_gnu_sparse_files_stay_sparse(workdir):
    src = workdir / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(64 << 20)
        for off in (0, 10 << 20, (64 << 20) - 5):
            f.seek(off)
            f.write(b"hello")
    subprocess.run(["tar", "--sparse", "--format=gnu", "-C", str(src), "-cf", str(workdir / "l.tar"), "sparse"],
                   check=True)
    with tarfile.open(workdir / "l.tar") as t:
        assert t.getmember("sparse").issparse()
    result = _native.unpack_layer(str(workdir / "l.tar"), str(workdir / "root"))
    out = workdir / "root/sparse"
    assert out.stat().st_size == 64 << 20
    assert out.read_bytes() == (src / "sparse").read_bytes()
    assert out.stat().st_blocks * 512 < 1 << 20  # holes were not written
    assert result["size"] == 64 << 20  # apparent size, holes included


def test_v7_directory_marked_by_trailing_slash(workdir):
    tar = bytearray(LayerTar(format=tarfile.GNU_FORMAT).file("olddir/", b"").file("olddir/f", b"x").bytes())
    # Turn the first entry's type into v7 "regular" ('\0') and fix its checksum.
    tar[156] = 0
    tar[148:156] = b" " * 8
    tar[148:156] = b"%06o\0 " % sum(tar[:512])
    (workdir / "l.tar").write_bytes(bytes(tar))
    _native.unpack_layer(str(workdir / "l.tar"), str(workdir / "root"))
    assert (workdir / "root/olddir").is_dir()
    assert (workdir / "root/olddir/f").read_bytes() == b"x"


@needs_root
def test_busybox_rootfs_matches_gnu_tar(workdir, busybox_rootfs):
    """The example image's rootfs, unpacked by berth and by GNU tar, is the same tree."""
    ours, theirs = workdir / "ours", workdir / "theirs"
    theirs.mkdir()
    subprocess.run(["tar", "-xf", str(busybox_rootfs), "-C", str(theirs)], check=True)
    result = _native.unpack_layer(str(busybox_rootfs), str(ours))
    assert result["diff_id"] == "sha256:" + hashlib.sha256(busybox_rootfs.read_bytes()).hexdigest()
    from layertar import tree
    assert tree(ours) == tree(theirs)
    assert os.readlink(ours / "bin/sh") == "/bin/busybox"
    assert stat.S_IMODE(os.stat(ours / "tmp").st_mode) == 0o1777


def busy_layer(root_owned: bool) -> LayerTar:
    """Many small files over several directories (batches, lanes), every
    metadata kind, and entries that depend on files still being written."""
    owner = {"uid": 1000, "gid": 1001} if root_owned else {}
    layer = LayerTar().dir("a/").dir("b/", mode=0o2775, **owner).dir("c/", mode=0o700)
    for i in range(60):
        d = "abc"[i % 3]
        layer.file(f"{d}/f{i}", f"{d}{i}".encode() * (i + 1),
                   mode=[0o644, 0o600, 0o444, 0o755, 0o666, 0o4755, 0o640][i % 7],
                   mtime=1_500_000_000 + i, **(owner if i % 5 == 0 else {}))
    info_xattr = tarfile.TarInfo("a/attr")
    info_xattr.pax_headers = {"SCHILY.xattr.user.note": "kept"}
    layer.tar.addfile(info_xattr, io.BytesIO(b""))
    return (layer
            .hardlink("c/link-to-fresh", "a/f57")      # written moments ago, maybe by a worker
            .file("a/f3", b"replaced")                  # a later entry wins
            .symlink("b/sym", "f1", **owner)
            .file("a/.wh.f0")                           # whiteout of an earlier file
            .dir("d/").file("d/.wh..wh..opq")           # opaque directory
            .file("d/after", b"x" * 300_000))           # too big for a worker


@pytest.mark.parametrize("workers", [1, 3])
def test_file_workers_give_the_tree_of_a_sequential_unpack(workdir, workers):
    layer = busy_layer(os.geteuid() == 0)
    path = workdir / "l.tar"
    path.write_bytes(layer.bytes())
    sequential = _native.unpack_layer(str(path), str(workdir / "seq"), file_workers=0)
    parallel = _native.unpack_layer(str(path), str(workdir / "par"), file_workers=workers)
    assert parallel == sequential
    seq_tree, par_tree = tree(workdir / "seq"), tree(workdir / "par")
    assert par_tree == seq_tree
    assert os.lstat(workdir / "par/c/link-to-fresh").st_ino == os.lstat(workdir / "par/a/f57").st_ino
    assert (workdir / "par/a/f3").read_bytes() == b"replaced"
    mode, uid, gid, mtime = (seq_tree["c/f5"][i] for i in (1, 2, 3, 7))
    assert (mode, mtime) == (0o4755, 1_500_000_005)
    if os.geteuid() == 0:
        assert (uid, gid) == (1000, 1001)
        assert seq_tree["b/f1"][1:4] == (0o600, 0, 0)   # not the setgid parent's group
        assert seq_tree["a/f0"][0] == stat.S_IFCHR          # the whiteout
    assert seq_tree["a/attr"][8] == {"user.note": b"kept"}


def test_a_caller_that_hashes_the_blob_itself_skips_the_source_digest(workdir):
    tar = LayerTar().file("etc/hostname", b"box\n").bytes()
    raw = gzip.compress(tar)
    layer = workdir / "l.tgz"
    layer.write_bytes(raw)
    result = _native.unpack_layer(str(layer), str(workdir / "r1"), source_digest=False,
                                  expected_diff_id=sha256(tar))
    assert (result["digest"], result["diff_id"], result["compressed_size"]) == (None, sha256(tar), len(raw))
    assert (workdir / "r1/etc/hostname").read_bytes() == b"box\n"
    # Nothing to check an expected digest against: refused before anything is written.
    with pytest.raises(ValueError, match="not computed"):
        _native.unpack_layer(str(layer), str(workdir / "r2"), source_digest=False,
                             expected_digest=sha256(raw))
    assert not (workdir / "r2").exists()
    # The same through unpack_layers, whose options are unpack_layer's keywords.
    hashed, unhashed = _native.unpack_layers([
        (str(layer), str(workdir / "r3"), {"file_workers": 2}),
        (str(layer), str(workdir / "r4"), {"source_digest": False, "expected_diff_id": sha256(tar)}),
    ])
    assert (hashed["digest"], unhashed["digest"]) == (sha256(raw), None)
    assert tree(workdir / "r3") == tree(workdir / "r4")
