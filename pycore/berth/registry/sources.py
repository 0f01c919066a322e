"""Where each blob was last seen in a registry (Docker's "v2 metadata"): the
repositories of the same registry a push can mount a layer from instead of
uploading it again. Kept in the daemon's metadata database."""

from __future__ import annotations

import time
from typing import Iterable

from berth.metadata import Database

MIGRATIONS = [
    """
    CREATE TABLE registry_blob_sources (
        digest      TEXT NOT NULL,
        registry    TEXT NOT NULL,   -- domain as in references: docker.io, localhost:5000
        repository  TEXT NOT NULL,   -- path inside the registry: library/busybox
        seen_ns     INTEGER NOT NULL,
        PRIMARY KEY (digest, registry, repository)
    );
    """,
]

MAX_CANDIDATES = 3


class BlobSources:
    def __init__(self, db: Database):
        self._db = db
        db.migrate("registry", MIGRATIONS)

    def add(self, digests: Iterable[str], registry: str, repository: str) -> None:
        now = time.time_ns()
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO registry_blob_sources(digest, registry, repository, seen_ns)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(digest, registry, repository)"
                " DO UPDATE SET seen_ns=excluded.seen_ns",
                [(d, registry, repository, now) for d in dict.fromkeys(digests)])

    def candidates(self, digest: str, registry: str, exclude: str) -> list[str]:
        """Other repositories of ``registry`` known to hold ``digest``, most
        recently seen first."""
        rows = self._db.query(
            "SELECT repository FROM registry_blob_sources WHERE digest=? AND registry=?"
            " AND repository<>? ORDER BY seen_ns DESC LIMIT ?",
            (digest, registry, exclude, MAX_CANDIDATES))
        return [r["repository"] for r in rows]
