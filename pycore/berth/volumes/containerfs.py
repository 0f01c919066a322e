"""What ``docker cp``, ``docker export`` and volume pre-filling do with a
container's filesystem, on a :class:`~berth.volumes.rootview.RootView`.

- :func:`stat_path`: Docker's ``ContainerPathStat`` of a path (the
  ``X-Docker-Container-Path-Stat`` header);
- :func:`write_archive` / :func:`write_export`: tar streams with Docker's
  entry naming for ``cp`` and ``export``;
- :func:`extract_archive`: a tar into a directory of the container;
- :func:`copy_tree`: a directory of one view into a host directory, keeping
  owners, modes, times, xattrs and hard links (volume pre-filling).

Paths are container paths; every lookup is ``openat2(RESOLVE_IN_ROOT)`` from
the view's root and every entry is then opened by a single name relative to
an fd of its parent with ``O_NOFOLLOW``, so neither a hostile archive nor a
symlink planted in the container can lead a read or write outside it.
"""

from __future__ import annotations

import collections
import errno
import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

from berth.errors import InvalidArgument, NotFound
from berth.images.timefmt import format_rfc3339nano
from berth.volumes import _linux as L
from berth.volumes.rootview import RootView, make_path

COPY_CHUNK = 1 << 20
MAX_SYMLINKS = 255

# Go's os.FileMode type bits (what Docker's path stat reports).
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# Overlay bookkeeping and kernel-owned attributes never travel in an archive.
_SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "system.")
_XATTR_PAX = "SCHILY.xattr."


class PathNotFound(NotFound):
    """A path that does not exist in the container (the API adds the names)."""


def go_file_mode(st_mode: int) -> int:
    mode = stat.S_IMODE(st_mode) & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= GO_MODE_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= GO_MODE_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        mode |= GO_MODE_NAMED_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= GO_MODE_SOCKET
    elif stat.S_ISBLK(st_mode):
        mode |= GO_MODE_DEVICE
    elif stat.S_ISCHR(st_mode):
        mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


# -- paths --------------------------------------------------------------------------

def clean_path(path: str) -> str:
    """Go's ``filepath.Clean("/" + path)``: absolute, no ``.``/``..``/``//``."""
    cleaned = posixpath.normpath("/" + path)
    return "/" + cleaned.lstrip("/")


def container_path(path: str) -> str:
    """The absolute container path the API's ``path`` names, keeping a trailing
    ``/`` or ``/.`` (they mean "the directory itself" / "its content")."""
    cleaned = clean_path(path)
    if (path == "." or path.endswith("/.")) and not cleaned.endswith("/."):
        return cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        return cleaned + "/"
    return cleaned


def go_base(path: str) -> str:
    """``filepath.Base``: the last element, ``/`` for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def _split(path: str) -> tuple[str, str]:
    """``filepath.Split``: everything up to the last ``/``, and the rest."""
    i = path.rfind("/")
    return path[:i + 1], path[i + 1:]


def resolve_in_scope(view: RootView, path: str) -> str:
    """Every symlink along ``path`` evaluated inside the container, as far as
    the path exists (Docker's ``FollowSymlinkInScope``): the container path
    of what ``path`` finally names."""
    pending = collections.deque(p for p in path.split("/") if p)
    resolved: list[str] = []
    links = 0
    missing = False
    while pending:
        name = pending.popleft()
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        if missing:
            resolved.append(name)
            continue
        parent = view.open("/" + "/".join(resolved), os.O_PATH | os.O_DIRECTORY)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                missing = True
                resolved.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    resolved = []
                pending.extendleft(reversed([p for p in target.split("/") if p]))
            else:
                resolved.append(name)
        finally:
            os.close(parent)
    return "/" + "/".join(resolved)


@dataclass
class PathStat:
    name: str
    size: int
    mode: int          # Go os.FileMode bits
    mtime_ns: int
    link_target: str
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode,
                "mtime": format_rfc3339nano(self.mtime_ns), "linkTarget": self.link_target}


def stat_path(view: RootView, abs_path: str) -> PathStat:
    """lstat of ``abs_path`` (from :func:`container_path`): its parent is
    resolved inside the container, its last element is not followed."""
    parent, base = _split(abs_path)
    try:
        dfd = view.open(parent or "/", os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotFound(abs_path) from None
    try:
        try:
            if base in ("", "."):
                st = os.fstat(dfd)
            else:
                st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(abs_path) from None
    finally:
        os.close(dfd)
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        link_target = resolve_in_scope(view, abs_path)
    return PathStat(go_base(abs_path), st.st_size, go_file_mode(st.st_mode), st.st_mtime_ns,
                    link_target, st)


# -- reading: tar streams -------------------------------------------------------------

def _xattrs(dirfd: int, name: str) -> dict[str, bytes]:
    path = f"{L.fd_path(dirfd)}/{name}"
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for key in names:
        if key.startswith(_SKIPPED_XATTR_PREFIXES):
            continue
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
    return out


class _SizedReader:
    """Exactly ``size`` bytes of an fd: a file that shrinks while it is read
    (a running container) is padded with zeros, one that grows is cut, so the
    tar stream stays well formed."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        if n == 0:
            return b""
        data = os.read(self.fd, min(n, COPY_CHUNK))
        if not data:
            data = bytes(min(n, COPY_CHUNK))
        self.left -= len(data)
        return data


class _TarOut:
    """A PAX tar stream built from stat results of entries opened by fd."""

    def __init__(self, out: BinaryIO):
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                                copybufsize=COPY_CHUNK)
        self.links: dict[tuple[int, int], str] = {}

    def add(self, dirfd: int, name: str, arcname: str, st: os.stat_result) -> bool:
        """One entry; False for a socket (tar cannot hold one, Docker skips it)."""
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return False
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = st.st_mtime_ns // 1_000_000_000
        xattrs = _xattrs(dirfd, name)
        if xattrs:
            info.pax_headers = {_XATTR_PAX + k: v.decode("utf-8", "surrogateescape")
                                for k, v in xattrs.items()}
        fileobj = None
        fd = -1
        try:
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                if not info.name.endswith("/"):
                    info.name += "/"
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(name, dir_fd=dirfd)
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = self.links[key]
                else:
                    if st.st_nlink > 1:
                        self.links[key] = arcname
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                 | os.O_CLOEXEC, dir_fd=dirfd)
                    fst = os.fstat(fd)
                    if (fst.st_dev, fst.st_ino) != key:
                        return False  # replaced while we looked: skip, as a vanished file
                    info.type = tarfile.REGTYPE
                    info.size = fst.st_size
                    fileobj = _SizedReader(fd, fst.st_size)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
            else:
                return False
            self.tar.addfile(info, fileobj)
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        self.tar.close()


def _walk_into(view: RootView, out: _TarOut, dirfd: int, prefix: str) -> None:
    """Every entry below directory ``dirfd``, depth first, names sorted, named
    ``prefix + name``; pseudo filesystems (a running container's /proc...)
    are listed but not entered."""
    stack: list[tuple[int, str, Iterator[str]]] = [(dirfd, prefix, iter(sorted(os.listdir(dirfd))))]
    try:
        while stack:
            fd, pre, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if fd != dirfd:
                    os.close(fd)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing
            arcname = pre + name
            if not out.add(fd, name, arcname, st):
                continue
            if stat.S_ISDIR(st.st_mode) and not view.is_pseudo(st):
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                try:
                    listing = iter(sorted(os.listdir(child)))
                except OSError:
                    os.close(child)
                    raise
                stack.append((child, arcname + "/", listing))
    finally:
        for fd, _, _ in stack:
            if fd != dirfd:
                os.close(fd)


def write_archive(view: RootView, abs_path: str, path_stat: PathStat, out: BinaryIO) -> None:
    """``GET /containers/{id}/archive``: ``abs_path`` as Docker names it for
    ``docker cp`` -- a directory as ``<base>/...`` (``./...`` for a path
    ending in ``/.``, ``/...`` for the root), anything else as one entry
    ``<base>``, a symlink as itself."""
    rebase = go_base(abs_path)
    tar = _TarOut(out)
    if path_stat.is_dir:
        prefix = "" if rebase == "/" else rebase
        dfd = view.open(abs_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.fstat(dfd)
            tar.add(dfd, ".", prefix + "/", st)
            _walk_into(view, tar, dfd, prefix + "/")
        finally:
            os.close(dfd)
    else:
        parent, base = _split(abs_path.rstrip("/"))
        pfd = view.open(parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            try:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise PathNotFound(abs_path) from None
            tar.add(pfd, base, rebase, st)
        finally:
            os.close(pfd)
    tar.close()


def write_export(view: RootView, out: BinaryIO) -> None:
    """``docker export``: the whole tree, names relative to ``/`` without a
    root entry."""
    tar = _TarOut(out)
    dfd = view.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        _walk_into(view, tar, dfd, "")
    finally:
        os.close(dfd)
    tar.close()


# -- writing: entries --------------------------------------------------------------------

@dataclass
class Entry:
    """A filesystem entry to create, from a tar header or another tree."""

    kind: str                   # "dir" | "file" | "symlink" | "hardlink" | "char" | "block" | "fifo"
    mode: int = 0o644           # permission bits incl. setuid/setgid/sticky
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    atime_ns: int | None = None
    linkname: str = ""          # symlink target, as written
    rdev: int = 0
    xattrs: dict[str, bytes] | None = None


def _remove_existing(parent: int, name: str, keep_dir: bool) -> os.stat_result | None:
    """Clear ``name`` for a new entry; a directory stays when ``keep_dir``."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return st
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)
    return None


def _apply_attrs(parent: int, name: str, e: Entry, fd: int | None = None) -> None:
    """Owner, then mode (a chown clears setuid), xattrs and times."""
    if e.kind == "symlink":
        os.chown(name, e.uid, e.gid, dir_fd=parent, follow_symlinks=False)
        if e.xattrs:
            path = f"{L.fd_path(parent)}/{name}"
            for key, value in e.xattrs.items():
                _set_xattr(path, key, value, follow=False)
        atime = e.mtime_ns if e.atime_ns is None else e.atime_ns
        os.utime(name, ns=(atime, e.mtime_ns), dir_fd=parent, follow_symlinks=False)
        return
    own_fd = fd is None
    if own_fd:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        path = L.fd_path(fd)
        os.chown(path, e.uid, e.gid)
        os.chmod(path, e.mode & 0o7777)
        for key, value in (e.xattrs or {}).items():
            _set_xattr(path, key, value, follow=True)
        atime = e.mtime_ns if e.atime_ns is None else e.atime_ns
        os.utime(path, ns=(atime, e.mtime_ns))
    finally:
        if own_fd:
            os.close(fd)


def _set_xattr(path: str, key: str, value: bytes, follow: bool) -> None:
    if key.startswith(_SKIPPED_XATTR_PREFIXES):
        return
    try:
        os.setxattr(path, key, value, follow_symlinks=follow)
    except OSError as exc:
        # A filesystem without xattrs (or user.* on a symlink) loses them,
        # as Docker's best effort does; anything else is an error.
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise


def create_entry(parent: int, name: str, e: Entry, *, data: Callable[[int], None] | None = None,
                 link_fd: int | None = None, no_overwrite_dir_non_dir: bool = False,
                 describe: str = "") -> None:
    """Create ``name`` in directory ``parent`` (an fd) as ``e`` describes,
    replacing what is there (a directory only by a directory unless
    ``no_overwrite_dir_non_dir`` is off). ``data(fd)`` writes a regular
    file's content; ``link_fd`` is the O_PATH fd a hard link points to.
    Directory times are the caller's to set last."""
    where = describe or name
    try:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and no_overwrite_dir_non_dir:
        if stat.S_ISDIR(existing.st_mode) and e.kind != "dir":
            raise InvalidArgument(f"cannot overwrite directory {where!r} with non-directory")
        if not stat.S_ISDIR(existing.st_mode) and e.kind == "dir":
            raise InvalidArgument(f"cannot overwrite non-directory {where!r} with directory")
    if e.kind == "dir":
        if _remove_existing(parent, name, keep_dir=True) is None:
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
        try:
            _apply_attrs(parent, name, e, fd)
        finally:
            os.close(fd)
        return
    _remove_existing(parent, name, keep_dir=False)
    if e.kind == "file":
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            if data is not None:
                data(fd)
            _apply_attrs(parent, name, e, fd)
        finally:
            os.close(fd)
    elif e.kind == "symlink":
        os.symlink(e.linkname, name, dir_fd=parent)
        _apply_attrs(parent, name, e)
    elif e.kind == "hardlink":
        if link_fd is None:
            raise InvalidArgument(f"hard link {where!r}: no target")
        # Through the magic link: the inode itself, never a path re-resolved.
        os.link(L.fd_path(link_fd), name, dst_dir_fd=parent, follow_symlinks=True)
    elif e.kind in ("char", "block", "fifo"):
        kind = {"char": stat.S_IFCHR, "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}[e.kind]
        os.mknod(name, kind | 0o600, e.rdev, dir_fd=parent)
        _apply_attrs(parent, name, e)
    else:
        raise InvalidArgument(f"{where!r}: unsupported entry type {e.kind}")


def _set_dir_times(parent: int, name: str, e: Entry) -> None:
    atime = e.mtime_ns if e.atime_ns is None else e.atime_ns
    try:
        os.utime(name, ns=(atime, e.mtime_ns), dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        pass


# -- writing: tar into a container -----------------------------------------------------

_TAR_KINDS = {
    tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
}


def _member_entry(m: tarfile.TarInfo, owner: tuple[int, int] | None) -> Entry:
    kind = "file" if m.isreg() else _TAR_KINDS.get(m.type, "file")
    uid, gid = owner if owner is not None else (m.uid, m.gid)
    xattrs = {k[len(_XATTR_PAX):]: v.encode("utf-8", "surrogateescape")
              for k, v in m.pax_headers.items() if k.startswith(_XATTR_PAX)}
    atime = m.pax_headers.get("atime")
    return Entry(kind=kind, mode=m.mode & 0o7777, uid=uid, gid=gid,
                 mtime_ns=int(float(m.mtime) * 1_000_000_000),
                 atime_ns=int(float(atime) * 1_000_000_000) if atime else None,
                 linkname=m.linkname, rdev=os.makedev(m.devmajor, m.devminor)
                 if kind in ("char", "block") else 0, xattrs=xattrs or None)


def _entry_name(raw: str) -> str:
    """A member name as a clean relative path ("" for the root itself)."""
    cleaned = posixpath.normpath("/" + raw).lstrip("/")
    return "" if cleaned in (".", "") else cleaned


def check_archive(members: list[tarfile.TarInfo]) -> None:
    """Refuse, before anything is written, what Docker refuses: entries,
    hard links and relative symlinks that point above the destination."""
    for m in members:
        lexical = posixpath.normpath(m.name.lstrip("/") or ".")
        if lexical == ".." or lexical.startswith("../"):
            raise InvalidArgument(f"invalid tar entry {m.name!r}: it is outside of the "
                                  "destination directory")
        if m.islnk():
            target = posixpath.normpath(m.linkname.lstrip("/") or ".")
            if target == ".." or target.startswith("../"):
                raise InvalidArgument(f"invalid hardlink {m.name!r} -> {m.linkname!r}: "
                                      "its target is outside of the destination directory")
        elif m.issym() and not m.linkname.startswith("/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(lexical), m.linkname))
            if target == ".." or target.startswith("../"):
                raise InvalidArgument(f"invalid symlink {m.name!r} -> {m.linkname!r}: "
                                      "its target is outside of the destination directory")
        if not (m.isreg() or m.type in _TAR_KINDS):
            raise InvalidArgument(f"invalid tar entry {m.name!r}: unsupported type "
                                  f"{m.type!r}")


def extract_archive(view: RootView, dest: str, tar: tarfile.TarFile,
                    members: list[tarfile.TarInfo], *, no_overwrite_dir_non_dir: bool = False,
                    owner: tuple[int, int] | None = None) -> None:
    """Extract checked ``members`` (see :func:`check_archive`) into container
    directory ``dest`` (already resolved, symlink-free). Missing parents are
    created 0755 as Docker does; directory times are set last."""
    dirs: list[tuple[str, Entry]] = []
    for m in members:
        rel = _entry_name(m.name)
        if not rel:
            continue  # "." is the destination itself: left as it is
        full = posixpath.join(dest, rel)
        parent_path, name = posixpath.split(full)
        pfd = _open_parent(view, parent_path)
        try:
            e = _member_entry(m, owner)
            link_fd = None
            try:
                if e.kind == "hardlink":
                    target = posixpath.join(dest, _entry_name(m.linkname))
                    try:
                        link_fd = view.open(target, os.O_PATH | os.O_NOFOLLOW)
                    except FileNotFoundError:
                        raise InvalidArgument(f"invalid hardlink {m.name!r} -> {m.linkname!r}: "
                                              "its target is not in the archive") from None
                data = None
                if e.kind == "file":
                    source = tar.extractfile(m)

                    def data(fd: int, source=source) -> None:
                        while chunk := source.read(COPY_CHUNK):
                            write_all(fd, chunk)
                create_entry(pfd, name, e, data=data, link_fd=link_fd,
                             no_overwrite_dir_non_dir=no_overwrite_dir_non_dir, describe=full)
            finally:
                if link_fd is not None:
                    os.close(link_fd)
            if e.kind == "dir":
                dirs.append((full, e))
        finally:
            os.close(pfd)
    for full, e in reversed(dirs):
        parent_path, name = posixpath.split(full)
        try:
            pfd = view.open(parent_path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            _set_dir_times(pfd, name, e)
        finally:
            os.close(pfd)


def write_all(fd: int, chunk: bytes) -> None:
    """os.write until all of ``chunk`` is written."""
    view = memoryview(chunk)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _open_parent(view: RootView, path: str) -> int:
    try:
        return view.open(path, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        pass
    return make_path(view.root_fd, path, is_dir=True)


# -- copying a tree (volume pre-filling) ------------------------------------------------

def _entry_of(st: os.stat_result, dirfd: int, name: str) -> Entry | None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISREG(mode):
        kind = "file"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISCHR(mode):
        kind = "char"
    elif stat.S_ISBLK(mode):
        kind = "block"
    elif stat.S_ISFIFO(mode):
        kind = "fifo"
    else:
        return None  # sockets are not copied
    return Entry(kind=kind, mode=stat.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid,
                 mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns,
                 linkname=os.readlink(name, dir_fd=dirfd) if kind == "symlink" else "",
                 rdev=st.st_rdev if kind in ("char", "block") else 0,
                 xattrs=_xattrs(dirfd, name) or None)


def _copy_content(src_fd: int, dst_fd: int) -> None:
    while True:
        try:
            n = os.sendfile(dst_fd, src_fd, None, 64 << 20)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            while chunk := os.read(src_fd, COPY_CHUNK):
                write_all(dst_fd, chunk)
            return
        if n == 0:
            return


_BENEATH = L.RESOLVE_BENEATH | L.RESOLVE_NO_SYMLINKS


def copy_tree(src_dirfd: int, dst_dirfd: int) -> None:
    """Copy the content of directory ``src_dirfd`` into the empty directory
    ``dst_dirfd`` (both O_RDONLY directory fds), then give the destination
    the source's owner, mode and times (as Docker's volume copy-up does)."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, Entry]] = []
    stack: list[tuple[int, int, str, Iterator[str]]] = [
        (src_dirfd, dst_dirfd, "", iter(sorted(os.listdir(src_dirfd))))]
    try:
        while stack:
            sfd, dfd, rel, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if sfd != src_dirfd:
                    os.close(sfd)
                    os.close(dfd)
                continue
            try:
                st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            e = _entry_of(st, sfd, name)
            if e is None:
                continue
            path = rel + name
            key = (st.st_dev, st.st_ino)
            if e.kind != "dir" and st.st_nlink > 1:
                first = links.get(key)
                if first is not None:
                    # The destination tree is ours and has no symlinked
                    # directories: resolve beneath it, following nothing.
                    link_fd = L.openat2(dst_dirfd, first, os.O_PATH | os.O_NOFOLLOW, resolve=_BENEATH)
                    try:
                        create_entry(dfd, name, Entry("hardlink"), link_fd=link_fd)
                    finally:
                        os.close(link_fd)
                    continue
                links[key] = path
            if e.kind == "file":
                src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
                try:
                    create_entry(dfd, name, e, data=lambda fd, src=src: _copy_content(src, fd))
                finally:
                    os.close(src)
            else:
                create_entry(dfd, name, e)
            if e.kind == "dir":
                dirs.append((path, e))
                child_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, dir_fd=sfd)
                try:
                    child_dst = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                        | os.O_CLOEXEC, dir_fd=dfd)
                except BaseException:
                    os.close(child_src)
                    raise
                stack.append((child_src, child_dst, path + "/", iter(sorted(os.listdir(child_src)))))
    finally:
        for sfd, dfd, _, _ in stack:
            if sfd != src_dirfd:
                os.close(sfd)
                os.close(dfd)
    for path, e in reversed(dirs):
        parent, name = posixpath.split(path)
        pfd = L.openat2(dst_dirfd, parent or ".", os.O_PATH | os.O_DIRECTORY, resolve=_BENEATH)
        try:
            _set_dir_times(pfd, name, e)
        finally:
            os.close(pfd)
    root = os.fstat(src_dirfd)
    os.chown(L.fd_path(dst_dirfd), root.st_uid, root.st_gid)
    os.chmod(L.fd_path(dst_dirfd), stat.S_IMODE(root.st_mode))
    os.utime(L.fd_path(dst_dirfd), ns=(root.st_atime_ns, root.st_mtime_ns))
