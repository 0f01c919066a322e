"""Content-addressed blob store (containerd's model).

Layout under the store root (``<data-root>/content``)::

    blobs/sha256/<hex>   immutable, verified blobs (mode 0444)
    ingest/<ref>         partial writes; never visible as blobs

A write goes to ``ingest/<ref>`` under an exclusive flock, is hashed while it
is written, then verified (size and digest), fsynced and renamed into
``blobs/``. Rename is atomic, so a crash leaves either the whole blob or
nothing visible, and two writers of the same blob both end with the same
file in place.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from berth import _native
from berth.errors import Conflict, InvalidArgument, NotFound

ALGORITHM = "sha256"
_HEX_RE = re.compile(r"^[a-f0-9]{64}$")
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
COPY_CHUNK = 1 << 20


def parse_digest(digest: str) -> str:
    """``sha256:<hex>`` -> hex; InvalidArgument for anything else."""
    algorithm, sep, hex_ = digest.partition(":")
    if not sep or algorithm != ALGORITHM:
        raise InvalidArgument(f"unsupported digest {digest!r}: only sha256 is supported")
    if not _HEX_RE.match(hex_):
        raise InvalidArgument(f"invalid digest {digest!r}")
    return hex_


def digest_bytes(data: bytes) -> str:
    return "sha256:" + _native.Sha256(data).hexdigest()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    created_ns: int


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    updated_ns: int
    active: bool  # a live writer holds it


class Writer:
    """One ingest: write bytes, then :meth:`commit` them as a verified blob.

    Used as a context manager, an ingest that is neither committed nor kept
    (``keep=True``, for resumable downloads) is removed on exit.
    """

    def __init__(self, store: "ContentStore", ref: str, expected: str | None,
                 size: int | None, resume: bool):
        self._store = store
        self.ref = ref
        self.expected = expected
        self.expected_size = size
        self.path = os.path.join(store.ingest_dir, ref)
        self._hash = _native.Sha256()
        self.offset = 0
        self._done = False
        self._finished = False
        self.keep = False
        # Registered before the file exists, so the stale-ingest sweep of
        # this process never touches it (other processes are kept off by
        # the flock).
        if not store._live_add(ref):
            raise Conflict(f"content ingest {ref!r} is locked by another writer")
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            store._live_discard(ref)
            raise
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            store._live_discard(ref)
            raise Conflict(f"content ingest {ref!r} is locked by another writer") from None
        if resume:
            # Rehash what an earlier (interrupted) writer left so the final
            # digest covers the whole blob.
            with open(self.path, "rb") as f:
                while chunk := f.read(COPY_CHUNK):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
            os.lseek(self._fd, self.offset, os.SEEK_SET)
        else:
            os.ftruncate(self._fd, 0)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise ValueError(f"content ingest {self.ref!r} is finished")
        view = memoryview(data)
        total = len(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hash.update(data)
        self.offset += total
        return total

    def copy_from(self, source: BinaryIO, limit: int | None = None) -> int:
        """Copy a stream (up to ``limit`` bytes) into the ingest."""
        copied = 0
        while limit is None or copied < limit:
            want = COPY_CHUNK if limit is None else min(COPY_CHUNK, limit - copied)
            chunk = source.read(want)
            if not chunk:
                break
            self.write(chunk)
            copied += len(chunk)
        return copied

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def finish(self) -> None:
        """No more writes: fsync and close the file now (so that many ingests
        can wait for their commit without holding file descriptors). The
        ingest stays protected from stale-ingest removal by this process."""
        if not self._finished and not self._done:
            os.fsync(self._fd)
            os.close(self._fd)
            self._finished = True

    def commit(self, expected: str | None = None, size: int | None = None) -> BlobInfo:
        """Verify, fsync and move the ingest into ``blobs/``. On a mismatch the
        ingest is removed and InvalidArgument names both digests."""
        expected = expected or self.expected
        size = self.expected_size if size is None else size
        actual = self.digest()
        if size is not None and size != self.offset:
            self.abort()
            raise InvalidArgument(
                f"content size mismatch for {expected or actual}: "
                f"expected {size} bytes, got {self.offset}")
        if expected is not None and expected != actual:
            self.abort()
            raise InvalidArgument(
                f"content digest mismatch: expected {expected}, got {actual}")
        if self._finished:
            os.chmod(self.path, 0o444)
        else:
            os.fsync(self._fd)
            os.fchmod(self._fd, 0o444)
        target = self._store.path(actual)
        os.rename(self.path, target)
        _fsync_dir(os.path.dirname(target))
        self._close()
        return BlobInfo(actual, self.offset, time.time_ns())

    def abort(self) -> None:
        if self._done:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._close()

    def _close(self) -> None:
        if not self._done:
            self._done = True
            if not self._finished:
                os.close(self._fd)
            self._store._live_discard(self.ref)

    @property
    def closed(self) -> bool:
        return self._done

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            if self.keep:
                self._close()
            else:
                self.abort()


class ContentStore:
    def __init__(self, root: str):
        self.root = root
        self.blobs_dir = os.path.join(root, "blobs", ALGORITHM)
        self.ingest_dir = os.path.join(root, "ingest")
        os.makedirs(self.blobs_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.ingest_dir, mode=0o700, exist_ok=True)
        self._live: set[str] = set()
        self._live_lock = threading.Lock()

    def _live_add(self, ref: str) -> bool:
        with self._live_lock:
            if ref in self._live:
                return False
            self._live.add(ref)
            return True

    def _live_discard(self, ref: str) -> None:
        with self._live_lock:
            self._live.discard(ref)

    # -- reading ---------------------------------------------------------
    def path(self, digest: str) -> str:
        return os.path.join(self.blobs_dir, parse_digest(digest))

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def info(self, digest: str) -> BlobInfo:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: blob not found") from None
        return BlobInfo(digest, st.st_size, st.st_mtime_ns)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: blob not found") from None

    def read(self, digest: str, max_size: int = 64 << 20) -> bytes:
        """A whole (small) blob: a manifest or config."""
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise InvalidArgument(f"content {digest} is larger than {max_size} bytes")
        return data

    def walk(self) -> Iterator[BlobInfo]:
        """Every committed blob (ingests are never listed)."""
        with os.scandir(self.blobs_dir) as it:
            for entry in it:
                if not _HEX_RE.match(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since the directory was read
                if stat.S_ISREG(st.st_mode):
                    yield BlobInfo(f"{ALGORITHM}:{entry.name}", st.st_size, st.st_mtime_ns)

    # -- writing ---------------------------------------------------------
    def writer(self, ref: str | None = None, expected: str | None = None,
               size: int | None = None, resume: bool = False) -> Writer:
        """Start (or with ``resume`` continue) an ingest named ``ref``."""
        if expected is not None:
            parse_digest(expected)
        if ref is None:
            ref = f"{(expected or 'blob').replace(':', '-')}-{secrets.token_hex(8)}"
        elif not _REF_RE.match(ref):
            raise InvalidArgument(f"invalid ingest reference {ref!r}")
        return Writer(self, ref, expected, size, resume)

    def ingest(self, source: BinaryIO | bytes, expected: str | None = None,
               size: int | None = None) -> BlobInfo:
        """Write a whole blob from bytes or a stream and commit it."""
        if expected is not None and self.exists(expected) and isinstance(source, bytes):
            # Still verify: the caller's bytes must be what they claim to be.
            if digest_bytes(source) != expected:
                raise InvalidArgument(
                    f"content digest mismatch: expected {expected}, got {digest_bytes(source)}")
            return self.info(expected)
        with self.writer(expected=expected, size=size) as w:
            if isinstance(source, (bytes, bytearray, memoryview)):
                w.write(source)
            else:
                w.copy_from(source)
            return w.commit()

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed (0 if it was absent)."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    # -- ingests ---------------------------------------------------------
    def ingests(self) -> list[IngestStatus]:
        out = []
        with os.scandir(self.ingest_dir) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # committed or aborted since the directory was read
                if not stat.S_ISREG(st.st_mode):
                    continue
                with self._live_lock:
                    live = entry.name in self._live
                out.append(IngestStatus(entry.name, st.st_size, st.st_mtime_ns,
                                        live or _is_locked(entry.path)))
        return out

    def remove_stale_ingests(self, max_age_s: float = 24 * 3600) -> int:
        """Remove ingests no writer holds and untouched for ``max_age_s``
        (crash leftovers); returns the bytes freed."""
        freed = 0
        cutoff = time.time_ns() - int(max_age_s * 1e9)
        for status in self.ingests():
            if status.active or status.updated_ns > cutoff:
                continue
            path = os.path.join(self.ingest_dir, status.ref)
            # Decide and unlink under the live-set lock: a writer of this
            # process registers there before it creates its file.
            with self._live_lock:
                if status.ref in self._live:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(path)
                    freed += status.offset
                except (BlockingIOError, FileNotFoundError):
                    pass  # another process writes it, or it is gone already
                finally:
                    os.close(fd)
        return freed


def _is_locked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
