"""The daemon's metadata database: one SQLite file (``metadata.db``).

"One writer discipline": the daemon holds a single connection, guarded by a
lock; every read and write goes through it, and writes happen inside
:meth:`Database.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``). WAL keeps a
crash from corrupting the file.

Schemas are versioned per component: each component (``images`` here, later
``containers``, ``networks``, ``volumes`` ...) owns an ordered list of
migrations and calls :meth:`Database.migrate` with it at start-up. Adding a
table or column is appending one entry to that component's list; versions
already applied are never run again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Any, Callable, Iterator, Sequence, Union

from berth.errors import SystemError_

# A migration is SQL (one or more statements) or a function of the connection.
Migration = Union[str, Callable[[sqlite3.Connection], None]]


def _statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (sqlite3.complete_statement)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")


class Database:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so DDL in
            # migrations is transactional too.
            self._conn = sqlite3.connect(path, check_same_thread=False,
                                         isolation_level=None, timeout=30)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        except sqlite3.DatabaseError as e:
            raise SystemError_(f"cannot open metadata database {path}: {e}") from e
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- transactions ----------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the writer lock and a write transaction. Nested calls in the
        same thread join the outer transaction; an exception rolls it all
        back."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self._conn.execute("COMMIT")

    @property
    def lock(self) -> threading.RLock:
        """The writer lock, for callers that must read-then-decide atomically."""
        return self._lock

    def query(self, sql: str, params: Sequence[Any] | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def execute(self, sql: str, params: Sequence[Any] | dict = ()) -> int:
        """One write statement in its own transaction; returns rows changed."""
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    # -- schema ----------------------------------------------------------
    def schema_version(self, component: str) -> int:
        row = self.query_one("SELECT version FROM schema_version WHERE component=?", (component,))
        return row["version"] if row else 0

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Bring ``component``'s tables to ``len(migrations)``. Each pending
        migration runs in its own transaction together with the version bump,
        so a failure leaves the previous version intact. Returns the version."""
        with self._lock:
            current = self.schema_version(component)
            if current > len(migrations):
                raise SystemError_(
                    f"metadata database {self.path}: schema version {current} of "
                    f"{component!r} is newer than this berth supports ({len(migrations)})")
            for version in range(current + 1, len(migrations) + 1):
                step = migrations[version - 1]
                try:
                    with self.transaction() as conn:
                        if callable(step):
                            step(conn)
                        else:
                            for statement in _statements(step):
                                conn.execute(statement)
                        conn.execute(
                            "INSERT INTO schema_version(component, version) VALUES (?, ?)"
                            " ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                            (component, version))
                except sqlite3.DatabaseError as e:
                    raise SystemError_(
                        f"metadata database {self.path}: migration {version} of "
                        f"{component!r} failed: {e}") from e
            return len(migrations)
