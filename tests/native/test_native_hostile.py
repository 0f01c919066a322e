"""Hostile layers: nothing may be written, chmod-ed, chown-ed or linked outside
the target root. Names that climb out are confined to the root (as Docker does);
hard links that would reach outside are refused with an error naming the entry."""

from __future__ import annotations

import gzip
import hashlib
import os
import uuid
from pathlib import Path

import pytest

from berth import _native
from layertar import LayerTar


def snapshot_outside(workdir: Path, root: Path) -> dict[str, tuple]:
    """Every path under workdir except the root, with what could change."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(workdir):
        d = Path(dirpath)
        if d == root or root in d.parents:
            continue
        for n in dirnames + filenames:
            p = d / n
            if p == root:
                continue
            s = p.lstat()
            seen[str(p)] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns, s.st_nlink)
    return seen


@pytest.fixture
def outside(workdir):
    """A directory next to the root holding a file the layer must not touch."""
    d = workdir / "outside"
    d.mkdir()
    (d / "victim").write_text("original\n")
    os.chmod(d / "victim", 0o600)
    return d


def test_dotdot_entries_are_confined(workdir, outside):
    root = workdir / "root"
    before = snapshot_outside(workdir, root)
    layer = (LayerTar()
             .file("../escape", b"x")
             .file("a/../../../escape2", b"y")
             .file("../outside/victim", b"overwritten", mode=0o4777, uid=1234)
             .write(workdir / "l.tgz"))
    _native.unpack_layer(str(layer), str(root))
    # Confined: they land inside the root under their cleaned names.
    assert (root / "escape").read_bytes() == b"x"
    assert (root / "escape2").read_bytes() == b"y"
    assert (root / "outside" / "victim").read_bytes() == b"overwritten"
    assert not (workdir / "escape").exists() and not (workdir / "escape2").exists()
    assert (outside / "victim").read_text() == "original\n"
    after = snapshot_outside(workdir, root)
    after.pop(str(workdir / "l.tgz"))
    assert after == before


def test_absolute_names_are_confined(workdir):
    root = workdir / "root"
    name = f"berth-test-{uuid.uuid4().hex}"
    layer = LayerTar().file(f"/tmp/{name}", b"abs").dir("/abs-dir/").write(workdir / "l.tgz")
    _native.unpack_layer(str(layer), str(root))
    assert (root / "tmp" / name).read_bytes() == b"abs"
    assert (root / "abs-dir").is_dir()
    assert not Path("/tmp", name).exists()


def test_symlink_to_outside_then_file_under_it(workdir, outside):
    root = workdir / "root"
    inner = outside.relative_to("/")
    before = snapshot_outside(workdir, root)
    layer = (LayerTar()
             .dir(f"{inner}/")                       # the same path exists inside the layer
             .symlink("abs", str(outside))           # absolute, pointing at a real host dir
             .symlink("rel", "../../../../../..")     # relative, climbing out
             .file("abs/pwned", b"1")
             .file("rel/pwned2", b"2")
             .file("abs/victim", b"overwritten", mode=0o4777)
             .dir("rel/newdir")
             .write(workdir / "l.tgz"))
    _native.unpack_layer(str(layer), str(root))
    # The symlinks are kept verbatim, but resolved as if the root were "/".
    assert os.readlink(root / "abs") == str(outside)
    assert (root / inner / "pwned").read_bytes() == b"1"
    assert (root / inner / "victim").read_bytes() == b"overwritten"
    assert (root / "pwned2").read_bytes() == b"2"
    assert (root / "newdir").is_dir()
    assert not (outside / "pwned").exists()
    assert (outside / "victim").read_text() == "original\n"
    after = snapshot_outside(workdir, root)
    after.pop(str(workdir / "l.tgz"))
    assert after == before


def test_symlink_to_outside_dangling_inside_the_root_is_refused(workdir, outside):
    root = workdir / "root"
    before = snapshot_outside(workdir, root)
    layer = LayerTar().symlink("abs", str(outside)).file("abs/pwned", b"1").write(workdir / "l.tgz")
    with pytest.raises(_native.LayerError,
                       match=r'tar entry "abs/pwned": parent directory "abs" does not resolve to a directory inside the layer'):
        _native.unpack_layer(str(layer), str(root))
    assert not (outside / "pwned").exists()
    after = snapshot_outside(workdir, root)
    after.pop(str(workdir / "l.tgz"))
    assert after == before


@pytest.mark.parametrize("link", ["etc", "hostetc"])
def test_symlink_to_etc_then_write_under_it(workdir, link):
    # "etc" -> "/etc" loops once resolved inside the root; "hostetc" -> "/etc"
    # dangles there. Both are refused; neither may reach the host's /etc.
    root = workdir / "root"
    name = f"berth-test-{uuid.uuid4().hex}"
    etc_before = sorted(os.listdir("/etc"))
    shadow_before = os.stat("/etc/shadow")
    shadow_sum = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    for i, victim in enumerate([name, "shadow"]):
        layer = (LayerTar()
                 .symlink(link, "/etc")
                 .file(f"{link}/{victim}", b"root::0:0:99999:7:::\n", mode=0o4755)
                 .write(workdir / f"l{i}.tgz"))
        try:
            with pytest.raises(_native.LayerError, match=rf'tar entry "{link}/{victim}": parent directory'):
                _native.unpack_layer(str(layer), str(root / str(i)))
        finally:
            if Path("/etc", name).exists():
                Path("/etc", name).unlink()
                pytest.fail("wrote into the host's /etc")
    assert sorted(os.listdir("/etc")) == etc_before
    after = os.stat("/etc/shadow")
    assert (after.st_ino, after.st_mode, after.st_size, after.st_mtime_ns) == (
        shadow_before.st_ino, shadow_before.st_mode, shadow_before.st_size, shadow_before.st_mtime_ns)
    assert hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() == shadow_sum


def test_symlink_to_etc_with_etc_inside_the_layer_is_confined(workdir):
    root = workdir / "root"
    name = f"berth-test-{uuid.uuid4().hex}"
    layer = (LayerTar()
             .dir("etc/")
             .symlink("host", "/etc")
             .file(f"host/{name}", b"evil")
             .write(workdir / "l.tgz"))
    try:
        _native.unpack_layer(str(layer), str(root))
        assert (root / "etc" / name).read_bytes() == b"evil"
        assert not Path("/etc", name).exists()
    finally:
        Path("/etc", name).unlink(missing_ok=True)


def test_hard_link_to_host_shadow_is_refused(workdir):
    root = workdir / "root"
    before = os.stat("/etc/shadow")
    digest_before = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    for i, (link, target) in enumerate([("shadow", "/etc/shadow"),
                                        ("deep/shadow", "../../../../../../etc/shadow")]):
        layer = LayerTar().file("ok", b"fine").hardlink(link, target).write(workdir / f"l{i}.tgz")
        with pytest.raises(_native.LayerError) as err:
            _native.unpack_layer(str(layer), str(root / str(i)))
        assert repr(link) in str(err.value).replace('"', "'")
        assert "not found inside the layer" in str(err.value)
        assert not (root / str(i) / link).exists()
    after = os.stat("/etc/shadow")
    assert after.st_nlink == before.st_nlink == 1
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (before.st_mode, before.st_uid, before.st_mtime_ns)
    assert hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() == digest_before


def test_hard_link_through_symlink_to_outside_is_refused(workdir, outside):
    root = workdir / "root"
    layer = (LayerTar()
             .symlink("out", str(outside))
             .hardlink("stolen", "out/victim")
             .write(workdir / "l.tgz"))
    with pytest.raises(_native.LayerError, match=r"stolen.*not found inside the layer"):
        _native.unpack_layer(str(layer), str(root))
    assert os.stat(outside / "victim").st_nlink == 1
    assert not (root / "stolen").exists()


def test_hard_link_to_symlink_links_the_symlink_itself(workdir, outside):
    # A hard link to a symlink must not follow it to the host file.
    root = workdir / "root"
    layer = (LayerTar()
             .symlink("sym", str(outside / "victim"))
             .hardlink("alias", "sym")
             .write(workdir / "l.tgz"))
    _native.unpack_layer(str(layer), str(root))
    assert os.readlink(root / "alias") == str(outside / "victim")
    assert os.lstat(root / "alias").st_ino == os.lstat(root / "sym").st_ino
    assert os.stat(outside / "victim").st_nlink == 1


def test_hard_link_with_dotdot_target_is_confined(workdir):
    root = workdir / "root"
    layer = LayerTar().file("real", b"data").hardlink("a/b/alias", "../../../real").write(workdir / "l.tgz")
    _native.unpack_layer(str(layer), str(root))
    assert os.stat(root / "a/b/alias").st_ino == os.stat(root / "real").st_ino


def test_symlinked_parent_then_chmod_does_not_reach_outside(workdir, outside):
    # A directory entry under a symlink to outside must not chmod/chown the host dir.
    root = workdir / "root"
    mode_before = os.stat(outside).st_mode
    layer = (LayerTar()
             .symlink("d", str(outside))
             .dir("d", mode=0o777, uid=4321)  # replaces the symlink, not its target
             .write(workdir / "l.tgz"))
    _native.unpack_layer(str(layer), str(root))
    assert os.stat(outside).st_mode == mode_before
    assert (root / "d").is_dir() and not (root / "d").is_symlink()
    assert os.stat(root / "d").st_uid == 4321


def test_truncated_gzip_stream(workdir):
    root = workdir / "root"
    data = gzip.compress(LayerTar().file("big", os.urandom(300_000)).file("after", b"x").bytes())
    for cut in (len(data) // 2, len(data) - 4):
        bad = workdir / f"cut{cut}.tgz"
        bad.write_bytes(data[:cut])
        with pytest.raises(_native.LayerError, match=r"corrupt gzip stream: .*truncated"):
            _native.unpack_layer(str(bad), str(root / str(cut)))


def test_corrupt_gzip_stream(workdir):
    data = bytearray(gzip.compress(LayerTar().file("f", os.urandom(100_000)).bytes()))
    data[len(data) // 2] ^= 0xFF
    bad = workdir / "bad.tgz"
    bad.write_bytes(bytes(data))
    with pytest.raises(_native.LayerError, match=r"corrupt gzip stream"):
        _native.unpack_layer(str(bad), str(workdir / "root"))


def test_corrupt_tar_header(workdir):
    data = bytearray(LayerTar().file("f", b"x").bytes())
    data[0:5] = b"\xff\xff\xff\xff\xff"  # breaks the header checksum
    bad = workdir / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(_native.LayerError, match=r"corrupt tar stream: .*checksum"):
        _native.unpack_layer(str(bad), str(workdir / "root"))


def test_digest_mismatch(workdir):
    tar = LayerTar().file("f", b"content").bytes()
    layer = workdir / "l.tgz"
    layer.write_bytes(gzip.compress(tar))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(_native.LayerError, match=r"layer digest mismatch: expected sha256:0{64}, got sha256:"):
        _native.unpack_layer(str(layer), str(workdir / "r1"), expected_digest=wrong)
    with pytest.raises(_native.LayerError, match=r"layer diff_id mismatch"):
        _native.unpack_layer(str(layer), str(workdir / "r2"), expected_diff_id=wrong)
    right = _native.unpack_layer(str(layer), str(workdir / "r3"),
                                 expected_digest="sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest(),
                                 expected_diff_id="sha256:" + hashlib.sha256(tar).hexdigest())
    assert right["entries"] == 1


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "0" * 64, "sha256:" + "G" * 64])
def test_malformed_expected_digest_is_rejected_before_writing(workdir, bad):
    layer = LayerTar().file("f", b"x").write(workdir / "l.tgz")
    with pytest.raises(ValueError, match="not a digest"):
        _native.unpack_layer(str(layer), str(workdir / "root"), expected_digest=bad)
    assert not (workdir / "root").exists()


def test_whiteout_with_empty_name_is_an_error(workdir):
    layer = LayerTar().file("dir/.wh.", b"").write(workdir / "l.tgz")
    with pytest.raises(_native.LayerError, match=r"dir/\.wh\..*whiteout names no file"):
        _native.unpack_layer(str(layer), str(workdir / "root"))


def test_layer_cannot_smuggle_overlay_xattrs(workdir):
    # trusted.overlay.* could redirect overlayfs lookups; only whiteouts may make them.
    root = workdir / "root"
    layer = LayerTar().dir("d", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                             "SCHILY.xattr.user.kept": "yes"}).write(workdir / "l.tgz")
    _native.unpack_layer(str(layer), str(root))
    assert os.listxattr(root / "d") == ["user.kept"]


def test_missing_source(workdir):
    with pytest.raises(_native.LayerError, match=r"opening layer .*nope.*No such file"):
        _native.unpack_layer(str(workdir / "nope.tgz"), str(workdir / "root"))


def test_oversized_pax_header_is_refused(workdir):
    # Extension headers are read into memory: capped at 1 MiB, as Go's reader caps them,
    # so a small gzip bomb cannot make the daemon allocate gigabytes.
    layer = LayerTar().file("f", b"x", pax_headers={"comment": "A" * (2 << 20)}).write(workdir / "l.tgz")
    assert layer.stat().st_size < 20_000
    with pytest.raises(_native.LayerError, match=r"corrupt tar stream: .*PAX header of \d+ bytes is over the 1048576-byte limit"):
        _native.unpack_layer(str(layer), str(workdir / "root"))


def test_pax_sparse_is_refused_not_misread(workdir):
    layer = LayerTar().file("f", b"x", pax_headers={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}).write(workdir / "l.tgz")
    with pytest.raises(_native.LayerError, match=r"PAX sparse files .* are not supported"):
        _native.unpack_layer(str(layer), str(workdir / "root"))
