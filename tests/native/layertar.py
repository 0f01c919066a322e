"""Build layer tars member by member with Python's tarfile, for the tests of
berth._native (tarfile is independent of the Rust code under test)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import zstandard


class LayerTar:
    def __init__(self, format: int = tarfile.PAX_FORMAT):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=format)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None, **attrs) -> "LayerTar":
        info.mtime = attrs.pop("mtime", 1_600_000_000)
        info.uid = attrs.pop("uid", 0)
        info.gid = attrs.pop("gid", 0)
        for k, v in attrs.items():
            setattr(info, k, v)
        if data is not None:
            info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **attrs) -> "LayerTar":
        info = tarfile.TarInfo(name)
        info.mode = mode
        return self._add(info, data, **attrs)

    def dir(self, name: str, mode: int = 0o755, **attrs) -> "LayerTar":
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        return self._add(info, **attrs)

    def symlink(self, name: str, target: str, **attrs) -> "LayerTar":
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        return self._add(info, **attrs)

    def hardlink(self, name: str, target: str, **attrs) -> "LayerTar":
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE
        info.linkname = target
        info.mode = 0o644
        return self._add(info, **attrs)

    def device(self, name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o666,
               **attrs) -> "LayerTar":
        info = tarfile.TarInfo(name)
        info.type = kind
        info.devmajor, info.devminor = major, minor
        info.mode = mode
        return self._add(info, **attrs)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()

    def write(self, path: Path, compression: str = "gzip") -> Path:
        data = self.bytes()
        if compression == "gzip":
            data = gzip.compress(data)
        elif compression == "zstd":
            data = zstandard.ZstdCompressor().compress(data)
        path.write_bytes(data)
        return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, tuple]:
    """Everything a user could see of a tree: type, mode, owner, size, content,
    link target, device number, mtime (files) and xattrs, by relative path."""
    import os
    import stat as st

    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            rel = str(p.relative_to(root))
            content = p.read_bytes() if st.S_ISREG(s.st_mode) else None
            link = os.readlink(p) if st.S_ISLNK(s.st_mode) else None
            try:
                xattrs = {k: os.getxattr(p, k, follow_symlinks=False)
                          for k in sorted(os.listxattr(p, follow_symlinks=False))}
            except OSError:
                xattrs = {}
            out[rel] = (st.S_IFMT(s.st_mode), st.S_IMODE(s.st_mode), s.st_uid, s.st_gid,
                        content, link, s.st_rdev if not st.S_ISREG(s.st_mode) else 0,
                        int(s.st_mtime), xattrs)
    return out
