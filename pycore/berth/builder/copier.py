"""Writing COPY/ADD/WORKDIR results straight into a new layer directory.

The layer directory is what an overlay upper directory would hold after the
same operation in a container: only the new files, and the directories on
their way copied up from the parent (same mode, owner and times). Nothing is
mounted: destinations are resolved in the merged view of this layer over the
parent's snapshots (:class:`~berth.builder.fsview.LayerView`), with symlinks
confined to the image's root, as Docker resolves them in the container.

Docker's rules kept here: a directory source brings its content, not itself;
a file goes *into* the destination when that is an existing directory or
ends with ``/``; copied files are owned by root (or ``--chown``), except with
``--from`` where owners are kept; modes and modification times are kept;
hard links inside a copied tree stay hard links; new parent directories are
0755.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import posixpath
import stat
from dataclasses import dataclass

from .context import Source, Sources
from .errors import BuildError
from .fsview import LayerView, TooManyLinks, View

_SKIP_XATTRS = ("trusted.overlay.",)
_COPY_THREADS = 4


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int


ROOT = Identity(0, 0)


def parse_chmod(value: str) -> int | None:
    """``--chmod`` (octal) -> mode bits; BuildError otherwise."""
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildError(f"invalid --chmod={value}: only octal modes such as 0755 are supported") from None
    if mode < 0 or mode > 0o7777:
        raise BuildError(f"invalid --chmod={value}: mode out of range")
    return mode


def _lookup_id(data: bytes | None, name: str, what: str, user: str) -> int:
    if data is None:
        raise BuildError(f"unable to convert uid/gid chown string to host mapping: "
                         f"can't find {'uid' if what == 'user' else 'gid'} for {what} {name}: "
                         f"no /etc/{'passwd' if what == 'user' else 'group'} in the image")
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            try:
                return int(fields[2])
            except ValueError:
                break
    raise BuildError(f"unable to convert uid/gid chown string to host mapping: can't find "
                     f"{'uid' if what == 'user' else 'gid'} for {what} {name}: no such {what}: {name}")


def parse_chown(value: str, view: View | None) -> Identity | None:
    """``--chown=user[:group]`` (names resolved in the destination image's
    /etc/passwd and /etc/group, numbers as they are)."""
    if not value:
        return None
    user, _, group = value.partition(":")
    if not user:
        raise BuildError(f"invalid --chown={value}: no user given")
    passwd = None

    def passwd_data() -> bytes | None:
        nonlocal passwd
        if passwd is None and view is not None:
            passwd = view.read("/etc/passwd") or b""
        return passwd if passwd else None

    if user.isdigit():
        uid = int(user)
        primary = None
    else:
        uid = _lookup_id(passwd_data(), user, "user", value)
        primary = None
        for line in (passwd_data() or b"").decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == user and fields[3].isdigit():
                primary = int(fields[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gid = _lookup_id(view.read("/etc/group") if view is not None else None, group,
                             "group", value)
    else:
        # Docker: the user's primary group when named, else the same number.
        gid = primary if primary is not None else uid
    return Identity(uid, gid)


class LayerWriter:
    """Builds one layer directory on top of a parent filesystem view."""

    def __init__(self, layer_dir: str, parent_lowerdirs: list[str] | None):
        self.layer = layer_dir.rstrip("/")
        self.parent = LayerView(parent_lowerdirs) if parent_lowerdirs else None
        # Destinations resolve in the layer as it grows, over the parent.
        self.view = LayerView([self.layer] + list(parent_lowerdirs or []))
        self._dirs_to_stamp: list[tuple[str, int, int]] = []
        self.bytes_written = 0

    def host(self, path: str) -> str:
        return self.layer + path if path != "/" else self.layer

    def resolve(self, path: str, follow_last: bool = True) -> str:
        try:
            return self.view.resolve(path, follow_last)
        except TooManyLinks as e:
            raise BuildError(str(e)) from None

    def exists_as_dir(self, path: str) -> bool:
        entry = self.view.lookup(path)
        return entry is not None and entry.is_dir

    def ensure_dir(self, path: str, identity: Identity | None = ROOT, mode: int = 0o755,
                   chown_existing: bool = False) -> bool:
        """Make ``path`` (resolved) a directory in the layer. Parents that
        exist below are copied up; missing ones are created with ``mode`` and
        ``identity``. Returns whether the directory already existed."""
        parts = [p for p in path.split("/") if p]
        current = ""
        existed = True
        for i, part in enumerate(parts):
            current += "/" + part
            host = self.host(current)
            try:
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):
                    continue
                # A file or link of this layer is in the way: replace it.
                os.unlink(host)
            except FileNotFoundError:
                pass
            below = self.parent.lookup(current) if self.parent is not None else None
            if below is not None and below.is_dir:
                self._copy_up_dir(below.host, host, below.st)
                continue
            existed = False
            os.mkdir(host, 0o700)
            who = identity or ROOT
            os.chown(host, who.uid, who.gid)
            os.chmod(host, mode)
        if chown_existing and identity is not None and parts:
            os.chown(self.host(current), identity.uid, identity.gid)
        return existed

    def _copy_up_dir(self, source: str, host: str, st: os.stat_result) -> None:
        os.mkdir(host, 0o700)
        os.chown(host, st.st_uid, st.st_gid)
        os.chmod(host, stat.S_IMODE(st.st_mode))
        _copy_xattrs(source, host)
        self._dirs_to_stamp.append((host, st.st_atime_ns, st.st_mtime_ns))

    def finish(self) -> None:
        """Restore the times of copied-up directories (writing into them moved them)."""
        for host, atime, mtime in reversed(self._dirs_to_stamp):
            try:
                os.utime(host, ns=(atime, mtime), follow_symlinks=False)
            except FileNotFoundError:
                pass
        self._dirs_to_stamp.clear()

    # -- copying ------------------------------------------------------------------
    def copy_sources(self, sources: Sources, selected: list[Source], dest: str, *,
                     identity: Identity | None, chmod: int | None, keep_owner: bool,
                     excludes=None, unpack=None) -> None:
        """COPY/ADD of already selected sources to ``dest`` (absolute, a
        trailing ``/`` meaning a directory)."""
        dest_is_dir_syntax = dest.endswith("/")
        for source in selected:
            if source.is_dir:
                target = self.resolve(dest.rstrip("/") or "/")
                self.ensure_dir(target, identity if not keep_owner or identity else None)
                self.copy_tree(sources, source, target, identity=identity, chmod=chmod,
                               keep_owner=keep_owner, excludes=excludes)
                continue
            if unpack is not None and unpack(source):
                continue
            target = self.resolve(dest.rstrip("/") or "/")
            if dest_is_dir_syntax or self.exists_as_dir(target):
                name = posixpath.basename(source.name.rstrip("/")) or posixpath.basename(source.path)
                target = self.resolve(posixpath.join(target, name), follow_last=False)
            parent = posixpath.dirname(target)
            self.ensure_dir(parent, identity)
            self.copy_entry(source.entry.host, source.entry.st, target, identity=identity,
                            chmod=chmod, keep_owner=keep_owner, links={})

    def copy_tree(self, sources: Sources, source: Source, target: str, *,
                  identity: Identity | None, chmod: int | None, keep_owner: bool,
                  excludes=None) -> None:
        """Copy a directory source's content below ``target``: directories
        first (in order), then regular files on a few threads (the copies are
        system calls, which run without the GIL), then the rest."""
        links: dict[tuple[int, int], str] = {}
        dirs: list[tuple[str, os.stat_result]] = []
        files: list[tuple[str, os.stat_result, str]] = []
        others: list[tuple[str, os.stat_result, str]] = []
        base = target.rstrip("/")
        layer = self.layer
        present: set[str] = set()
        for rel, entry in sources.walk(source, excludes):
            dest = f"{base}/{rel}"
            parent = posixpath.dirname(rel)
            if parent and parent not in present:
                # Under an excluded directory that an exception reopens: the
                # directory itself is not copied, so it is made, as untar would.
                os.makedirs(self.host(f"{base}/{parent}"), 0o755, exist_ok=True)
                present.add(parent)
            st = entry.st
            kind = st.st_mode & 0o170000
            if kind == 0o040000:
                present.add(rel)
                host = layer + dest
                try:
                    os.mkdir(host, 0o700)
                except FileExistsError:
                    if not os.path.isdir(host) or os.path.islink(host):
                        os.unlink(host)
                        os.mkdir(host, 0o700)
                    # else: over a directory already in this layer, merge with it
                self._apply_owner_mode(host, st, identity, chmod, keep_owner, is_dir=True)
                _copy_xattrs(entry.host, host)
                dirs.append((host, st))
            elif kind == 0o100000 and st.st_nlink == 1:
                files.append((entry.host, st, layer + dest))
            else:
                others.append((entry.host, st, dest))
        self._copy_files(files, identity, chmod, keep_owner)
        for src, st, dest in others:
            self.copy_entry(src, st, dest, identity=identity, chmod=chmod,
                            keep_owner=keep_owner, links=links)
        for host, st in reversed(dirs):
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_files(self, files: list, identity: Identity | None, chmod: int | None,
                    keep_owner: bool) -> None:
        if len(files) < 64:
            for src, st, host in files:
                self.bytes_written += self._copy_file(src, host, st, identity, chmod, keep_owner)
            return
        workers = _COPY_THREADS
        chunks = [files[i::workers] for i in range(workers)]

        def copy_chunk(chunk) -> int:
            return sum(self._copy_file(src, host, st, identity, chmod, keep_owner)
                       for src, st, host in chunk)

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(copy_chunk, chunk) for chunk in chunks]:
                self.bytes_written += future.result()

    def copy_entry(self, src: str, st: os.stat_result, dest: str, *, identity: Identity | None,
                   chmod: int | None, keep_owner: bool, links: dict) -> None:
        host = self.host(dest)
        _remove_existing(host)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], host)
                return
            self.bytes_written += self._copy_file(src, host, st, identity, chmod, keep_owner)
            if st.st_nlink > 1:
                links[key] = host
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), host)
            uid, gid = self._owner(st, identity, keep_owner)
            os.chown(host, uid, gid, follow_symlinks=False)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            return
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(host, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            self._apply_owner_mode(host, st, identity, chmod, keep_owner, is_dir=False)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            return
        # Sockets and anything else cannot be carried in a layer; Docker skips them too.

    def _owner(self, st: os.stat_result, identity: Identity | None, keep_owner: bool) -> tuple[int, int]:
        if identity is not None:
            return identity.uid, identity.gid
        if keep_owner:
            return st.st_uid, st.st_gid
        return 0, 0

    def _apply_owner_mode(self, host: str, st: os.stat_result, identity: Identity | None,
                          chmod: int | None, keep_owner: bool, is_dir: bool) -> None:
        uid, gid = self._owner(st, identity, keep_owner)
        os.chown(host, uid, gid, follow_symlinks=False)
        os.chmod(host, chmod if chmod is not None else stat.S_IMODE(st.st_mode))

    def _copy_file(self, src: str, host: str, st: os.stat_result, identity: Identity | None,
                   chmod: int | None, keep_owner: bool) -> int:
        """Copy one regular file; returns its size (the caller adds it up)."""
        fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            try:
                fout = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                _remove_existing(host)
                fout = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _copy_data(fin, fout, st.st_size)
                uid, gid = self._owner(st, identity, keep_owner)
                if uid or gid:
                    os.fchown(fout, uid, gid)
                os.fchmod(fout, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
                _copy_xattrs_fd(fin, fout)
                os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fout)
        finally:
            os.close(fin)
        return st.st_size

    def write_file(self, dest: str, data: bytes, mode: int, identity: Identity | None,
                   mtime_ns: int | None = None) -> None:
        """A file from bytes (COPY <<EOF, ADD of a URL)."""
        target = self.resolve(dest, follow_last=False)
        self.ensure_dir(posixpath.dirname(target), identity)
        host = self.host(target)
        _remove_existing(host)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            who = identity or ROOT
            if who.uid or who.gid:
                os.fchown(fd, who.uid, who.gid)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        self.bytes_written += len(data)

    def install_file(self, dest: str, src_path: str, mode: int, identity: Identity | None,
                     mtime_ns: int | None = None) -> None:
        """Move a downloaded file into place as ``dest``."""
        target = self.resolve(dest, follow_last=False)
        self.ensure_dir(posixpath.dirname(target), identity)
        host = self.host(target)
        _remove_existing(host)
        os.rename(src_path, host)
        who = identity or ROOT
        os.chown(host, who.uid, who.gid)
        os.chmod(host, mode)
        if mtime_ns is not None:
            os.utime(host, ns=(mtime_ns, mtime_ns))
        self.bytes_written += os.lstat(host).st_size


def _remove_existing(host: str) -> None:
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil
        shutil.rmtree(host)
    else:
        os.unlink(host)


def _copy_data(fin: int, fout: int, size: int) -> None:
    remaining = size
    try:
        while remaining > 0:
            n = os.copy_file_range(fin, fout, min(remaining, 1 << 30))
            if n == 0:
                return  # shrank since it was looked at
            remaining -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while True:
        chunk = os.read(fin, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            n = os.write(fout, view)
            view = view[n:]


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIP_XATTRS):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError:
            pass


def _copy_xattrs_fd(fin: int, fout: int) -> None:
    try:
        names = os.listxattr(fin)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIP_XATTRS):
            continue
        try:
            os.setxattr(fout, name, os.getxattr(fin, name))
        except OSError:
            pass
