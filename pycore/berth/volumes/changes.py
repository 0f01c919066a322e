"""``docker diff``: what a container changed, read from its overlay upper dir.

An entry of the upper dir is *deleted* (Kind 2) when it is a whiteout (a 0:0
character device), *added* (1) when the image's layers have nothing at that
path, *modified* (0) otherwise. A directory present in both counts as
modified only when its mode or owner changed (its mtime moves with every
entry created in it, the runtime's mount points included); the parent of an
added or deleted entry is reported modified, as Docker does. An opaque
directory (the container removed a directory and made a new one) hides
everything the layers had in it: those entries are reported deleted.

The image side is looked up in a read-only overlay of the image's layers, so
whiteouts and opaque directories of the layers themselves are honoured.
"""

from __future__ import annotations

import os
import stat
from typing import Iterable, Iterator

from berth.volumes import _linux as L
from berth.volumes.rootview import RootView

MODIFIED, ADDED, DELETED = 0, 1, 2

#: Mount points the runtime creates in every container (Docker keeps these in
#: its "init" layer, so they never show in a diff): ignored while they are
#: still the empty placeholders the runtime made.
RUNTIME_MOUNT_POINTS = frozenset({
    "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv", "/etc/mtab",
    "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console",
})

_OPAQUE = "trusted.overlay.opaque"
_STRICT = L.RESOLVE_BENEATH | L.RESOLVE_NO_SYMLINKS | L.RESOLVE_NO_MAGICLINKS


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(dirfd: int, name: str) -> bool:
    try:
        return os.getxattr(f"{L.fd_path(dirfd)}/{name}", _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def is_placeholder(dirfd: int, name: str, st: os.stat_result) -> bool:
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISLNK(st.st_mode):
        return True
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dirfd)
        try:
            return not os.listdir(fd)
        finally:
            os.close(fd)
    return False


class ImageLayers:
    """The image's merged layers, looked up without following any symlink (a
    path through a symlink in the image is not the same path)."""

    def __init__(self, view: RootView | None):
        self.view = view

    def stat(self, path: str) -> os.stat_result | None:
        if self.view is None:
            return None
        try:
            fd = L.openat2(self.view.root_fd, path.lstrip("/"), os.O_PATH | os.O_NOFOLLOW,
                           resolve=_STRICT)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a parent is a symlink in the image
                return None
            raise
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def children(self, path: str) -> list[str]:
        if self.view is None:
            return []
        try:
            fd = L.openat2(self.view.root_fd, path.lstrip("/") or ".",
                           os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, resolve=_STRICT)
        except OSError:
            return []
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)


def upper_changes(upperdir: str, lower: RootView | None,
                  ignore: Iterable[str] = RUNTIME_MOUNT_POINTS) -> list[dict[str, object]]:
    """Docker's ``FilesystemChange`` list (``[{"Path", "Kind"}]``) for an
    overlay upper dir over the layers of view ``lower`` (None: no layers)."""
    image = ImageLayers(lower)
    ignored = frozenset(ignore)
    changes: list[dict[str, object]] = []
    changed_dirs: set[str] = set()

    def record(path: str, kind: int) -> None:
        if kind in (ADDED, DELETED):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                changes.append({"Path": parent, "Kind": MODIFIED})
                changed_dirs.add(parent)
        changes.append({"Path": path, "Kind": kind})

    root = os.open(upperdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path, dirfd, name, st, hidden in _walk(root, image):
            if is_whiteout(st):
                if image.stat(path) is not None or not hidden:
                    record(path, DELETED)
                continue
            lower_st = None if hidden else image.stat(path)
            if lower_st is None and path in ignored and is_placeholder(dirfd, name, st):
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if lower_st is None:
                kind = ADDED
            elif is_dir and stat.S_ISDIR(lower_st.st_mode):
                opaque = is_opaque(dirfd, name)
                same = (stat.S_IMODE(st.st_mode) == stat.S_IMODE(lower_st.st_mode)
                        and (st.st_uid, st.st_gid) == (lower_st.st_uid, lower_st.st_gid))
                if opaque:
                    kind = MODIFIED
                elif same:
                    continue
                else:
                    kind = MODIFIED
            else:
                kind = MODIFIED
            if is_dir:
                changed_dirs.add(path)
            record(path, kind)
            if is_dir and lower_st is not None and stat.S_ISDIR(lower_st.st_mode) \
                    and is_opaque(dirfd, name):
                upper_names = set(_listdir(dirfd, name))
                for child in image.children(path):
                    if child not in upper_names:
                        record(f"{path}/{child}", DELETED)
    finally:
        os.close(root)
    return changes


def _listdir(dirfd: int, name: str) -> list[str]:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _walk(root: int, image: ImageLayers) -> Iterator[tuple[str, int, str, os.stat_result, bool]]:
    """(container path, parent fd, name, lstat, hidden) for every entry of the
    upper dir, depth first in name order; ``hidden``: below an opaque
    directory, so nothing of the image shows through at that path."""
    stack: list[tuple[int, str, bool, Iterator[str]]] = [(root, "", False, iter(sorted(os.listdir(root))))]
    try:
        while stack:
            fd, prefix, hidden, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if fd != root:
                    os.close(fd)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            path = f"{prefix}/{name}"
            yield path, fd, name, st, hidden
            if stat.S_ISDIR(st.st_mode):
                child_hidden = hidden or (is_opaque(fd, name) and image.stat(path) is not None)
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=fd)
                stack.append((child, path, child_hidden, iter(sorted(os.listdir(child)))))
    finally:
        for fd, _, _, _ in stack:
            if fd != root:
                os.close(fd)
