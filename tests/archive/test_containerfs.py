"""berth.volumes.containerfs and .changes on plain directories: path stat,
cp/export naming, hostile archives, and diffs of an overlay upper dir."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.volumes import containerfs as cfs
from berth.volumes.changes import upper_changes
from berth.volumes.rootview import RootView

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and mounts need root")


@pytest.fixture
def root(workdir) -> Path:
    """A small container root: /etc (passwd, group, a link to passwd), /data
    with a hard link pair, symlinks (absolute, relative, dangling, a loop)."""
    r = workdir / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home:/bin/sh\n")
    (r / "etc" / "group").write_text("root:x:0:\nusers:x:100:\n")
    os.symlink("passwd", r / "etc" / "pw-link")
    (r / "data").mkdir()
    (r / "data" / "a.txt").write_text("aaa")
    os.link(r / "data" / "a.txt", r / "data" / "b.txt")
    os.symlink("/etc", r / "etc-abs")
    os.symlink("/etc/passwd", r / "data" / "abs-passwd")
    os.symlink("../../../../../../etc", r / "climb")
    os.symlink("/nowhere/at/all", r / "dangling")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.utime(r / "data" / "a.txt", ns=(1_600_000_000_123_456_789,) * 2)
    return r


@pytest.fixture
def view(root):
    with RootView.of_directory(str(root)) as v:
        yield v


def tar_names(produce) -> list[str]:
    buf = io.BytesIO()
    produce(buf)
    return tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()


def archive(view, path) -> tarfile.TarFile:
    buf = io.BytesIO()
    abs_path = cfs.container_path(path)
    cfs.write_archive(view, abs_path, cfs.stat_path(view, abs_path), buf)
    return tarfile.open(fileobj=io.BytesIO(buf.getvalue()))


# -- paths and stat -----------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("etc", "/etc"), ("/etc/", "/etc/"), ("/etc/.", "/etc/."), (".", "/."), ("/", "/"),
    ("//a//b/../c", "/a/c"), ("../../x", "/x"),
])
def test_container_path(raw, expected):
    assert cfs.container_path(raw) == expected


def test_stat_file_dir_and_root(view):
    st = cfs.stat_path(view, "/data/a.txt")
    assert (st.name, st.size, st.mode, st.link_target) == ("a.txt", 3, 0o644, "")
    assert st.as_json()["mtime"] == "2020-09-13T12:26:40.123456789Z"
    d = cfs.stat_path(view, "/etc")
    assert d.mode == cfs.GO_MODE_DIR | 0o755 and d.is_dir
    assert cfs.stat_path(view, "/").name == "/"
    assert cfs.stat_path(view, "/etc/.").name == "."


def test_stat_symlinks_report_their_target_inside_the_container(view):
    st = cfs.stat_path(view, "/etc/pw-link")
    assert st.mode & cfs.GO_MODE_SYMLINK and st.link_target == "/etc/passwd"
    assert cfs.stat_path(view, "/climb").link_target == "/etc"   # ".." stops at the root
    assert cfs.stat_path(view, "/dangling").link_target == "/nowhere/at/all"
    # The parent is followed (inside the container), the last element is not.
    assert cfs.stat_path(view, "/etc-abs/passwd").name == "passwd"
    with pytest.raises(OSError):
        cfs.stat_path(view, "/loop1")


def test_stat_missing(view):
    for path in ("/nope", "/etc/passwd/x", "/dangling/x"):
        with pytest.raises(cfs.PathNotFound):
            cfs.stat_path(view, path)


def test_escaping_symlinks_stay_in_the_root(view, root):
    # /climb is ../../../etc: inside the root it is the root's /etc.
    fd = view.open("/climb/passwd", os.O_RDONLY)
    try:
        assert os.read(fd, 100).startswith(b"root:x:0:0::/root")
    finally:
        os.close(fd)


# -- tar streams --------------------------------------------------------------------------

def test_archive_of_a_directory_is_named_after_it(view):
    tar = archive(view, "/data")
    assert tar.getnames() == ["data", "data/a.txt", "data/abs-passwd", "data/b.txt"]
    assert tar.getmember("data").isdir()
    b = tar.getmember("data/b.txt")
    assert b.islnk() and b.linkname == "data/a.txt"
    assert tar.getmember("data/abs-passwd").linkname == "/etc/passwd"
    assert tar.extractfile("data/a.txt").read() == b"aaa"


def test_archive_of_directory_content_and_of_the_root(view):
    assert archive(view, "/etc/.").getnames()[:2] == [".", "./group"]
    names = archive(view, "/").getnames()
    # Docker's naming for the root: "/" then "/etc", "/etc/passwd"... (Python's
    # tarfile reads the "/" of the first entry back as "").
    assert names[0] == "" and names[1] == "/climb" and "/etc/passwd" in names


def test_archive_of_a_file_and_of_a_symlink(view):
    assert archive(view, "/etc/passwd").getnames() == ["passwd"]
    link = archive(view, "/etc/pw-link").getmember("pw-link")
    assert link.issym() and link.linkname == "passwd"


@needs_root
def test_archive_keeps_owners_modes_and_xattrs(view, root):
    os.chown(root / "data" / "a.txt", 1234, 5678)
    os.chmod(root / "data" / "a.txt", 0o4750)
    os.setxattr(root / "data" / "a.txt", "user.note", b"\x00\xffbinary")
    member = archive(view, "/data/a.txt").getmember("a.txt")
    assert (member.uid, member.gid, member.mode) == (1234, 5678, 0o4750)
    raw = member.pax_headers["SCHILY.xattr.user.note"]
    assert raw.encode("utf-8", "surrogateescape") == b"\x00\xffbinary"


def test_export_names(view):
    names = tar_names(lambda out: cfs.write_export(view, out))
    assert names[:3] == ["climb", "dangling", "data"] and "etc/passwd" in names
    assert not any(n.startswith(("/", "./")) for n in names)


# -- extraction ----------------------------------------------------------------------------

def make_tar(*entries) -> tarfile.TarFile:
    """entries: (name, kind, extra) with kind file|dir|symlink|hardlink|fifo|char."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_500_000_000
            data = None
            if kind == "file":
                data = extra.get("data", b"")
                info.size = len(data)
                info.mode = extra.get("mode", 0o644)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, extra.get("mode", 0o755)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra["to"]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra["to"]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "char":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            info.uid, info.gid = extra.get("owner", (0, 0))
            info.pax_headers.update(extra.get("pax", {}))
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return tarfile.open(fileobj=io.BytesIO(buf.getvalue()))


def extract(view, dest, tar, **kw):
    members = tar.getmembers()
    cfs.check_archive(members)
    cfs.extract_archive(view, dest, tar, members, **kw)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@needs_root
def test_extract_files_dirs_and_attributes(view, root):
    tar = make_tar(("./", "dir", {"mode": 0o700}),
                   ("new", "dir", {"mode": 0o750, "owner": (1000, 100)}),
                   ("new/file.txt", "file", {"data": b"payload", "mode": 0o640, "owner": (1000, 100),
                                             "pax": {"SCHILY.xattr.user.k": "v"}}),
                   ("new/link", "symlink", {"to": "file.txt"}),
                   ("new/hard", "hardlink", {"to": "new/file.txt"}),
                   ("new/fifo", "fifo", {}),
                   ("new/null", "char", {}),
                   ("deep/auto/parent.txt", "file", {"data": b"x"}))
    extract(view, "/data", tar)
    data = root / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o755  # "." is left as it is
    st = (data / "new" / "file.txt").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1000, 100, 0o640, 1_500_000_000)
    assert (data / "new" / "file.txt").read_bytes() == b"payload"
    assert os.getxattr(data / "new" / "file.txt", "user.k") == b"v"
    assert os.readlink(data / "new" / "link") == "file.txt"
    assert (data / "new" / "hard").stat().st_ino == st.st_ino
    assert stat.S_ISFIFO((data / "new" / "fifo").lstat().st_mode)
    assert (data / "new" / "null").lstat().st_rdev == os.makedev(1, 3)
    assert (data / "new").stat().st_mtime == 1_500_000_000
    assert stat.S_IMODE((data / "deep").stat().st_mode) == 0o755


@pytest.mark.parametrize("entries, message", [
    ([("../escape.txt", "file", {"data": b"x"})], "invalid tar entry '../escape.txt'"),
    ([("a/../../escape.txt", "file", {"data": b"x"})], "invalid tar entry 'a/../../escape.txt'"),
    ([("ok.txt", "file", {"data": b"x"}), ("sneaky", "hardlink", {"to": "../../etc/passwd"})],
     "invalid hardlink 'sneaky' -> '../../etc/passwd'"),
    ([("up", "symlink", {"to": "../../../outside"})], "invalid symlink 'up' -> '../../../outside'"),
])
def test_hostile_archives_are_refused_before_anything_is_written(view, root, entries, message):
    before = tree(root)
    with pytest.raises(InvalidArgument) as err:
        extract(view, "/data", make_tar(*entries))
    assert err.value.message.startswith(message)
    assert tree(root) == before


@needs_root
def test_symlinks_cannot_lead_writes_out_of_the_root(view, root, workdir):
    outside = workdir / "host-side"
    outside.mkdir()
    # Planted in the container: a symlink to a host path, which exists in the
    # container too (so it resolves there), and one that dangles there.
    os.symlink(str(outside), root / "data" / "to-host")
    (root / str(outside).lstrip("/")).mkdir(parents=True)
    os.symlink(str(workdir / "only-on-host"), root / "data" / "dangling-to-host")
    (workdir / "only-on-host").mkdir()
    tar = make_tar(("evil", "symlink", {"to": "/"}),
                   ("evil/etc/pwned", "file", {"data": b"root-relative"}),
                   ("to-host/pwned", "file", {"data": b"host path, container meaning"}),
                   ("/abs/name.txt", "file", {"data": b"absolute names land in dest"}),
                   ("hard-abs", "hardlink", {"to": "/abs/name.txt"}))
    extract(view, "/data", tar)
    assert os.listdir(outside) == []
    assert (root / "etc" / "pwned").read_bytes() == b"root-relative"
    assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"host path, container meaning"
    assert (root / "data" / "abs" / "name.txt").exists()
    assert (root / "data" / "hard-abs").stat().st_ino == (root / "data" / "abs" / "name.txt").stat().st_ino
    with pytest.raises(InvalidArgument, match="dangling-to-host is a dangling symlink"):
        extract(view, "/data", make_tar(("dangling-to-host/x", "file", {"data": b"x"})))
    assert os.listdir(workdir / "only-on-host") == []


@needs_root
def test_no_overwrite_dir_non_dir(view, root):
    with pytest.raises(InvalidArgument, match="cannot overwrite directory '/data/sub' with non-directory"):
        (root / "data" / "sub").mkdir()
        extract(view, "/data", make_tar(("sub", "file", {"data": b"x"})), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory '/data/a.txt' with directory"):
        extract(view, "/data", make_tar(("a.txt", "dir", {})), no_overwrite_dir_non_dir=True)
    assert (root / "data" / "sub").is_dir() and (root / "data" / "a.txt").is_file()
    # Allowed when the client does not ask for the check (Docker replaces).
    extract(view, "/data", make_tar(("sub", "file", {"data": b"now a file"})))
    assert (root / "data" / "sub").read_bytes() == b"now a file"


@needs_root
def test_owner_override(view, root):
    extract(view, "/data", make_tar(("owned.txt", "file", {"data": b"x", "owner": (7, 7)})),
            owner=(1000, 100))
    st = (root / "data" / "owned.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 100)


# -- diff of an upper dir -----------------------------------------------------------------

@needs_root
def test_upper_changes(workdir):
    lower = workdir / "lower"
    upper = workdir / "upper"
    for d in ("etc", "home/old", "var/log", "bin", "proc"):
        (lower / d).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("p")
    (lower / "etc" / "group").write_text("g")
    (lower / "home" / "old" / "f").write_text("f")
    (lower / "home" / "keep").write_text("k")
    (lower / "bin" / "sh").write_text("sh")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("changed")
    os.mknod(upper / "etc" / "group", 0o600 | stat.S_IFCHR, os.makedev(0, 0))   # deleted
    (upper / "etc" / "hosts").write_text("")         # runtime mount point: not a change
    (upper / "etc" / "hostname").write_text("")
    (upper / "home").mkdir()                          # rm -rf /home; mkdir /home; touch x
    os.setxattr(upper / "home", "trusted.overlay.opaque", b"y")
    (upper / "home" / "x").write_text("")
    (upper / "new" / "dir").mkdir(parents=True)
    (upper / "new" / "dir" / "file").write_text("n")
    (upper / "bin").mkdir()
    os.chmod(lower / "bin", 0o755)
    os.chmod(upper / "bin", 0o700)                    # a mode change is a change
    with RootView.of_layers(str(workdir / "tmp"), [str(lower)], readonly=True) as view:
        changes = [(c["Kind"], c["Path"]) for c in upper_changes(str(upper), view)]
    assert changes == [
        (0, "/bin"),
        (0, "/etc"), (2, "/etc/group"), (0, "/etc/passwd"),
        (0, "/home"), (2, "/home/keep"), (2, "/home/old"), (1, "/home/x"),
        (1, "/new"), (1, "/new/dir"), (1, "/new/dir/file"),
    ]


def test_upper_changes_without_layers(workdir):
    upper = workdir / "upper"
    (upper / "a").mkdir(parents=True)
    (upper / "a" / "b").write_text("b")
    assert upper_changes(str(upper), None) == [{"Path": "/a", "Kind": 1}, {"Path": "/a/b", "Kind": 1}]
