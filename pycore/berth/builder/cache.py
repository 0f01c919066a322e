"""The build cache: which image a step produced, by cache key.

A row holds everything needed to bring the step's image back (its config
bytes and its layer list), so the cache does not depend on the intermediate
image still being registered: removing dangling images after a build keeps
the cache. The layers and blobs of every row are garbage-collection roots of
the image store (:meth:`BuildCache.gc_roots`) until ``build prune`` drops the
row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from berth.images import LayerBlob
from berth.metadata import Database
from berth.snapshots import chain_ids

MIGRATIONS = [
    """
    CREATE TABLE builder_cache (
        key           TEXT PRIMARY KEY,   -- sha256 of parent + step + inputs
        image_id      TEXT NOT NULL,      -- the step's image (its config digest)
        parent        TEXT,               -- the image the step ran on
        config        BLOB NOT NULL,      -- the image config as registered
        layers        TEXT NOT NULL,      -- JSON [[digest, media_type, size, diff_id, chain], ...]
        description   TEXT NOT NULL,      -- the step ("COPY file:... in /app")
        step_type     TEXT NOT NULL,      -- regular | source.local | exec.cachemount | frontend
        created_ns    INTEGER NOT NULL,
        last_used_ns  INTEGER NOT NULL,
        usage_count   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX builder_cache_image ON builder_cache(image_id);
    CREATE TABLE builder_file_digests (
        path      TEXT PRIMARY KEY,       -- absolute path of a context file
        ino       INTEGER NOT NULL,
        size      INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL,
        ctime_ns  INTEGER NOT NULL,
        digest    TEXT NOT NULL
    );
    CREATE TABLE builder_link_layers (
        key          TEXT PRIMARY KEY,    -- COPY --link: the layer does not depend on its parent
        digest       TEXT NOT NULL,
        media_type   TEXT NOT NULL,
        size         INTEGER NOT NULL,
        diff_id      TEXT NOT NULL,
        created_ns   INTEGER NOT NULL,
        last_used_ns INTEGER NOT NULL
    );
    CREATE TABLE builder_cache_mounts (
        id           TEXT PRIMARY KEY,    -- RUN --mount=type=cache,id=...
        dir          TEXT NOT NULL,
        created_ns   INTEGER NOT NULL,
        last_used_ns INTEGER NOT NULL
    );
    """,
]


@dataclass(frozen=True)
class CacheEntry:
    key: str
    image_id: str
    parent: str | None
    config: bytes
    layers: list[LayerBlob]
    chains: list[str]
    description: str
    step_type: str
    created_ns: int
    last_used_ns: int
    usage_count: int


def _layers_json(layers: list[LayerBlob]) -> str:
    chains = chain_ids(layer.diff_id for layer in layers)
    return json.dumps([[l.digest, l.media_type, l.size, l.diff_id, c]
                       for l, c in zip(layers, chains)])


def _entry(row) -> CacheEntry:
    raw = json.loads(row["layers"])
    return CacheEntry(row["key"], row["image_id"], row["parent"], bytes(row["config"]),
                      [LayerBlob(d, m, s, i) for d, m, s, i, _ in raw], [r[4] for r in raw],
                      row["description"], row["step_type"], row["created_ns"],
                      row["last_used_ns"], row["usage_count"])


class BuildCache:
    def __init__(self, db: Database):
        self.db = db
        db.migrate("builder", MIGRATIONS)

    def get(self, key: str) -> CacheEntry | None:
        row = self.db.query_one("SELECT * FROM builder_cache WHERE key=?", (key,))
        return _entry(row) if row else None

    def touch(self, keys: list[str]) -> None:
        if not keys:
            return
        now = time.time_ns()
        with self.db.transaction() as conn:
            conn.executemany("UPDATE builder_cache SET last_used_ns=?, usage_count=usage_count+1"
                             " WHERE key=?", [(now, k) for k in keys])

    def put(self, key: str, image_id: str, parent: str | None, config: bytes,
            layers: list[LayerBlob], description: str, step_type: str) -> None:
        now = time.time_ns()
        self.db.execute(
            "INSERT INTO builder_cache(key, image_id, parent, config, layers, description,"
            " step_type, created_ns, last_used_ns, usage_count) VALUES (?,?,?,?,?,?,?,?,?,0)"
            " ON CONFLICT(key) DO UPDATE SET image_id=excluded.image_id, parent=excluded.parent,"
            " config=excluded.config, layers=excluded.layers, description=excluded.description,"
            " step_type=excluded.step_type, last_used_ns=excluded.last_used_ns",
            (key, image_id, parent, config, _layers_json(layers), description, step_type, now, now))

    def entries(self) -> list[CacheEntry]:
        return [_entry(r) for r in self.db.query("SELECT * FROM builder_cache ORDER BY created_ns")]

    def delete(self, keys: list[str]) -> int:
        with self.db.transaction() as conn:
            return sum(conn.execute("DELETE FROM builder_cache WHERE key=?", (k,)).rowcount
                       for k in keys)

    # -- COPY --link layers ---------------------------------------------------------
    def link_layer(self, key: str) -> LayerBlob | None:
        row = self.db.query_one("SELECT * FROM builder_link_layers WHERE key=?", (key,))
        if row is None:
            return None
        return LayerBlob(row["digest"], row["media_type"], row["size"], row["diff_id"])

    def put_link_layer(self, key: str, layer: LayerBlob) -> None:
        now = time.time_ns()
        self.db.execute(
            "INSERT INTO builder_link_layers(key, digest, media_type, size, diff_id, created_ns,"
            " last_used_ns) VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET"
            " digest=excluded.digest, media_type=excluded.media_type, size=excluded.size,"
            " diff_id=excluded.diff_id, last_used_ns=excluded.last_used_ns",
            (key, layer.digest, layer.media_type, layer.size, layer.diff_id, now, now))

    def link_layers(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM builder_link_layers")]

    def delete_link_layers(self, keys: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM builder_link_layers WHERE key=?", [(k,) for k in keys])

    # -- cache mounts ---------------------------------------------------------------
    def cache_mount(self, mount_id: str) -> str | None:
        row = self.db.query_one("SELECT dir FROM builder_cache_mounts WHERE id=?", (mount_id,))
        return row["dir"] if row else None

    def put_cache_mount(self, mount_id: str, directory: str) -> None:
        now = time.time_ns()
        self.db.execute(
            "INSERT INTO builder_cache_mounts(id, dir, created_ns, last_used_ns) VALUES (?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET last_used_ns=excluded.last_used_ns",
            (mount_id, directory, now, now))

    def cache_mounts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM builder_cache_mounts")]

    def delete_cache_mounts(self, ids: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM builder_cache_mounts WHERE id=?", [(i,) for i in ids])

    # -- garbage collection -----------------------------------------------------------
    def gc_roots(self) -> set[str]:
        """Chain IDs and blob digests the cache still needs."""
        roots: set[str] = set()
        for row in self.db.query("SELECT layers FROM builder_cache"):
            for digest, _m, _s, _d, chain in json.loads(row["layers"]):
                roots.add(digest)
                roots.add(chain)
        for row in self.db.query("SELECT digest FROM builder_link_layers"):
            roots.add(row["digest"])
        return roots
