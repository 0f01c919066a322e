"""pack_layer through the binding: reproducible tars, digests computed in the
same pass, round trips through unpack_layer, overlay upper dirs to OCI
whiteouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from berth import _native
from layertar import sha256, tree

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, overlay)")


def make_tree(root: Path) -> None:
    """A tree with every kind of file and the metadata a layer must carry."""
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_bytes(b"#!/bin/sh\n" + os.urandom(200_000))
    os.chmod(root / "bin/tool", 0o4755)
    os.link(root / "bin/tool", root / "bin/tool-hard")
    os.symlink("tool", root / "bin/sh")
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("a=1\n")
    os.setxattr(root / "etc/conf", "user.origin", b"test")
    os.setxattr(root / "etc", "user.dir", b"\x00\xffbinary")
    deep = root / "/".join(["n" * 80] * 3)
    deep.mkdir(parents=True)
    (deep / ("f" * 150)).write_bytes(b"long")
    os.symlink("x" * 150, root / "longlink")
    (root / "empty").mkdir(mode=0o700)
    (root / "empty").chmod(0o1777)
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "loop", 0o660 | stat.S_IFBLK, os.makedev(7, 1))
        os.chown(root / "etc/conf", 1000, 1001)
        os.lchown(root / "bin/sh", 7, 8)
        os.chown(root / "bin/tool", 0, 0)
        os.chmod(root / "bin/tool", 0o4755)  # chown cleared it
    os.mkfifo(root / "fifo", 0o600)
    for p in [root / "etc/conf", root / "fifo"]:
        os.utime(p, (1_500_000_000, 1_500_000_000))
    os.utime(root / "bin/sh", (1_400_000_000, 1_400_000_000), follow_symlinks=False)
    for d in [root / "etc", root / "bin", root / "empty"]:
        os.utime(d, (1_300_000_000, 1_300_000_000))


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip(workdir, compression):
    src, dst = workdir / "src", workdir / "dst"
    make_tree(src)
    out = workdir / "layer"
    packed = _native.pack_layer(str(src), str(out), compression=compression)
    raw = out.read_bytes()
    tar = {"gzip": gzip.decompress, "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
           "none": lambda b: b}[compression](raw)
    assert packed == {"diff_id": sha256(tar), "digest": sha256(raw), "size": len(raw),
                      "uncompressed_size": len(tar)}
    unpacked = _native.unpack_layer(str(out), str(dst))
    assert (unpacked["diff_id"], unpacked["digest"], unpacked["compression"]) == (
        packed["diff_id"], packed["digest"], compression)
    assert tree(dst) == tree(src)
    assert os.stat(dst / "bin/tool-hard").st_ino == os.stat(dst / "bin/tool").st_ino


def test_tar_is_reproducible_and_readable_by_other_tools(workdir):
    src = workdir / "src"
    make_tree(src)
    a = _native.pack_layer(str(src), str(workdir / "a.tgz"))
    b = _native.pack_layer(str(src), str(workdir / "b.tgz"))
    assert a == b and (workdir / "a.tgz").read_bytes() == (workdir / "b.tgz").read_bytes()
    fast = _native.pack_layer(str(src), str(workdir / "c.tgz"), level=1)
    assert fast["diff_id"] == a["diff_id"] and fast["digest"] != a["digest"]

    with tarfile.open(workdir / "a.tgz") as t:
        members = t.getmembers()
    names = [m.name for m in members]
    # depth-first, byte-sorted per directory, directories before their content
    assert names[:6] == ["bin", "bin/sh", "bin/tool", "bin/tool-hard", "empty", "etc"]
    assert all(m.uname == "" and m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["bin/tool-hard"].islnk() and by_name["bin/tool-hard"].linkname == "bin/tool"
    assert by_name["etc/conf"].pax_headers["SCHILY.xattr.user.origin"] == "test"
    assert by_name["longlink"].linkname == "x" * 150
    assert any(len(n) > 255 for n in names)
    assert by_name["fifo"].isfifo() and by_name["fifo"].mtime == 1_500_000_000
    # GNU tar agrees on the listing
    listing = subprocess.run(["tar", "-tzf", str(workdir / "a.tgz")], check=True,
                             capture_output=True, text=True).stdout.split("\n")
    assert [n.rstrip("/") for n in listing if n] == names


def test_levels_and_compressions_are_validated(workdir):
    src = workdir / "src"
    src.mkdir()
    (src / "f").write_text("x")
    out = workdir / "out.tgz"
    with pytest.raises(ValueError, match="gzip level 10 out of range 0-9"):
        _native.pack_layer(str(src), str(out), level=10)
    with pytest.raises(ValueError, match="unknown compression 'lz4'".replace("'", '"')):
        _native.pack_layer(str(src), str(out), compression="lz4")
    with pytest.raises(ValueError, match="zstd level 99"):
        _native.pack_layer(str(src), str(out), compression="zstd", level=99)
    assert not out.exists()
    r = _native.pack_layer(str(src), str(out), compression="zstd", level=19)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out.read_bytes())[:1] == b"f"
    assert r["size"] == out.stat().st_size


def test_missing_source_leaves_no_output(workdir):
    out = workdir / "out.tgz"
    with pytest.raises(_native.LayerError, match=r"opening .*missing.*No such file"):
        _native.pack_layer(str(workdir / "missing"), str(out))
    assert not out.exists()


def test_unreadable_output_dir(workdir):
    src = workdir / "src"
    src.mkdir()
    with pytest.raises(_native.LayerError, match=r"creating .*nodir/out.tgz"):
        _native.pack_layer(str(src), str(workdir / "nodir" / "out.tgz"))


def test_socket_files_are_skipped(workdir):
    import socket
    src = workdir / "src"
    src.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(src / "sock"))
    (src / "f").write_text("x")
    try:
        _native.pack_layer(str(src), str(workdir / "l.tar"), compression="none")
    finally:
        s.close()
    with tarfile.open(workdir / "l.tar") as t:
        assert t.getnames() == ["f"]


def test_empty_directory_gives_an_empty_tar(workdir):
    src = workdir / "src"
    src.mkdir()
    r = _native.pack_layer(str(src), str(workdir / "l.tar"), compression="none")
    assert (workdir / "l.tar").read_bytes() == b"\0" * 1024
    assert r["diff_id"] == sha256(b"\0" * 1024)


@needs_root
def test_overlay_upper_dir_becomes_oci_whiteouts(workdir):
    lower, upper, work, merged = (workdir / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "gone").write_text("lower")
    (lower / "kept").write_text("kept")
    (lower / "dir").mkdir()
    (lower / "dir/old").write_text("old")
    (lower / "sub").mkdir()
    (lower / "sub/x").write_text("x")
    (lower / "sub/y").write_text("y")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                   check=True, capture_output=True)
    try:
        (merged / "gone").unlink()
        subprocess.run(["rm", "-rf", str(merged / "dir")], check=True)
        (merged / "dir").mkdir()          # recreated: opaque in the upper dir
        (merged / "dir/new").write_text("new")
        (merged / "sub/x").unlink()
        (merged / "added").write_text("added")
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    # What the kernel left in the upper dir.
    assert stat.S_ISCHR(os.lstat(upper / "gone").st_mode)
    assert os.getxattr(upper / "dir", "trusted.overlay.opaque") == b"y"

    out = workdir / "diff.tgz"
    _native.pack_layer(str(upper), str(out), overlay_upper=True)
    with tarfile.open(out) as t:
        members = {m.name: m for m in t.getmembers()}
    assert sorted(members) == [".wh.gone", "added", "dir", "dir/.wh..wh..opq", "dir/new",
                               "sub", "sub/.wh.x"]
    assert members[".wh.gone"].isreg() and members[".wh.gone"].size == 0
    assert members["dir/.wh..wh..opq"].isreg()
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay.") for m in members.values()
                   for k in m.pax_headers)

    # Applied on top of the lower layer as a snapshot, the kernel shows the merged view.
    snap = workdir / "snap"
    _native.unpack_layer(str(out), str(snap))
    view = workdir / "view"
    view.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={snap}:{lower}", str(view)],
                   check=True, capture_output=True)
    try:
        assert sorted(os.listdir(view)) == ["added", "dir", "kept", "sub"]
        assert sorted(os.listdir(view / "dir")) == ["new"]
        assert sorted(os.listdir(view / "sub")) == ["y"]
    finally:
        subprocess.run(["umount", str(view)], check=True)


@needs_root
def test_without_overlay_flag_devices_stay_devices(workdir):
    src = workdir / "src"
    src.mkdir()
    os.mknod(src / "wh", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    _native.pack_layer(str(src), str(workdir / "l.tar"), compression="none")
    with tarfile.open(workdir / "l.tar") as t:
        (m,) = t.getmembers()
    assert m.name == "wh" and m.ischr() and (m.devmajor, m.devminor) == (0, 0)


def test_large_uid_uses_pax(workdir):
    if os.geteuid() != 0:
        pytest.skip("needs root for chown")
    src = workdir / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 3_000_000, 3_000_001)  # beyond ustar's 7 octal digits
    _native.pack_layer(str(src), str(workdir / "l.tar"), compression="none")
    with tarfile.open(workdir / "l.tar") as t:
        (m,) = t.getmembers()
    assert (m.uid, m.gid) == (3_000_000, 3_000_001)
    _native.unpack_layer(str(workdir / "l.tar"), str(workdir / "dst"))
    assert os.stat(workdir / "dst/f").st_uid == 3_000_000
