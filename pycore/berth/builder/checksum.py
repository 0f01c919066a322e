"""Content digests of files, for cache keys, with a metadata cache.

A file's digest is xxh3-128 of its bytes (``berth._native``, GIL released,
several files in parallel). :class:`FileHasher` remembers the digest of every
path it has read, keyed by (inode, size, mtime, ctime): a context that did
not change is never read again, so a no-op rebuild costs one ``lstat`` per
file. The cache of a context directory on disk is kept in the metadata
database (``builder_file_digests``), so it survives a daemon restart; a tar
context, unpacked into a temporary directory, is hashed but not remembered.
"""

from __future__ import annotations

import concurrent.futures
import mmap
import os
import stat
import threading
from typing import Iterable

from berth import _native
from berth.metadata import Database

_SMALL = 1 << 20
EMPTY_DIGEST = "x" + _native.xxh3_128_hex(b"")


def _read_digest(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return EMPTY_DIGEST
        if size <= _SMALL:
            chunks = []
            while True:
                chunk = os.read(fd, _SMALL + 1)
                if not chunk:
                    break
                chunks.append(chunk)
            return "x" + _native.xxh3_128_hex(b"".join(chunks))
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
            return "x" + _native.xxh3_128_hex(m)
    finally:
        os.close(fd)


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileHasher:
    """Digests of regular files, remembered by path and stat stamp."""

    def __init__(self, db: Database | None = None, threads: int = 0):
        self._db = db
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._loaded_roots: set[str] = set()
        self._dirty: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._threads = threads or min(8, (os.cpu_count() or 2) + 2)
        self.read_count = 0  # files actually read (for tests and benchmarks)

    # -- the persistent part --------------------------------------------------
    def load_root(self, root: str) -> None:
        """Bring a context directory's remembered digests into memory (once)."""
        if self._db is None:
            return
        with self._lock:
            if root in self._loaded_roots:
                return
            self._loaded_roots.add(root)
        prefix = root.rstrip("/") + "/"
        rows = self._db.query(
            "SELECT path, ino, size, mtime_ns, ctime_ns, digest FROM builder_file_digests"
            " WHERE path >= ? AND path < ?", (prefix, prefix[:-1] + "0"))
        with self._lock:
            for r in rows:
                self._cache.setdefault(r["path"], ((r["ino"], r["size"], r["mtime_ns"],
                                                    r["ctime_ns"]), r["digest"]))

    def flush(self) -> None:
        """Write the digests learnt since the last flush (persistent roots only)."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty or self._db is None:
            return
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO builder_file_digests(path, ino, size, mtime_ns, ctime_ns, digest)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET ino=excluded.ino,"
                " size=excluded.size, mtime_ns=excluded.mtime_ns, ctime_ns=excluded.ctime_ns,"
                " digest=excluded.digest",
                [(p, *stamp, d) for p, (stamp, d) in dirty.items()])

    def forget(self, root: str) -> None:
        """Drop what is remembered under ``root`` (a temporary context)."""
        prefix = root.rstrip("/") + "/"
        with self._lock:
            for path in [p for p in self._cache if p.startswith(prefix)]:
                del self._cache[path]
            for path in [p for p in self._dirty if p.startswith(prefix)]:
                del self._dirty[path]

    def clear_persistent(self) -> int:
        """Forget everything (build cache prune); returns rows removed."""
        with self._lock:
            self._cache.clear()
            self._dirty.clear()
            self._loaded_roots.clear()
        if self._db is None:
            return 0
        return self._db.execute("DELETE FROM builder_file_digests")

    # -- digests ------------------------------------------------------------------
    def digests(self, files: Iterable[tuple[str, os.stat_result]], persist: bool = True
                ) -> dict[str, str]:
        """Digest of each (path, lstat) given; reads only files whose stamp
        changed since they were last read. ``persist``: also keep them in the
        database (a context directory that outlives the build)."""
        out: dict[str, str] = {}
        todo: list[tuple[str, tuple[int, int, int, int]]] = []
        with self._lock:
            for path, st in files:
                stamp = _stamp(st)
                known = self._cache.get(path)
                if known is not None and known[0] == stamp:
                    out[path] = known[1]
                elif st.st_size == 0:
                    out[path] = EMPTY_DIGEST
                else:
                    todo.append((path, stamp))
        if not todo:
            return out
        paths = [p for p, _ in todo]
        if len(todo) < 8:
            results = [_read_digest(p) for p in paths]
        else:
            # One task per thread, not per file: small files are the common case.
            workers = min(self._threads, len(paths))
            chunks = [paths[i::workers] for i in range(workers)]
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda chunk: [_read_digest(p) for p in chunk], chunks))
            by_path = {}
            for chunk, digests in zip(chunks, parts):
                by_path.update(zip(chunk, digests))
            results = [by_path[p] for p in paths]
        with self._lock:
            self.read_count += len(todo)
            for (path, stamp), digest in zip(todo, results):
                out[path] = digest
                self._cache[path] = (stamp, digest)
                if persist and self._db is not None:
                    self._dirty[path] = (stamp, digest)
        return out


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
