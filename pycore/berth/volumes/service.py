"""VolumeService: named and anonymous volumes (local driver), and the mounts of
each container (binds, volumes, tmpfs) from its create to its removal.

Thread-safe: the daemon calls it from worker threads. ``_lock`` guards every
decision that reads then writes references (create-or-reuse, remove, prune,
prepare, release); the database's own lock is taken inside it.

State: ``metadata.db`` tables ``volumes`` (name, driver, labels, options),
``volume_refs`` (which container uses which volume: a referenced volume
cannot be removed) and ``container_mounts`` (each container's mount points,
for inspect and ``docker cp``); the data itself under ``volumes/<name>/_data``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from typing import Any, Callable, Iterable

from berth.config import Config
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, SystemError_
from berth.events import EventBus
from berth.metadata import Database
from berth.volumes import containerfs
from berth.volumes.local import LocalDriver, check_options
from berth.volumes.mounts import (ANONYMOUS_LABEL, DEFAULT_DRIVER, MountPoint, check_volume_name,
                                  depth, duplicate, parse_bind, parse_mount, parse_tmpfs,
                                  parse_volumes_from)
from berth.volumes.rootview import RootView, remove_stale_mountpoints

log = logging.getLogger("berth.volumes")

MIGRATIONS = [
    """
    CREATE TABLE volumes (
        name        TEXT PRIMARY KEY,
        driver      TEXT NOT NULL,
        created_ns  INTEGER NOT NULL,
        labels      TEXT,              -- JSON object, NULL when created without labels
        options     TEXT               -- JSON object of driver options, NULL when none
    );
    CREATE TABLE volume_refs (
        volume       TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
        container_id TEXT NOT NULL,
        PRIMARY KEY (volume, container_id)
    );
    CREATE INDEX volume_refs_container ON volume_refs(container_id);
    CREATE TABLE container_mounts (
        container_id TEXT PRIMARY KEY,
        mounts       TEXT NOT NULL     -- JSON list of berth.volumes.mounts.MountPoint
    );
    """,
]

LIST_FILTERS = frozenset({"dangling", "name", "driver", "label"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# (name or id) -> container id; raises NotFound. Set by the containers component.
ContainerResolver = Callable[[str], str]


def _go_bool(key: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}': expected a boolean (true or false)")


def _created_at(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def _label_match(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == value


class VolumeService:
    def __init__(self, config: Config, events: EventBus, db: Database | None = None):
        self.config = config
        self.events = events
        self._own_db = db is None
        self.db = db if db is not None else Database(config.path("metadata.db"))
        self.db.migrate("volumes", MIGRATIONS)
        self.driver = LocalDriver(config.path("volumes"))
        self.tmp_dir = config.path("tmp")
        self._lock = threading.RLock()
        self._prune_running = False
        self._fill_locks: dict[str, threading.Lock] = {}
        self._resolve_container: ContainerResolver | None = None
        self.reconcile()

    def close(self) -> None:
        if self._own_db:
            self.db.close()

    def set_container_resolver(self, resolve: ContainerResolver) -> None:
        """``resolve(name_or_id) -> container id`` (for ``--volumes-from``)."""
        self._resolve_container = resolve

    # -- start-up ---------------------------------------------------------------------
    def reconcile(self) -> None:
        """Finish what a crash interrupted and agree with the disk: half-removed
        volumes go, a volume directory without a row is adopted (its data is
        never thrown away), a row without a directory gets an empty one back,
        and volumes with mount options in use are mounted again."""
        trashed = self.driver.remove_trash()
        remove_stale_mountpoints(self.tmp_dir)
        for name in trashed:
            if not self.driver.exists(name):
                # Removed from the disk, not yet from the database: finish.
                self.db.execute("DELETE FROM volumes WHERE name=?", (name,))
        known = {r["name"] for r in self.db.query("SELECT name FROM volumes")}
        for name in self.driver.names_on_disk():
            if name in known or not os.path.isdir(self.driver.data_path(name)):
                continue
            log.warning("volume %s: directory without metadata, adopted", name)
            created = int(os.stat(self.driver.path(name)).st_ctime * 1_000_000_000)
            self.db.execute("INSERT INTO volumes(name, driver, created_ns, labels, options)"
                            " VALUES (?, ?, ?, NULL, NULL)", (name, DEFAULT_DRIVER, created))
        for name in known:
            if not self.driver.exists(name):
                log.warning("volume %s: data directory missing, recreated empty", name)
                self.driver.create(name)
        for row in self.db.query("SELECT v.name, v.options FROM volumes v WHERE v.options"
                                 " IS NOT NULL AND EXISTS (SELECT 1 FROM volume_refs r"
                                 " WHERE r.volume = v.name)"):
            try:
                self.driver.mount(row["name"], json.loads(row["options"]))
            except BerthError as exc:
                log.error("volume %s: %s", row["name"], exc.message)

    def reconcile_references(self, live_containers: Iterable[str]) -> None:
        """Drop references held by containers that no longer exist (the
        containers component calls this once its own state is loaded)."""
        live = set(live_containers)
        with self._lock:
            holders = {r["container_id"] for r in self.db.query(
                "SELECT container_id FROM volume_refs UNION SELECT container_id"
                " FROM container_mounts")}
            for cid in holders - live:
                log.warning("container %s is gone: releasing its volumes", cid)
                self.release(cid, remove_anonymous=False)

    # -- volumes --------------------------------------------------------------------------
    def _row(self, name: str):
        return self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))

    def _refs(self, name: str) -> list[str]:
        return [r["container_id"] for r in self.db.query(
            "SELECT container_id FROM volume_refs WHERE volume=? ORDER BY rowid", (name,))]

    def _volume(self, row) -> dict[str, Any]:
        options = json.loads(row["options"]) if row["options"] else None
        labels = json.loads(row["labels"]) if row["labels"] is not None else None
        return {"CreatedAt": _created_at(row["created_ns"]), "Driver": row["driver"],
                "Labels": labels, "Mountpoint": self.driver.data_path(row["name"]),
                "Name": row["name"], "Options": options or None, "Scope": "local"}

    def create(self, name: str = "", driver: str = "", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        """``POST /volumes/create``. An existing volume of that name is
        returned as it is (Docker's answer too)."""
        name, created = self._get_or_create(name, driver, options, labels)
        return self._volume(self._row(name))

    def _get_or_create(self, name: str, driver: str, options: dict[str, str] | None,
                       labels: dict[str, str] | None) -> tuple[str, bool]:
        driver = driver or DEFAULT_DRIVER
        if not isinstance(name, str):
            raise InvalidArgument("invalid volume name: expected a string")
        for what, value in (("DriverOpts", options), ("Labels", labels)):
            if value is not None and (not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
                raise InvalidArgument(f"create {name}: {what} must be an object of strings")
        if driver != DEFAULT_DRIVER:
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin '
                           f'"{driver}" not found')
        labels = dict(labels) if labels is not None else None
        if not name:
            name = secrets.token_hex(32)
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        check_volume_name(name)
        try:
            check_options(options or {})
        except InvalidArgument as exc:
            raise InvalidArgument(f"create {name}: {exc.message}") from None
        with self._lock:
            row = self._row(name)
            if row is not None:
                if row["driver"] != driver:
                    raise Conflict(f"create {name}: volume name must be unique: driver "
                                   f"'{row['driver']}' already has volume '{name}'")
                return name, False
            self.driver.create(name)
            try:
                self.db.execute(
                    "INSERT INTO volumes(name, driver, created_ns, labels, options)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, driver, time.time_ns(),
                     json.dumps(labels) if labels is not None else None,
                     json.dumps(options) if options else None))
            except BaseException:
                self.driver.remove(name)
                raise
        self.events.publish("volume", "create", name, {"driver": driver})
        return name, True

    def inspect(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return self._volume(row)

    def list(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        filters = filters or {}
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling = None
        if "dangling" in filters:
            values = {_go_bool("dangling", v) for v in filters["dangling"]}
            if len(values) > 1:
                raise InvalidArgument("invalid filter 'dangling': give true or false, not both")
            dangling = values.pop()
        patterns = []
        for value in filters.get("name", []):
            try:
                patterns.append(re.compile(value))
            except re.error:
                patterns.append(re.compile(re.escape(value)))
        used = {r["volume"] for r in self.db.query("SELECT DISTINCT volume FROM volume_refs")}
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            labels = json.loads(row["labels"]) if row["labels"] else {}
            if "driver" in filters and row["driver"] not in filters["driver"]:
                continue
            if patterns and not any(p.search(row["name"]) for p in patterns):
                continue
            if not all(_label_match(labels, spec) for spec in filters.get("label", [])):
                continue
            if dangling is not None and (row["name"] not in used) != dangling:
                continue
            out.append(self._volume(row))
        return {"Volumes": out, "Warnings": []}

    def remove(self, name: str, force: bool = False) -> None:
        """``DELETE /volumes/{name}``. ``force`` only forgives a missing
        volume; a volume in use is never removed."""
        with self._lock:
            row = self._row(name)
            if row is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            refs = self._refs(name)
            if refs:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(refs)}]")
            self._destroy(name, row["driver"])

    def _destroy(self, name: str, driver: str) -> None:
        self.driver.unmount(name)
        # Data first: a crash after it is finished at start-up (remove_trash);
        # the row first would let a crash bring the volume back.
        self.driver.remove(name)
        self.db.execute("DELETE FROM volumes WHERE name=?", (name,))
        self._fill_locks.pop(name, None)
        self.events.publish("volume", "destroy", name, {"driver": driver})

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``POST /volumes/prune``: unused anonymous volumes (Docker >= 23),
        every unused volume with ``all=true``; volumes with mount options are
        left alone (their data is not here to reclaim)."""
        filters = filters or {}
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        all_values = filters.get("all", [])
        if len(all_values) > 1:
            raise InvalidArgument(f"invalid filter 'all={all_values}': only one value is expected")
        prune_all = bool(all_values) and _go_bool("all", all_values[0])
        with self._lock:
            if self._prune_running:
                raise Conflict("a prune operation is already running")
            self._prune_running = True
        try:
            deleted: list[str] = []
            reclaimed = 0
            with self._lock:
                for row in self.db.query(
                        "SELECT * FROM volumes v WHERE NOT EXISTS (SELECT 1 FROM volume_refs r"
                        " WHERE r.volume = v.name) ORDER BY name"):
                    labels = json.loads(row["labels"]) if row["labels"] else {}
                    if row["options"] or row["driver"] != DEFAULT_DRIVER:
                        continue
                    if not prune_all and ANONYMOUS_LABEL not in labels:
                        continue
                    if not all(_label_match(labels, s) for s in filters.get("label", [])):
                        continue
                    if any(_label_match(labels, s) for s in filters.get("label!", [])):
                        continue
                    size = self.driver.size(row["name"])
                    try:
                        self._destroy(row["name"], row["driver"])
                    except BerthError as exc:
                        log.warning("prune: cannot remove volume %s: %s", row["name"], exc.message)
                        continue
                    deleted.append(row["name"])
                    reclaimed += max(size, 0)
        finally:
            with self._lock:
                self._prune_running = False
        self._fill_locks: dict[str, threading.Lock] = {}
        self.events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    def disk_usage(self) -> list[dict[str, Any]]:
        """Volumes with ``UsageData`` (``GET /system/df``)."""
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            volume = self._volume(row)
            size = -1 if row["options"] else self.driver.size(row["name"])
            volume["UsageData"] = {"Size": size, "RefCount": len(self._refs(row["name"]))}
            out.append(volume)
        return out

    def users(self, name: str) -> list[str]:
        """The containers holding volume ``name``."""
        return self._refs(name)

    # -- a container's mounts ----------------------------------------------------------------
    def prepare_mounts(self, container_id: str, host_config: dict[str, Any] | None,
                       image_config: dict[str, Any] | None,
                       rootfs_lowerdirs: list[str]) -> list[dict[str, Any]]:
        """At container create: parse and check every mount request, then create
        the volumes it needs (named ones on demand, anonymous ones for ``-v
        /path`` and the image's ``VOLUME``s), reference them for the
        container, fill new empty volumes from the image, and return the
        runtime spec's mount entries (parents before children). All or
        nothing: on error no volume, reference or directory is left."""
        host_config = host_config or {}
        image_section = (image_config or {}).get("config") if isinstance(
            (image_config or {}).get("config"), dict) else (image_config or {})
        points = self._parse(host_config, image_section or {}, rootfs_lowerdirs)
        for mp in points:
            if mp.type == "bind" and not mp.create_source and not os.path.exists(mp.source):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path '
                                      f"does not exist: {mp.source}")
            if mp.type == "volume" and mp.driver != DEFAULT_DRIVER:
                raise NotFound(f"create {mp.name}: error looking up volume plugin {mp.driver}: "
                               f'plugin "{mp.driver}" not found')
        if not points:
            return []  # nothing to record: most containers, and every `run` counts
        undo: list[Callable[[], None]] = []
        try:
            with self._lock:
                if self.db.query_one("SELECT 1 FROM container_mounts WHERE container_id=?",
                                     (container_id,)):
                    raise Conflict(f"container {container_id} already has its mounts prepared")
                for mp in points:
                    if mp.type == "bind" and mp.create_source:
                        self._make_bind_source(mp.source, undo)
                    elif mp.type == "volume":
                        self._attach_volume(container_id, mp, undo)
                self.db.execute("INSERT INTO container_mounts(container_id, mounts) VALUES (?, ?)",
                                (container_id, json.dumps([mp.to_json() for mp in points])))
                undo.append(lambda: self.db.execute(
                    "DELETE FROM container_mounts WHERE container_id=?", (container_id,)))
            self._populate(points, rootfs_lowerdirs, undo)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - finish the rollback
                    log.error("container %s: rolling back its mounts: %s", container_id, exc)
            raise
        return [mp.spec() for mp in sorted(points, key=lambda m: depth(m.destination))]

    def _parse(self, host_config: dict[str, Any], image_config: dict[str, Any],
               lowerdirs: list[str]) -> list[MountPoint]:
        def listed(key: str, kind: type) -> Any:
            value = host_config.get(key)
            if value is None:
                return kind()
            if not isinstance(value, kind):
                raise InvalidArgument(f"invalid HostConfig.{key}: expected a JSON "
                                      f"{'array' if kind is list else 'object'}")
            return value

        by_dest: dict[str, MountPoint] = {}
        for spec in listed("VolumesFrom", list):
            for mp in self._volumes_from(spec):
                by_dest[mp.destination] = mp
        tmpfs = [parse_tmpfs(dest, data) for dest, data in listed("Tmpfs", dict).items()]
        tmpfs_dests = {m.destination for m in tmpfs}
        explicit: set[str] = set()
        for raw in listed("Binds", list):
            mp = parse_bind(raw)
            if mp.destination in explicit or mp.destination in tmpfs_dests:
                raise duplicate(mp.destination)
            explicit.add(mp.destination)
            by_dest[mp.destination] = mp
        for cfg in listed("Mounts", list):
            mp = parse_mount(cfg)
            if mp.destination in explicit or mp.destination in tmpfs_dests:
                raise duplicate(cfg.get("Target") or mp.destination)
            explicit.add(mp.destination)
            by_dest[mp.destination] = mp
        for mp in tmpfs:
            by_dest[mp.destination] = mp
        driver = host_config.get("VolumeDriver") or ""
        if driver and driver != DEFAULT_DRIVER:
            for mp in by_dest.values():
                if mp.type == "volume" and mp.origin == "binds":
                    mp.driver = driver
        volumes = image_config.get("Volumes") or {}
        if not isinstance(volumes, dict):
            raise InvalidArgument("invalid image config: Volumes must be an object")
        image_points = []
        for dest in sorted(volumes):
            if not isinstance(dest, str) or not dest.startswith("/"):
                raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
            mp = MountPoint(type="volume", destination=containerfs.clean_path(dest),
                            driver=driver or DEFAULT_DRIVER, origin="image")
            if mp.destination in by_dest:
                continue
            image_points.append(mp)
            by_dest[mp.destination] = mp
        if image_points and lowerdirs:
            self._check_image_volumes(image_points, lowerdirs)
        return list(by_dest.values())

    def _check_image_volumes(self, points: list[MountPoint], lowerdirs: list[str]) -> None:
        with RootView.of_layers(self.tmp_dir, lowerdirs, readonly=True,
                                description="image") as view:
            for mp in points:
                try:
                    fd = view.open(mp.destination, os.O_PATH)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                try:
                    if not stat.S_ISDIR(os.fstat(fd).st_mode):
                        raise InvalidArgument(f"cannot mount volume over existing file, file "
                                              f"exists {mp.destination}")
                finally:
                    os.close(fd)

    def _volumes_from(self, spec: str) -> list[MountPoint]:
        name, mode = parse_volumes_from(spec)
        if self._resolve_container is None:
            raise InvalidArgument("--volumes-from is not available: no container store")
        try:
            source_id = self._resolve_container(name)
        except NotFound as exc:
            raise InvalidArgument(exc.message) from None
        out = []
        for mp in self.mount_records(source_id):
            if not mp.in_inspect:
                continue  # --tmpfs mounts are the container's own
            copy = MountPoint.from_json(mp.to_json())
            copy.rw = mp.rw and "ro" not in mode.split(",")
            copy.copy_data = False
            copy.origin = "volumes-from"
            copy.create_source = False
            out.append(copy)
        return out

    def _make_bind_source(self, source: str, undo: list[Callable[[], None]]) -> None:
        """``-v /host:/ctr`` makes a missing host path a directory (Docker's
        behaviour); what this call made is removed again on rollback."""
        if os.path.lexists(source):
            return
        first_missing = source
        parent = os.path.dirname(source)
        while parent != "/" and not os.path.lexists(parent):
            first_missing = parent
            parent = os.path.dirname(parent)
        try:
            os.makedirs(source, 0o755, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"error while creating mount source path '{source}': "
                                  f"{exc.strerror}") from None
        undo.append(lambda: shutil.rmtree(first_missing, ignore_errors=True))

    def _attach_volume(self, container_id: str, mp: MountPoint,
                       undo: list[Callable[[], None]]) -> None:
        anonymous = not mp.name
        name, created = self._get_or_create(mp.name, mp.driver, mp.driver_options or None,
                                            mp.labels or None)
        if created:
            undo.append(lambda: self._destroy(name, DEFAULT_DRIVER))
        row = self._row(name)
        options = json.loads(row["options"]) if row["options"] else {}
        was_used = bool(self._refs(name))
        self.db.execute("INSERT OR IGNORE INTO volume_refs(volume, container_id) VALUES (?, ?)",
                        (name, container_id))
        undo.append(lambda: self.db.execute(
            "DELETE FROM volume_refs WHERE volume=? AND container_id=?", (name, container_id)))
        if options and not was_used:
            self.driver.mount(name, options)
            undo.append(lambda: self.driver.unmount(name))
        mp.name = name
        mp.source = self.driver.data_path(name)
        mp.driver = row["driver"]
        if anonymous:
            mp.anonymous = True  # the container owns it: `rm -v` removes it

    def _populate(self, points: list[MountPoint], lowerdirs: list[str],
                  undo: list[Callable[[], None]]) -> None:
        """Copy the image's content at each volume's mount point into the
        volume when the volume is empty (Docker's copy-up), unless nocopy."""
        todo = [mp for mp in points if mp.type == "volume" and mp.copy_data
                and self.driver.is_empty(mp.name)]
        if not todo or not lowerdirs:
            return
        with RootView.of_layers(self.tmp_dir, lowerdirs, readonly=True,
                                description="image") as view:
            for mp in todo:
                # Two containers creating with the same new volume: one fills it.
                with self._fill_lock(mp.name):
                    if self.driver.is_empty(mp.name):
                        self._fill(view, mp, undo)

    def _fill_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._fill_locks.setdefault(name, threading.Lock())

    def _fill(self, view: RootView, mp: MountPoint, undo: list[Callable[[], None]]) -> None:
        try:
            src = view.open(mp.destination, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing (or no directory) at that path in the image
        try:
            dst = os.open(mp.source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            undo.append(lambda path=mp.source: _empty_directory(path))
            try:
                containerfs.copy_tree(src, dst)
            finally:
                os.close(dst)
        except OSError as exc:
            raise SystemError_(f"failed to populate volume {mp.name} from the image at "
                               f"{mp.destination}: {exc.strerror or exc}") from None
        finally:
            os.close(src)

    def mount_records(self, container_id: str) -> list[MountPoint]:
        """The container's mount points as berth records them."""
        row = self.db.query_one("SELECT mounts FROM container_mounts WHERE container_id=?",
                                (container_id,))
        if row is None:
            return []
        return [MountPoint.from_json(m) for m in json.loads(row["mounts"])]

    def mounts_inspect(self, container_id: str) -> list[dict[str, Any]]:
        """Docker's ``Mounts`` of ``docker inspect``."""
        return [mp.inspect() for mp in self.mount_records(container_id) if mp.in_inspect]

    #: The name the containers component looks up for inspect's ``Mounts``.
    mount_points = mounts_inspect

    def container_started(self, container_id: str) -> None:
        """Docker's volume ``mount`` events, for the containers component."""
        for mp in self.mount_records(container_id):
            if mp.type == "volume":
                self.events.publish("volume", "mount", mp.name, {
                    "driver": mp.driver, "container": container_id,
                    "destination": mp.destination, "read/write": str(mp.rw).lower(),
                    "propagation": mp.propagation})

    def container_stopped(self, container_id: str) -> None:
        for mp in self.mount_records(container_id):
            if mp.type == "volume":
                self.events.publish("volume", "unmount", mp.name,
                                    {"driver": mp.driver, "container": container_id})

    def release(self, container_id: str, remove_anonymous: bool = False) -> list[str]:
        """At container removal: drop its references (a volume with mount
        options no one uses any more is unmounted) and, with
        ``remove_anonymous`` (``rm -v``), remove its anonymous volumes that no
        other container uses. Returns the volumes removed. Idempotent."""
        removed: list[str] = []
        with self._lock:
            row = self.db.query_one("SELECT mounts FROM container_mounts WHERE container_id=?",
                                    (container_id,))
            names = [r["volume"] for r in self.db.query(
                "SELECT volume FROM volume_refs WHERE container_id=?", (container_id,))]
            if row is None and not names:
                return removed  # it had no mounts (see prepare_mounts)
            points = [MountPoint.from_json(m) for m in json.loads(row["mounts"])] if row else []
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM volume_refs WHERE container_id=?", (container_id,))
                conn.execute("DELETE FROM container_mounts WHERE container_id=?", (container_id,))
            anonymous = {mp.name for mp in points if mp.type == "volume" and mp.anonymous}
            for name in names:
                row = self._row(name)
                if row is None or self._refs(name):
                    continue
                try:
                    if remove_anonymous and name in anonymous:
                        self._destroy(name, row["driver"])
                        removed.append(name)
                    elif row["options"]:
                        self.driver.unmount(name)
                except BerthError as exc:
                    log.error("container %s: volume %s: %s", container_id, name, exc.message)
        return removed


def _empty_directory(path: str) -> None:
    """Rollback of a partial copy-up: the volume was empty before."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
