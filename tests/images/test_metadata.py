"""metadata.db: per-component migrations, upgrades, transactions, WAL."""

import sqlite3
import threading

import pytest

from berth.config import Config
from berth.errors import SystemError_
from berth.events import EventBus
from berth.images import ImageService
from berth.images import service as image_service_module
from berth.metadata import Database

V1 = ["CREATE TABLE widgets (id TEXT PRIMARY KEY, size INTEGER NOT NULL);"]
V2 = V1 + [
    """
    ALTER TABLE widgets ADD COLUMN colour TEXT NOT NULL DEFAULT 'grey';
    CREATE INDEX widgets_colour ON widgets(colour);
    """,
]


def test_fresh_database_gets_every_migration(workdir):
    db = Database(str(workdir / "metadata.db"))
    assert db.schema_version("widgets") == 0
    assert db.migrate("widgets", V2) == 2
    assert db.schema_version("widgets") == 2
    db.execute("INSERT INTO widgets(id, size) VALUES ('a', 1)")
    assert db.query_one("SELECT colour FROM widgets")["colour"] == "grey"
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"


def test_upgrade_from_an_older_version_keeps_data(workdir):
    path = str(workdir / "metadata.db")
    old = Database(path)
    old.migrate("widgets", V1)
    old.execute("INSERT INTO widgets(id, size) VALUES ('a', 7)")
    old.close()

    new = Database(path)
    assert new.schema_version("widgets") == 1
    new.migrate("widgets", V2)
    assert new.schema_version("widgets") == 2
    row = new.query_one("SELECT * FROM widgets WHERE id='a'")
    assert (row["size"], row["colour"]) == (7, "grey")
    # Running again applies nothing.
    new.migrate("widgets", V2)
    assert new.schema_version("widgets") == 2


def test_components_are_versioned_independently(workdir):
    db = Database(str(workdir / "metadata.db"))
    db.migrate("widgets", V2)
    db.migrate("gadgets", ["CREATE TABLE gadgets (id TEXT PRIMARY KEY);"])
    assert (db.schema_version("widgets"), db.schema_version("gadgets")) == (2, 1)


def test_a_database_from_a_newer_berth_is_refused(workdir):
    path = str(workdir / "metadata.db")
    db = Database(path)
    db.migrate("widgets", V2)
    db.close()
    with pytest.raises(SystemError_, match="schema version 2 of 'widgets' is newer than this "
                                           r"berth supports \(1\)"):
        Database(path).migrate("widgets", V1)


def test_a_failing_migration_leaves_the_previous_version(workdir):
    db = Database(str(workdir / "metadata.db"))
    db.migrate("widgets", V1)
    broken = V1 + ["ALTER TABLE widgets ADD COLUMN x TEXT; CREATE TABLE widgets (id TEXT);"]
    with pytest.raises(SystemError_, match="migration 2 of 'widgets' failed"):
        db.migrate("widgets", broken)
    assert db.schema_version("widgets") == 1
    columns = [r["name"] for r in db.query("PRAGMA table_info(widgets)")]
    assert columns == ["id", "size"]  # the ALTER was rolled back too


def test_python_migrations(workdir):
    def backfill(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE widgets SET size = size * 10")

    db = Database(str(workdir / "metadata.db"))
    db.migrate("widgets", V1)
    db.execute("INSERT INTO widgets VALUES ('a', 2)")
    db.migrate("widgets", V1 + [backfill])
    assert db.query_one("SELECT size FROM widgets")["size"] == 20


def test_transaction_rolls_back_on_error(workdir):
    db = Database(str(workdir / "metadata.db"))
    db.migrate("widgets", V1)
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO widgets VALUES ('a', 1)")
            with db.transaction() as inner:  # nested: joins the outer one
                inner.execute("INSERT INTO widgets VALUES ('b', 2)")
            raise RuntimeError("boom")
    assert db.query("SELECT * FROM widgets") == []


def test_one_connection_many_threads(workdir):
    db = Database(str(workdir / "metadata.db"))
    db.migrate("widgets", V1)

    def work(n: int) -> None:
        for i in range(50):
            with db.transaction() as conn:
                conn.execute("INSERT INTO widgets VALUES (?, ?)", (f"{n}-{i}", i))
            db.query("SELECT count(*) FROM widgets")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.query_one("SELECT count(*) FROM widgets")[0] == 300


def test_image_service_upgrades_an_older_images_schema(workdir, monkeypatch):
    """The images component itself migrates forward: a root whose metadata.db
    predates a later migration is upgraded on open, rows intact."""
    root = workdir / "root"
    svc = ImageService(Config(root=str(root)), EventBus())
    svc.db.execute("INSERT INTO images(id, config_media_type, size, added_ns) VALUES "
                   "('sha256:' || printf('%064d', 1), 'x', 5, 1)")
    version = svc.db.schema_version("images")
    svc.close()

    extra = "ALTER TABLE images ADD COLUMN note TEXT NOT NULL DEFAULT '';"
    monkeypatch.setattr(image_service_module, "MIGRATIONS",
                        image_service_module.MIGRATIONS + [extra])
    upgraded = ImageService(Config(root=str(root)), EventBus())
    assert upgraded.db.schema_version("images") == version + 1
    row = upgraded.db.query_one("SELECT size, note FROM images")
    assert (row["size"], row["note"]) == (5, "")
    upgraded.close()
