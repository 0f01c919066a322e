"""Snapshots: one unpacked layer per directory, keyed by chain ID.

``snapshots/<chain-id-hex>/`` holds only the changes of its layer (whiteouts
in overlayfs form), so a container's root is an overlay whose lowerdirs are
the image's snapshots, top first. A snapshot is unpacked into
``snapshots/tmp-<random>/`` and renamed into place only when the whole layer
is in and its diff ID verified; the row in ``metadata.db`` is written before
the rename, so a directory under its final name always has a row.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from berth import _native
from berth.errors import InvalidArgument, NotFound
from berth.fsflags import mark_top_of_hierarchies
from berth.metadata import Database

TMP_PREFIX = "tmp-"


MIGRATIONS = [
    """
    CREATE TABLE snapshots (
        chain_id   TEXT PRIMARY KEY,   -- sha256:<hex>
        parent     TEXT,               -- chain id of the layer below, NULL for a base layer
        diff_id    TEXT NOT NULL,      -- sha256 of this layer's uncompressed tar
        size       INTEGER NOT NULL,   -- bytes of regular files in this layer
        created_ns INTEGER NOT NULL
    );
    """,
]


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI chain ID of a layer on top of ``parent`` (a chain ID or None)."""
    if parent is None:
        return diff_id
    return "sha256:" + _native.Sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """Chain IDs of a layer stack, base first."""
    out: list[str] = []
    for diff in diff_ids:
        out.append(chain_id(out[-1] if out else None, diff))
    return out


def _hex(chain: str) -> str:
    algorithm, _, hex_ = chain.partition(":")
    if algorithm != "sha256" or len(hex_) != 64 or not all(c in "0123456789abcdef" for c in hex_):
        raise InvalidArgument(f"invalid snapshot chain ID {chain!r}")
    return hex_


@dataclass(frozen=True)
class Snapshot:
    chain_id: str
    parent: str | None
    diff_id: str
    size: int
    path: str


@dataclass(frozen=True)
class LayerJob:
    """One layer to prepare: its blob (path or fd), the diff ID it must have
    and the chain ID of the layer below. ``name`` labels error messages."""

    blob: str | int
    diff_id: str
    parent: str | None = None
    name: str = ""

    @property
    def chain_id(self) -> str:
        return chain_id(self.parent, self.diff_id)


class _KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}

    @contextlib.contextmanager
    def hold(self, keys: Iterable[str]) -> Iterator[None]:
        ordered = sorted(set(keys))  # one global order: no deadlock
        taken = []
        try:
            for key in ordered:
                with self._guard:
                    entry = self._locks.setdefault(key, [threading.Lock(), 0])
                    entry[1] += 1
                entry[0].acquire()
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                with self._guard:
                    entry = self._locks[key]
                    entry[0].release()
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._locks[key]


class SnapshotStore:
    def __init__(self, root: str, db: Database, threads: int = 0):
        self.root = root
        self._db = db
        self._threads = threads
        self._locks = _KeyedLocks()
        self._active_tmp: set[str] = set()
        self._tmp_guard = threading.Lock()
        os.makedirs(root, mode=0o700, exist_ok=True)
        mark_top_of_hierarchies(root)
        db.migrate("snapshots", MIGRATIONS)

    # -- queries ---------------------------------------------------------
    def path(self, chain: str) -> str:
        return os.path.join(self.root, _hex(chain))

    def get(self, chain: str) -> Snapshot:
        row = self._db.query_one("SELECT * FROM snapshots WHERE chain_id=?", (chain,))
        if row is None or not os.path.isdir(self.path(chain)):
            raise NotFound(f"snapshot {chain} does not exist")
        return self._snapshot(row)

    def exists(self, chain: str) -> bool:
        row = self._db.query_one("SELECT 1 FROM snapshots WHERE chain_id=?", (chain,))
        return row is not None and os.path.isdir(self.path(chain))

    def list(self) -> list[Snapshot]:
        return [self._snapshot(r) for r in self._db.query("SELECT * FROM snapshots ORDER BY chain_id")]

    def sizes(self) -> dict[str, int]:
        return {r["chain_id"]: r["size"] for r in self._db.query("SELECT chain_id, size FROM snapshots")}

    def lowerdirs(self, chains: Sequence[str]) -> list[str]:
        """Overlay lowerdirs for a layer stack given base first: returned top
        first, as overlayfs wants them. NotFound names a missing snapshot."""
        dirs = []
        for chain in reversed(chains):
            path = self.path(chain)
            if not os.path.isdir(path):
                raise NotFound(f"snapshot {chain} does not exist")
            dirs.append(path)
        return dirs

    def _snapshot(self, row) -> Snapshot:
        return Snapshot(row["chain_id"], row["parent"], row["diff_id"], row["size"],
                        self.path(row["chain_id"]))

    # -- preparing -------------------------------------------------------
    def prepare(self, blob: str | int, *, diff_id: str | None = None, parent: str | None = None,
                name: str = "", on_commit: Callable[[str], None] | None = None) -> Snapshot:
        """Unpack one layer. With ``diff_id`` known this is idempotent (an
        existing snapshot is returned as is); without it (``docker import``)
        the layer is unpacked first and its chain ID derived from the result.
        ``on_commit(chain_id)`` runs under the snapshot's lock before it is
        looked up or registered: the caller's chance to protect it from a
        concurrent garbage collection (see :meth:`detach`)."""
        if diff_id is not None:
            return self.prepare_many([LayerJob(blob, diff_id, parent, name)], on_commit)[0]
        tmp = self._new_tmp()
        try:
            try:
                result = _native.unpack_layer(blob, tmp, source_digest=False)
            except _native.LayerError as e:
                raise InvalidArgument(_label(name, str(e))) from e
            chain = chain_id(parent, result["diff_id"])
            with self._locks.hold([chain]):
                if on_commit is not None:
                    on_commit(chain)
                if self.exists(chain):
                    return self.get(chain)
                return self._commit(tmp, chain, parent, result["diff_id"], result["size"])
        finally:
            self._drop_tmp(tmp)

    def prepare_many(self, jobs: Sequence[LayerJob],
                     on_commit: Callable[[str], None] | None = None) -> list[Snapshot]:
        """Prepare several layers, unpacking the missing ones in parallel.
        All or nothing: if any layer fails, none of the new snapshots is
        registered and InvalidArgument names the failing layer."""
        chains = [job.chain_id for job in jobs]
        with self._locks.hold(chains):
            if on_commit is not None:
                for chain in dict.fromkeys(chains):
                    on_commit(chain)
            todo: dict[str, LayerJob] = {}
            for job, chain in zip(jobs, chains):
                if chain not in todo and not self.exists(chain):
                    todo[chain] = job
            tmps = {chain: self._new_tmp() for chain in todo}
            try:
                results = self._unpack([(todo[c].blob, tmps[c], todo[c].diff_id) for c in todo])
                for (chain, job), result in zip(todo.items(), results):
                    if isinstance(result, BaseException):
                        raise InvalidArgument(_label(job.name, str(result))) from result
                    if result["diff_id"] != job.diff_id:
                        raise InvalidArgument(_label(
                            job.name, f"diff ID mismatch: expected {job.diff_id}, "
                                      f"got {result['diff_id']}"))
                for (chain, job), result in zip(todo.items(), results):
                    self._commit(tmps[chain], chain, job.parent, job.diff_id, result["size"])
            finally:
                for tmp in tmps.values():
                    self._drop_tmp(tmp)
            return [self.get(chain) for chain in chains]

    def _unpack(self, jobs: list[tuple[str | int, str, str]]) -> list:
        # A snapshot is named by diff IDs, which the unpack checks; the blob's
        # own digest is the content store's business (checked at ingest, and
        # as a download arrives), so the unpack does not hash the blob again.
        if not jobs:
            return []
        if len(jobs) == 1:
            source, target, _ = jobs[0]
            try:
                return [_native.unpack_layer(source, target, source_digest=False)]
            except _native.LayerError as e:
                return [e]
        return list(_native.unpack_layers([(s, t, {"source_digest": False}) for s, t, _ in jobs],
                                          threads=self._threads))

    def _commit(self, tmp: str, chain: str, parent: str | None, diff_id: str, size: int) -> Snapshot:
        """Register and rename a fully unpacked tmp dir (caller holds the chain lock)."""
        final = self.path(chain)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO snapshots(chain_id, parent, diff_id, size, created_ns)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(chain_id) DO UPDATE SET"
                " parent=excluded.parent, diff_id=excluded.diff_id, size=excluded.size",
                (chain, parent, diff_id, size, time.time_ns()))
        try:
            if os.path.lexists(final):
                # A directory without a row is a crash leftover: replace it.
                self._discard(final)
            os.rename(tmp, final)
        except BaseException:
            self._db.execute("DELETE FROM snapshots WHERE chain_id=?", (chain,))
            raise
        return Snapshot(chain, parent, diff_id, size, final)

    # -- removal ---------------------------------------------------------
    def remove(self, chain: str) -> int:
        """Remove a snapshot; returns its size (0 if it did not exist)."""
        detached = self.detach(chain)
        if detached is None:
            return 0
        self.purge(detached[0])
        return detached[1]

    def detach(self, chain: str, unless: Callable[[str], bool] | None = None
               ) -> tuple[str, int] | None:
        """Unregister a snapshot and move its directory out of the way (fast);
        the caller deletes it with :meth:`purge`. ``unless(chain_id)`` is
        checked under the snapshot's lock, so a caller that marks snapshots
        in use from ``prepare``'s ``on_commit`` never loses one to a
        concurrent collection. Returns (doomed path, size) or None."""
        with self._locks.hold([chain]):
            if unless is not None and unless(chain):
                return None
            row = self._db.query_one("SELECT size FROM snapshots WHERE chain_id=?", (chain,))
            path = self.path(chain)
            doomed = self._new_tmp()
            if os.path.lexists(path):
                # The final name disappears atomically; the slow delete runs
                # under a tmp- name that gc finishes after a crash.
                os.rename(path, doomed)
            elif row is None:
                self._drop_tmp(doomed, remove=False)
                return None
            self._db.execute("DELETE FROM snapshots WHERE chain_id=?", (chain,))
        return doomed, (row["size"] if row else 0)

    def purge(self, doomed: str) -> None:
        """Delete a directory returned by :meth:`detach`."""
        self._drop_tmp(doomed)

    def orphans(self) -> tuple[list[str], list[str]]:
        """(dirs on disk that are not registered snapshots and not in use:
        crash leftovers, ...; rows whose directory is missing)."""
        with self._tmp_guard:
            active = set(self._active_tmp)
        rows = {r["chain_id"] for r in self._db.query("SELECT chain_id FROM snapshots")}
        registered_hex = {c.partition(":")[2] for c in rows}
        stray = []
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.path in active:
                    continue
                if entry.name not in registered_hex:
                    stray.append(entry.path)
        missing = [c for c in rows if not os.path.isdir(self.path(c))]
        return stray, missing

    def remove_stray(self, path: str) -> None:
        """Remove a directory returned by :meth:`orphans`, unless it became a
        registered snapshot since."""
        name = os.path.basename(path)
        if os.path.dirname(path) != self.root:
            raise InvalidArgument(f"{path} is not in the snapshot store")
        if name.startswith(TMP_PREFIX):
            with self._tmp_guard:
                if path in self._active_tmp:
                    return
            self._discard(path)
            return
        chain = "sha256:" + name
        try:
            _hex(chain)
        except InvalidArgument:
            self._discard(path)
            return
        with self._locks.hold([chain]):
            if self._db.query_one("SELECT 1 FROM snapshots WHERE chain_id=?", (chain,)) is None:
                self._discard(path)

    # -- temp dirs -------------------------------------------------------
    def _new_tmp(self, create: bool = False) -> str:
        path = os.path.join(self.root, TMP_PREFIX + secrets.token_hex(12))
        with self._tmp_guard:
            self._active_tmp.add(path)
        if create:
            os.mkdir(path, 0o755)
        return path

    def _drop_tmp(self, path: str, remove: bool = True) -> None:
        if remove and os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
        with self._tmp_guard:
            self._active_tmp.discard(path)

    def _discard(self, path: str) -> None:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                doomed = self._new_tmp()
                try:
                    os.rename(path, doomed)
                finally:
                    self._drop_tmp(doomed)
            elif os.path.lexists(path):
                os.unlink(path)
        except FileNotFoundError:
            pass  # already gone


def _label(name: str, message: str) -> str:
    return f"{name}: {message}" if name else message
