"""Read-only views of file trees the builder copies from and into, without
mounting anything in the daemon.

- :class:`DirView`: one directory (a build context).
- :class:`LayerView`: the merged view of an image's snapshots (overlayfs
  lowerdirs, top first), with overlayfs' rules applied in Python: a 0:0
  character device is a whiteout that hides the name in lower layers, a
  directory with ``trusted.overlay.opaque=y`` hides the lower layers'
  content below it, and a non-directory hides whatever is below it.

Both resolve paths with symlinks confined to the tree's root, as Docker's
``FollowSymlinkInScope`` does: an absolute link target is relative to the
root and ``..`` stops at it.
"""

from __future__ import annotations

import os
import stat
from typing import Iterator, NamedTuple

_MAX_LINKS = 255
_OPAQUE = "trusted.overlay.opaque"


class Entry(NamedTuple):
    # A tuple: walks of big contexts make tens of thousands of these.
    path: str            # the path inside the view, "/a/b"
    host: str            # where it is on the host
    st: os.stat_result   # lstat of host

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)


class TooManyLinks(OSError):
    pass


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(host: str) -> bool:
    try:
        return os.getxattr(host, _OPAQUE, follow_symlinks=False) in (b"y", b"y\x00")
    except OSError:
        return False


class View:
    """Common path resolution; subclasses implement :meth:`lookup` and :meth:`children`."""

    def lookup(self, path: str) -> Entry | None:
        raise NotImplementedError

    def children(self, path: str) -> dict[str, Entry]:
        raise NotImplementedError

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """The path with every symlink resolved inside the view (components
        that do not exist are kept as they are)."""
        parts = [p for p in path.split("/") if p and p != "."]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join(done + [part])
            if not parts and not follow_last:
                done.append(part)
                break
            entry = self.lookup(candidate)
            if entry is not None and entry.is_symlink:
                links += 1
                if links > _MAX_LINKS:
                    raise TooManyLinks(f"too many levels of symbolic links: {path}")
                target = os.readlink(entry.host)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/" + "/".join(done)

    def walk(self, path: str) -> Iterator[Entry]:
        """Every entry below ``path`` (a directory), parents before children,
        names sorted; symlinks are not followed."""
        children = self.children(path)
        for name in sorted(children):
            entry = children[name]
            yield entry
            if entry.is_dir:
                yield from self.walk(entry.path)

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """A small file's content (/etc/passwd), following symlinks; None if absent."""
        try:
            entry = self.lookup(self.resolve(path))
        except TooManyLinks:
            return None
        if entry is None or not stat.S_ISREG(entry.st.st_mode):
            return None
        with open(entry.host, "rb") as f:
            return f.read(limit)


class DirView(View):
    def __init__(self, root: str):
        self.root = root.rstrip("/") or "/"

    def _host(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def lookup(self, path: str) -> Entry | None:
        host = self._host(path)
        try:
            return Entry(path, host, os.lstat(host))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def children(self, path: str) -> dict[str, Entry]:
        host = self._host(path)
        prefix = path if path.endswith("/") else path + "/"
        out = {}
        try:
            with os.scandir(host) as it:
                for d in it:
                    name = d.name
                    out[name] = Entry(prefix + name, d.path, d.stat(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return out


class LayerView(View):
    """The merged view of overlay lowerdirs (top first)."""

    def __init__(self, lowerdirs: list[str]):
        self.layers = [d.rstrip("/") for d in lowerdirs]

    def _locate(self, path: str) -> tuple[Entry | None, list[int]]:
        """The entry at ``path`` and, when it is a directory, the layers that
        contribute to its content (top first)."""
        parts = [p for p in path.split("/") if p and p != "."]
        layers = self._root_layers()
        if not layers:
            return None, []
        if not parts:
            top = self.layers[layers[0]]
            return Entry("/", top, os.lstat(top)), layers
        prefix = ""
        found: Entry | None = None
        for depth, part in enumerate(parts):
            prefix += "/" + part
            found = None
            contributing: list[int] = []
            for index in layers:
                host = self.layers[index] + prefix
                try:
                    st = os.lstat(host)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if _is_whiteout(st):
                    break
                if found is None:
                    found = Entry(prefix, host, st)
                    if not stat.S_ISDIR(st.st_mode):
                        break  # a non-directory hides everything below it
                elif not stat.S_ISDIR(st.st_mode):
                    break  # a directory above a file: the file is hidden
                contributing.append(index)
                if _is_opaque(host):
                    break
            if found is None:
                return None, []
            if not found.is_dir:
                return (found, []) if depth == len(parts) - 1 else (None, [])
            layers = contributing
        return found, layers

    def lookup(self, path: str) -> Entry | None:
        return self._locate(path)[0]

    def children(self, path: str) -> dict[str, Entry]:
        entry, layers = self._locate(path)
        if entry is None or not entry.is_dir:
            return {}
        out: dict[str, Entry] = {}
        hidden: set[str] = set()
        rel = "/".join(p for p in path.split("/") if p and p != ".")
        base = "/" + rel if rel else ""
        for index in layers:
            host_dir = self.layers[index] + base
            try:
                with os.scandir(host_dir) as it:
                    for d in it:
                        if d.name in out or d.name in hidden:
                            continue
                        st = d.stat(follow_symlinks=False)
                        if _is_whiteout(st):
                            hidden.add(d.name)
                            continue
                        out[d.name] = Entry(f"{base}/{d.name}", d.path, st)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return out

    def _root_layers(self) -> list[int]:
        layers = []
        for index, layer in enumerate(self.layers):
            layers.append(index)
            if _is_opaque(layer):
                break
        return layers
