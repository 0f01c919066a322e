"""ImageService: the images the daemon serves, over the content store, the
snapshots and the metadata database.

Thread-safe: the daemon calls it from worker threads. Three kinds of locks,
always taken in this order, never the other way round:

1. ``_mutex`` -- image-level decisions (tag, untag, delete, register);
2. a snapshot's own lock (inside :class:`SnapshotStore`);
3. ``_lease_lock`` -- the in-memory leases that protect blobs and snapshots
   an operation is still working on from garbage collection;

and the database's lock innermost. Long work (hashing, unpacking, copying)
runs without ``_mutex``, under leases; anything that deletes content checks
"referenced by an image, leased, or rooted" under ``_lease_lock`` at the
moment of deletion.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable

from berth.config import Config
from berth.content import ContentStore, digest_bytes
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.events import EventBus
from berth.images import mediatypes as mt
from berth.images.changes import apply_changes
from berth.images.filters import (check_filters, filter_bool, match_labels, parse_until)
from berth.images.manifest import (Descriptor, ImageConfig, build_manifest, canonical_json,
                                   parse_config, parse_manifest, parse_platform)
from berth.images.reference import (Reference, familiar_match, parse_any, parse_normalized)
from berth.images.lease import Lease
from berth.images.staging import (InstallResult, LayerBlob, StagedBlob, StagedImage,
                                  StagedLayer)
from berth.images.timefmt import format_rfc3339nano, now_ns, parse_rfc3339, unix_seconds
from berth.metadata import Database
from berth.snapshots import LayerJob, SnapshotStore, chain_ids

MIGRATIONS = [
    """
    CREATE TABLE images (
        id                  TEXT PRIMARY KEY,  -- sha256 of the config bytes as stored
        config_media_type   TEXT NOT NULL,
        created_ns          INTEGER,           -- the config's "created"
        size                INTEGER NOT NULL,  -- sum of the layers' unpacked sizes
        parent              TEXT,              -- local parent image (builds)
        manifest_digest     TEXT,              -- the manifest it came with, if any
        manifest_media_type TEXT,
        added_ns            INTEGER NOT NULL,
        last_tag_ns         INTEGER
    );
    CREATE INDEX images_parent ON images(parent);
    CREATE TABLE image_layers (
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        diff_id     TEXT NOT NULL,
        chain_id    TEXT NOT NULL,
        blob_digest TEXT NOT NULL,   -- the layer as received (compressed or not)
        media_type  TEXT NOT NULL,
        blob_size   INTEGER NOT NULL,
        PRIMARY KEY (image_id, idx)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE INDEX image_layers_blob ON image_layers(blob_digest);
    CREATE TABLE tags (
        reference   TEXT PRIMARY KEY,    -- docker.io/library/busybox:latest
        repository  TEXT NOT NULL,       -- docker.io/library/busybox
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_ns  INTEGER NOT NULL
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        reference   TEXT PRIMARY KEY,    -- docker.io/library/busybox@sha256:...
        repository  TEXT NOT NULL,
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_ns  INTEGER NOT NULL
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    """,
]

GRAPH_DRIVER = "overlay2"

log = logging.getLogger("berth.images")

# The docker Config struct's fields in its order: inspect shows them all.
_OMIT = object()
_CONFIG_FIELDS: list[tuple[str, Any]] = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", _OMIT), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", None), ("Cmd", None),
    ("Healthcheck", _OMIT), ("ArgsEscaped", _OMIT), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", _OMIT), ("MacAddress", _OMIT),
    ("OnBuild", None), ("Labels", None), ("StopSignal", _OMIT), ("StopTimeout", _OMIT),
    ("Shell", _OMIT),
]

# An image user as the containers component reports it: (container id, running).
ImageUsers = Callable[[str], Iterable[tuple[str, bool]]]


def docker_config(section: dict[str, Any] | None) -> dict[str, Any]:
    """A config section in the shape ``docker image inspect`` shows."""
    section = dict(section or {})
    out: dict[str, Any] = {}
    for key, default in _CONFIG_FIELDS:
        if key in section:
            out[key] = section.pop(key)
        elif default is not _OMIT:
            out[key] = default
    out.update(section)
    return out


class ImageService:
    def __init__(self, config: Config, events: EventBus, db: Database | None = None):
        self.config = config
        self.events = events
        os.makedirs(config.root, mode=0o711, exist_ok=True)
        self.tmp_dir = config.path("tmp")
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        self._own_db = db is None
        self.db = db if db is not None else Database(config.path("metadata.db"))
        self.db.migrate("images", MIGRATIONS)
        self.content = ContentStore(config.path("content"))
        self.snapshots = SnapshotStore(config.path("snapshots"), self.db)
        self._mutex = threading.RLock()
        self._lease_lock = threading.Lock()
        self._leased_blobs: collections.Counter[str] = collections.Counter()
        self._leased_snapshots: collections.Counter[str] = collections.Counter()
        self._config_cache: dict[str, ImageConfig] = {}
        self._image_users: ImageUsers | None = None
        self._gc_roots: list[Callable[[], Iterable[str]]] = []
        self.reconcile()

    def close(self) -> None:
        if self._own_db:
            self.db.close()

    def reconcile(self) -> None:
        """Start-up: finish what a crash interrupted. Half-unpacked and
        half-removed snapshot directories go; a snapshot an image needs but
        whose directory is missing is unpacked again from its layer blob."""
        stray, _ = self.snapshots.orphans()
        for path in stray:
            self.snapshots.remove_stray(path)
        rows = self.db.query("SELECT image_id, idx, diff_id, chain_id, blob_digest FROM image_layers"
                             " ORDER BY image_id, idx")
        parents: dict[tuple[str, int], str] = {(r["image_id"], r["idx"]): r["chain_id"] for r in rows}
        jobs: dict[str, LayerJob] = {}
        for r in rows:
            chain = r["chain_id"]
            if chain in jobs or self.snapshots.exists(chain):
                continue
            if not self.content.exists(r["blob_digest"]):
                log.error("image %s: layer %s has neither a snapshot nor a blob; "
                          "the image cannot be used until it is pulled or loaded again",
                          r["image_id"], r["diff_id"])
                continue
            jobs[chain] = LayerJob(self.content.path(r["blob_digest"]), r["diff_id"],
                                   parents.get((r["image_id"], r["idx"] - 1)),
                                   f"layer {r['blob_digest']}")
        if jobs:
            log.warning("unpacking %d missing snapshot(s) again from their layer blobs", len(jobs))
            try:
                self.snapshots.prepare_many(list(jobs.values()))
            except InvalidArgument as e:
                log.error("cannot restore snapshots: %s", e.message)

    # -- hooks for the containers component -------------------------------
    def set_image_users(self, users: ImageUsers) -> None:
        """``users(image_id)`` -> [(container_id, running), ...]: the
        containers created from an image, for delete conflicts and counts.
        It must not call back into the ImageService."""
        self._image_users = users

    def add_gc_root(self, roots: Callable[[], Iterable[str]]) -> None:
        """``roots()`` -> chain IDs and blob digests that must survive garbage
        collection and image deletion (e.g. the layers under a container)."""
        self._gc_roots.append(roots)

    def lease(self, cleanup: bool = True) -> Lease:
        return Lease(self, cleanup)

    # -- lookups ----------------------------------------------------------
    def resolve(self, name: str) -> str:
        """A reference, full ID, ``sha256:`` ID or unique ID prefix -> image ID."""
        if not name:
            raise InvalidArgument("image name cannot be empty")
        ref = parse_any(name)
        if isinstance(ref, str):
            if self._image_row(ref) is not None:
                return ref
            raise NotFound(f"No such image: {ref}")
        found = self._lookup_reference(ref)
        if found is not None:
            return found
        by_prefix = self._search_prefix(name)
        if by_prefix is not None:
            return by_prefix
        raise NotFound(f"No such image: {ref.tag_name_only().familiar()}")

    def _lookup_reference(self, ref: Reference) -> str | None:
        if ref.digest is not None:
            row = self.db.query_one("SELECT image_id FROM repo_digests WHERE reference=?",
                                    (f"{ref.name}@{ref.digest}",))
        else:
            row = self.db.query_one("SELECT image_id FROM tags WHERE reference=?",
                                    (str(ref.tag_name_only()),))
        return row["image_id"] if row else None

    def _search_prefix(self, prefix: str) -> str | None:
        hex_ = prefix[len("sha256:"):] if prefix.startswith("sha256:") else prefix
        if not hex_ or len(hex_) > 64 or any(c not in "0123456789abcdef" for c in hex_):
            return None
        rows = self.db.query("SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                             (f"sha256:{hex_}", f"sha256:{hex_}\x7f"))
        # An ambiguous prefix finds nothing, as in Docker.
        return rows[0]["id"] if len(rows) == 1 else None

    def _image_row(self, image_id: str):
        return self.db.query_one("SELECT * FROM images WHERE id=?", (image_id,))

    def image_config(self, image_id: str) -> ImageConfig:
        """The parsed config of an image (cached: configs are immutable)."""
        cached = self._config_cache.get(image_id)
        if cached is not None:
            return cached
        try:
            data = self.content.read(image_id)
        except NotFound:
            raise NotFound(f"No such image: {image_id} (its config blob is missing)") from None
        parsed = parse_config(data, f"config of image {image_id}")
        self._config_cache[image_id] = parsed
        return parsed

    def config_of(self, name: str) -> dict[str, Any]:
        """The raw config JSON (``config``, ``rootfs``, ``history`` ...) of an image."""
        return self.image_config(self.resolve(name)).raw

    def layer_chain_ids(self, image_id: str) -> list[str]:
        """The image's snapshots, base layer first."""
        return [r["chain_id"] for r in self.db.query(
            "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY idx", (image_id,))]

    def image_layers(self, image_id: str) -> list[LayerBlob]:
        """The image's layers as stored, base first: what a build on top of
        it passes to :meth:`register_image` before its own layers."""
        return [LayerBlob(r["blob_digest"], r["media_type"], r["blob_size"], r["diff_id"])
                for r in self._layers(image_id)]

    def lowerdirs(self, image_id: str) -> list[str]:
        """Overlay lowerdirs for a container of this image, top layer first."""
        return self.snapshots.lowerdirs(self.layer_chain_ids(image_id))

    def _layers(self, image_id: str):
        return self.db.query("SELECT * FROM image_layers WHERE image_id=? ORDER BY idx", (image_id,))

    def _references(self, image_id: str) -> tuple[list[Reference], list[Reference]]:
        """(tags, repo digests) of an image, each sorted by familiar form."""
        tags = [parse_normalized(r["reference"]) for r in self.db.query(
            "SELECT reference FROM tags WHERE image_id=?", (image_id,))]
        digests = [parse_normalized(r["reference"]) for r in self.db.query(
            "SELECT reference FROM repo_digests WHERE image_id=?", (image_id,))]
        return sorted(tags, key=Reference.familiar), sorted(digests, key=Reference.familiar)

    def _children(self, image_id: str) -> list[str]:
        return [r["id"] for r in self.db.query("SELECT id FROM images WHERE parent=?", (image_id,))]

    def _users(self, image_id: str) -> list[tuple[str, bool]]:
        return list(self._image_users(image_id)) if self._image_users else []

    # -- list / inspect / history ------------------------------------------
    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             digests: bool = False) -> list[dict[str, Any]]:
        """ImageSummary objects, newest first (``GET /images/json``).
        ``digests`` is accepted for API symmetry: RepoDigests is always set."""
        filters = check_filters(filters, {"dangling", "label", "before", "since", "reference"})
        dangling_only = filter_bool(filters, "dangling")
        before = since = None
        for value in filters.get("before", []):
            before = self._created_of(self.resolve(value))
        for value in filters.get("since", []):
            since = self._created_of(self.resolve(value))
        rows = self.db.query("SELECT * FROM images")
        all_tags = collections.defaultdict(list)
        for r in self.db.query("SELECT reference, image_id FROM tags"):
            all_tags[r["image_id"]].append(parse_normalized(r["reference"]))
        all_digests = collections.defaultdict(list)
        for r in self.db.query("SELECT reference, image_id FROM repo_digests"):
            all_digests[r["image_id"]].append(parse_normalized(r["reference"]))
        parents = {r["parent"] for r in rows if r["parent"]}
        out = []
        for row in rows:
            image_id = row["id"]
            if dangling_only is True and image_id in parents:
                continue  # only "heads" can be dangling
            created = row["created_ns"] or 0
            if before is not None and created >= before:
                continue
            if since is not None and created <= since:
                continue
            labels = self._labels(image_id)
            if "label" in filters and not match_labels(filters, labels):
                continue
            tags, repo_digests = [], []
            for ref in sorted(all_tags[image_id] + all_digests[image_id], key=Reference.familiar):
                if "reference" in filters and not any(
                        familiar_match(p, ref) for p in filters["reference"]):
                    continue
                (repo_digests if ref.digest else tags).append(ref.familiar())
            if not tags and not repo_digests:
                if not all and image_id in parents:
                    continue  # an intermediate image of a build
                if dangling_only is False or "reference" in filters:
                    continue
                tags, repo_digests = ["<none>:<none>"], ["<none>@<none>"]
            elif dangling_only is True and tags:
                continue
            out.append(self._summary(row, tags, repo_digests, labels))
        out.sort(key=lambda s: (s["Created"], s["Id"]), reverse=True)
        return out

    def _summary(self, row, tags: list[str], repo_digests: list[str],
                 labels: dict[str, str]) -> dict[str, Any]:
        return {
            "Id": row["id"],
            "ParentId": row["parent"] or "",
            "RepoTags": tags,
            "RepoDigests": repo_digests,
            "Created": unix_seconds(row["created_ns"]),
            "Size": row["size"],
            "SharedSize": -1,
            "VirtualSize": row["size"],
            "Labels": labels,
            "Containers": -1,
        }

    def _labels(self, image_id: str) -> dict[str, str]:
        try:
            return dict(self.image_config(image_id).labels)
        except NotFound:
            return {}

    def _created_of(self, image_id: str) -> int:
        row = self._image_row(image_id)
        return (row["created_ns"] or 0) if row else 0

    def inspect(self, name: str) -> dict[str, Any]:
        """ImageInspect (``GET /images/{name}/json``)."""
        image_id = self.resolve(name)
        row = self._image_row(image_id)
        if row is None:
            raise NotFound(f"No such image: {name}")
        cfg = self.image_config(image_id)
        raw = cfg.raw
        tags, repo_digests = self._references(image_id)
        chains = self.layer_chain_ids(image_id)
        dirs = [self.snapshots.path(c) for c in reversed(chains)]
        graph_data: dict[str, str] = {}
        if dirs:
            graph_data["UpperDir"] = dirs[0]
            if len(dirs) > 1:
                graph_data["LowerDir"] = ":".join(dirs[1:])
        out: dict[str, Any] = {
            "Id": image_id,
            "RepoTags": [t.familiar() for t in tags],
            "RepoDigests": [d.familiar() for d in repo_digests],
            "Parent": row["parent"] or "",
            "Comment": raw.get("comment", ""),
            "Created": format_rfc3339nano(row["created_ns"]),
            "Container": raw.get("container", ""),
            "ContainerConfig": docker_config(raw.get("container_config")),
            "DockerVersion": raw.get("docker_version", ""),
            "Author": raw.get("author", ""),
            "Config": docker_config(raw.get("config")),
            "Architecture": raw.get("architecture", ""),
        }
        if raw.get("variant"):
            out["Variant"] = raw["variant"]
        out["Os"] = raw.get("os", "")
        if raw.get("os.version"):
            out["OsVersion"] = raw["os.version"]
        out.update({
            "Size": row["size"],
            "VirtualSize": row["size"],
            "GraphDriver": {"Name": GRAPH_DRIVER, "Data": graph_data or None},
            "RootFS": {"Type": "layers", "Layers": list(cfg.diff_ids)},
            "Metadata": {"LastTagTime": format_rfc3339nano(row["last_tag_ns"])},
        })
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        """``GET /images/{name}/history``: newest first; entries that are not
        the top of a local image have Id ``<missing>``."""
        image_id = self.resolve(name)
        cfg = self.image_config(image_id)
        sizes = self.snapshots.sizes()
        chains = self.layer_chain_ids(image_id)
        entries = []
        layer_index = 0
        for h in cfg.history:
            size = 0
            if not h.get("empty_layer"):
                if layer_index < len(chains):
                    size = sizes.get(chains[layer_index], 0)
                layer_index += 1
            try:
                created = unix_seconds(parse_config_time(h.get("created")))
            except ValueError:
                created = 0
            entries.append({
                "Id": "<missing>",
                "Created": created,
                "CreatedBy": h.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": h.get("comment", ""),
            })
        entries.reverse()
        current: str | None = image_id
        for entry in entries:
            if current is None:
                break
            entry["Id"] = current
            tags, _ = self._references(current)
            entry["Tags"] = [t.familiar() for t in tags] or None
            row = self._image_row(current)
            current = row["parent"] if row is not None else None
        return entries

    # -- tag / remove ---------------------------------------------------------
    def tag(self, source: str, repo: str, tag: str | None = None) -> str:
        """Tag an image; returns the new tag in familiar form."""
        ref = parse_normalized(repo)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        if tag:
            ref = ref.trim().with_tag(tag)
        ref = ref.tag_name_only()
        if ref.familiar_name == "sha256":
            raise InvalidArgument("refusing to create an ambiguous tag using digest algorithm as name")
        with self._mutex:
            image_id = self.resolve(source)
            with self.db.transaction() as conn:
                self._set_tag(conn, ref, image_id, now_ns())
        self._event(image_id, "tag", ref.familiar())
        return ref.familiar()

    def _set_tag(self, conn, ref: Reference, image_id: str, when: int) -> str | None:
        """Point a tag at an image; returns the image it was taken from."""
        row = conn.execute("SELECT image_id FROM tags WHERE reference=?", (str(ref),)).fetchone()
        conn.execute(
            "INSERT INTO tags(reference, repository, image_id, created_ns) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(reference) DO UPDATE SET image_id=excluded.image_id,"
            " created_ns=excluded.created_ns", (str(ref), ref.name, image_id, when))
        conn.execute("UPDATE images SET last_tag_ns=? WHERE id=?", (when, image_id))
        old = row["image_id"] if row else None
        return old if old != image_id else None

    def add_repo_digest(self, name: str, repo_digest: str) -> None:
        """Record ``repo@sha256:...`` (the manifest digest in a registry) for
        an image: after a pull or a push."""
        ref = parse_normalized(repo_digest)
        if ref.digest is None:
            raise InvalidArgument(f"{repo_digest!r} is not a digest reference")
        with self._mutex:
            image_id = self.resolve(name)
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO repo_digests(reference, repository, image_id, created_ns)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(reference) DO UPDATE SET"
                    " image_id=excluded.image_id", (f"{ref.name}@{ref.digest}", ref.name,
                                                   image_id, now_ns()))

    def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        """``DELETE /images/{name}`` with Docker's rules; returns the
        ``[{"Untagged": ...}, {"Deleted": ...}]`` records."""
        return self._remove(name, force, noprune).records

    def _remove(self, name: str, force: bool, noprune: bool) -> "_Removal":
        removal = _Removal()
        try:
            with self._mutex:
                self._remove_locked(name, force, noprune, removal)
        finally:
            # Slow deletes and events happen outside the lock, and also for
            # what was done before a conflict stopped the removal.
            self._finish_remove(removal)
        return removal

    def _remove_locked(self, name: str, force: bool, noprune: bool, removal: "_Removal") -> None:
        records, events = removal.records, removal.events
        image_id = self.resolve(name)
        labels = self._labels(image_id)
        tags, digests = self._references(image_id)
        repo_refs = tags + digests
        users = self._users(image_id)
        removed_repository_ref = False
        if not _is_id_prefix(image_id, name):
            if not force and _is_single_reference(repo_refs) and users:
                raise Conflict(
                    f"conflict: unable to remove repository reference \"{name}\" (must force)"
                    f" - container {users[0][0][:12]} is using its referenced image"
                    f" {_short(image_id)}")
            ref = parse_normalized(name).tag_name_only()
            if ref.digest is not None:
                ref = ref.trim().with_digest(ref.digest)
            self._remove_reference(ref, image_id)
            records.append({"Untagged": ref.familiar()})
            events.append((image_id, "untag", image_id, labels))
            tags, digests = self._references(image_id)
            if ref.digest is None and not any(t.name == ref.name for t in tags):
                # The last tag of a repository takes its digests with it.
                for d in [d for d in digests if d.name == ref.name]:
                    self._remove_reference(d, image_id)
                    records.append({"Untagged": d.familiar()})
                tags, digests = self._references(image_id)
            if tags or digests:
                return
            removed_repository_ref = True
        elif _is_single_reference(repo_refs):
            hard = self._delete_conflict(image_id, users, force, check_refs=False)
            if hard is not None:
                raise hard
            for ref in repo_refs:
                self._remove_reference(ref, image_id)
                records.append({"Untagged": ref.familiar()})
                events.append((image_id, "untag", image_id, labels))
        self._delete_helper(image_id, removal, force=force, prune=not noprune,
                            quiet=removed_repository_ref)

    def _finish_remove(self, removal: "_Removal") -> None:
        for path in removal.doomed:
            self.snapshots.purge(path)
        removal.doomed.clear()
        for image_id, action, name, labels in removal.events:
            self._event(image_id, action, name, labels)
        removal.events.clear()

    def _remove_reference(self, ref: Reference, image_id: str) -> None:
        with self.db.transaction() as conn:
            if ref.digest is not None:
                n = conn.execute("DELETE FROM repo_digests WHERE reference=? AND image_id=?",
                                 (f"{ref.name}@{ref.digest}", image_id)).rowcount
            else:
                n = conn.execute("DELETE FROM tags WHERE reference=? AND image_id=?",
                                 (str(ref), image_id)).rowcount
        if n == 0:
            raise NotFound(f"No such image: {ref.familiar()}")

    def _delete_conflict(self, image_id: str, users: list[tuple[str, bool]], force: bool,
                         check_refs: bool = True) -> Conflict | None:
        """Docker's conflicts: children and running containers are hard
        (never forced); references and stopped containers are soft."""
        def conflict(message: str, hard: bool) -> Conflict:
            how = "cannot be forced" if hard else "must be forced"
            err = Conflict(f"conflict: unable to delete {_short(image_id)} ({how}) - {message}")
            err.hard = hard  # type: ignore[attr-defined]
            err.used = "container" in message  # type: ignore[attr-defined]
            return err

        if self._children(image_id):
            return conflict("image has dependent child images", True)
        for cid, running in users:
            if running:
                return conflict(f"image is being used by running container {cid[:12]}", True)
        if force:
            return None
        if check_refs:
            tags, digests = self._references(image_id)
            if tags or digests:
                return conflict("image is referenced in multiple repositories", False)
        for cid, running in users:
            if not running:
                return conflict(f"image is being used by stopped container {cid[:12]}", False)
        return None

    def _delete_helper(self, image_id: str, removal: "_Removal", *, force: bool,
                       prune: bool, quiet: bool) -> None:
        records, events = removal.records, removal.events
        users = self._users(image_id)
        conflict = self._delete_conflict(image_id, users, force)
        if conflict is not None:
            if quiet and (not self._is_dangling(image_id) or getattr(conflict, "used", False)):
                return
            raise conflict
        row = self._image_row(image_id)
        parent = row["parent"] if row else None
        labels = self._labels(image_id)
        tags, digests = self._references(image_id)
        for ref in tags + digests:
            self._remove_reference(ref, image_id)
            records.append({"Untagged": ref.familiar()})
            events.append((image_id, "untag", image_id, labels))
        layers = self._layers(image_id)
        blobs = {image_id, *(r["blob_digest"] for r in layers)}
        if row is not None and row["manifest_digest"]:
            blobs.add(row["manifest_digest"])
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM images WHERE id=?", (image_id,))
        self._config_cache.pop(image_id, None)
        events.append((image_id, "delete", image_id, labels))
        records.append({"Deleted": image_id})
        freed, removed = self._sweep(blobs, [r["chain_id"] for r in reversed(layers)],
                                     doomed=removal.doomed)
        removal.freed += freed
        records.extend({"Deleted": chain} for chain in removed)
        if prune and parent and self._image_row(parent) is not None:
            self._delete_helper(parent, removal, force=False, prune=True, quiet=True)

    def _is_dangling(self, image_id: str) -> bool:
        tags, digests = self._references(image_id)
        return not tags and not digests and not self._children(image_id)

    # -- registration -------------------------------------------------------
    def register_image(self, config: bytes, layers: list[LayerBlob], *,
                       config_media_type: str = mt.OCI_CONFIG,
                       manifest: bytes | None = None, manifest_media_type: str | None = None,
                       parent: str | None = None, tags: Iterable[str] = (),
                       repo_digests: Iterable[str] = ()) -> str:
        """Register an image whose layer blobs are already in the content
        store (pull, build). The config (and manifest) bytes are stored here;
        snapshots are prepared as needed. Returns the image ID. Callers that
        ingested the blobs themselves should hold a :meth:`lease` on them
        from before their commit until this returns."""
        if config_media_type not in mt.CONFIGS:
            raise InvalidArgument(f"unsupported config media type {config_media_type!r}")
        config_digest = digest_bytes(config)
        parsed = parse_config(config, f"image config {config_digest}")
        if list(parsed.diff_ids) != [layer.diff_id for layer in layers]:
            raise InvalidArgument(
                f"image config {config_digest}: rootfs.diff_ids do not match the layers given")
        staged_layers = []
        for layer in layers:
            if layer.media_type not in mt.LAYERS:
                raise InvalidArgument(
                    f"unsupported media type {layer.media_type!r} for layer {layer.digest}")
            staged_layers.append(StagedLayer(
                StagedBlob(layer.digest, layer.size, layer.media_type,
                           path=self.content.path(layer.digest)),
                layer.diff_id, f"layer {layer.digest}"))
        staged_manifest = None
        if manifest is not None:
            m = parse_manifest(manifest, manifest_media_type)
            if m.config.digest != config_digest or [l.digest for l in m.layers] != [
                    l.digest for l in layers]:
                raise InvalidArgument("manifest does not match the config and layers given")
            staged_manifest = StagedBlob(digest_bytes(manifest), len(manifest), m.media_type,
                                         data=manifest)
        staged = StagedImage(
            StagedBlob(config_digest, len(config), config_media_type, data=config), parsed,
            staged_layers, staged_manifest,
            tags=[parse_normalized(t).tag_name_only() for t in tags],
            repo_digests=[parse_normalized(d) for d in repo_digests], parent=parent)
        for d in staged.repo_digests:
            if d.digest is None:
                raise InvalidArgument(f"{d.familiar()!r} is not a digest reference")
        with self.lease() as lease:
            for layer in layers:
                lease.add_blob(layer.digest)
                if not self.content.exists(layer.digest):
                    raise NotFound(f"content {layer.digest}: blob not found")
            result = self.install([staged], lease)[0]
        for ref in staged.tags:
            self._event(result.image_id, "tag", ref.familiar())
        return result.image_id

    def install(self, images: list[StagedImage], lease: Lease) -> list[InstallResult]:
        """Unpack, commit and register staged images, all or nothing: on
        failure no image or tag is registered, and the lease's cleanup
        removes what was written."""
        for image in images:
            for blob in image.blobs():
                lease.add_blob(blob.digest)
        jobs = []
        for image in images:
            parent = None
            for layer in image.layers:
                source = layer.blob.path or (layer.blob.writer.path if layer.blob.writer else None)
                if source is None:
                    raise InvalidArgument(f"{layer.name}: no data")
                job = LayerJob(source, layer.diff_id, parent, layer.name)
                jobs.append(job)
                parent = job.chain_id
        snaps = self.snapshots.prepare_many(jobs, on_commit=lease.add_snapshot)
        sizes = {s.chain_id: s.size for s in snaps}
        for image in images:
            for blob in image.blobs():
                self._commit_blob(blob)
        results = []
        when = now_ns()
        with self._mutex, self.db.transaction() as conn:
            for image in images:
                chains = chain_ids(layer.diff_id for layer in image.layers)
                exists = conn.execute("SELECT 1 FROM images WHERE id=?", (image.id,)).fetchone()
                if not exists:
                    parent = image.parent
                    if parent and not conn.execute("SELECT 1 FROM images WHERE id=?",
                                                   (parent,)).fetchone():
                        parent = None
                    conn.execute(
                        "INSERT INTO images(id, config_media_type, created_ns, size, parent,"
                        " manifest_digest, manifest_media_type, added_ns) VALUES (?,?,?,?,?,?,?,?)",
                        (image.id, image.config.media_type, image.parsed.created_ns,
                         sum(sizes[c] for c in chains), parent,
                         image.manifest.digest if image.manifest else None,
                         image.manifest.media_type if image.manifest else None, when))
                    conn.executemany(
                        "INSERT INTO image_layers(image_id, idx, diff_id, chain_id, blob_digest,"
                        " media_type, blob_size) VALUES (?,?,?,?,?,?,?)",
                        [(image.id, i, layer.diff_id, chain, layer.blob.digest,
                          layer.blob.media_type, layer.blob.size)
                         for i, (layer, chain) in enumerate(zip(image.layers, chains))])
                moved = []
                for ref in image.tags:
                    old = self._set_tag(conn, ref, image.id, when)
                    if old is not None:
                        moved.append((ref, old))
                for ref in image.repo_digests:
                    conn.execute(
                        "INSERT INTO repo_digests(reference, repository, image_id, created_ns)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT(reference) DO UPDATE SET"
                        " image_id=excluded.image_id",
                        (f"{ref.name}@{ref.digest}", ref.name, image.id, when))
                results.append(InstallResult(image.id, not exists, moved))
        return results

    def _commit_blob(self, blob: StagedBlob) -> None:
        if blob.writer is not None:
            if blob.writer.closed:
                return
            if self.content.exists(blob.digest):
                blob.writer.abort()
            else:
                blob.writer.commit(blob.digest, blob.size)
        elif blob.data is not None:
            if not self.content.exists(blob.digest):
                self.content.ingest(blob.data, blob.digest, blob.size)
        elif not self.content.exists(blob.digest):
            raise NotFound(f"content {blob.digest}: blob not found")

    # -- import ---------------------------------------------------------------
    def import_image(self, source: str | BinaryIO, reference: str | None = None,
                     changes: Iterable[str] = (), message: str = "",
                     platform: str | None = None, source_name: str = "-") -> str:
        """``docker import``: one layer from a rootfs tar (plain, gzip, zstd,
        bzip2 or xz) at a path or from a stream. Returns the image ID."""
        from berth.images.importer import copy_layer_source

        ref = None
        if reference:
            ref = parse_normalized(reference)
            if ref.digest is not None:
                raise InvalidArgument("cannot import digest reference")
            ref = ref.tag_name_only()
        plat = parse_platform(platform)
        container_config = apply_changes({}, list(changes or []))
        with self.lease() as lease, self.content.writer() as writer:
            compression = copy_layer_source(source, writer)
            digest = writer.digest()
            lease.add_blob(digest)
            snap = self.snapshots.prepare(writer.path, name=f"cannot import {source_name}",
                                          on_commit=lease.add_snapshot)
            created = format_rfc3339nano(now_ns())
            comment = message or f"Imported from {source_name}"
            config: dict[str, Any] = {}
            if message:
                config["comment"] = message
            config["created"] = created
            config["config"] = container_config
            config["architecture"] = plat["architecture"]
            if plat.get("variant"):
                config["variant"] = plat["variant"]
            config["os"] = plat["os"]
            config["rootfs"] = {"type": "layers", "diff_ids": [snap.diff_id]}
            config["history"] = [{"created": created, "comment": comment}]
            config_bytes = canonical_json(config)
            config_digest = digest_bytes(config_bytes)
            staged = StagedImage(
                StagedBlob(config_digest, len(config_bytes), mt.OCI_CONFIG, data=config_bytes),
                parse_config(config_bytes),
                [StagedLayer(StagedBlob(digest, writer.offset,
                                        mt.OCI_LAYER_BY_COMPRESSION[compression], writer=writer),
                             snap.diff_id, f"cannot import {source_name}")],
                tags=[ref] if ref else [])
            result = self.install([staged], lease)[0]
        if ref is not None:
            self._event(result.image_id, "tag", ref.familiar())
        self._event(result.image_id, "import", result.image_id)
        return result.image_id

    # -- load / save ----------------------------------------------------------
    def load(self, source: str | BinaryIO, platform: str | None = None) -> list[str]:
        """``docker load``: a docker-save or OCI-layout archive (plain or
        compressed). Returns Docker's messages. All or nothing."""
        from berth.images.archive import load_archive

        return load_archive(self, source, parse_platform(platform))

    def save(self, names: list[str], out: BinaryIO) -> None:
        """``docker save``: stream an archive with both manifest.json and an
        OCI layout (index.json, oci-layout, blobs/) to ``out``."""
        from berth.images.archive import save_archive

        save_archive(self, names, out)

    def manifest(self, image_id: str) -> tuple[bytes, str]:
        """The image's manifest (bytes, media type): the one it came with,
        or an OCI manifest built from its stored config and layer blobs."""
        row = self._image_row(image_id)
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        if row["manifest_digest"] and self.content.exists(row["manifest_digest"]):
            return self.content.read(row["manifest_digest"]), row["manifest_media_type"]
        config_size = self.content.info(image_id).size
        layers = [Descriptor(r["media_type"], r["blob_digest"], r["blob_size"])
                  for r in self._layers(image_id)]
        data = build_manifest(Descriptor(row["config_media_type"], image_id, config_size), layers)
        return data, mt.OCI_MANIFEST

    # -- prune / gc / df --------------------------------------------------------
    def prune(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``POST /images/prune``: dangling images (all unused ones with
        ``all``), filtered by until / label / label!."""
        filters = check_filters(filters, {"dangling", "until", "label", "label!"})
        dangling = filter_bool(filters, "dangling")
        dangling_only = not all if dangling is None else dangling
        until = None
        for value in filters.get("until", []):
            until = parse_until(value)
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        rows = self.db.query("SELECT id, created_ns, parent FROM images")
        parents = {r["parent"] for r in rows if r["parent"]}
        for row in rows:
            image_id = row["id"]
            if dangling_only and image_id in parents:
                continue
            tags, digests = self._references(image_id)
            if not tags and not digests and image_id in parents:
                continue  # an intermediate image, removed with its child
            if until is not None and (row["created_ns"] or 0) > until:
                continue
            if not match_labels(filters, self._labels(image_id)):
                continue
            if self._users(image_id):
                continue
            if tags and dangling_only:
                continue
            try:
                for name in [str(ref) for ref in tags + digests] or [image_id]:
                    removal = self._remove(name, force=False, noprune=False)
                    deleted.extend(removal.records)
                    reclaimed += removal.freed
            except (Conflict, NotFound):
                continue  # in use, or already gone with another image
        # Crash leftovers and content no image holds go too.
        reclaimed += self.gc()
        self.events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def gc(self, ingest_max_age: float = 3600) -> int:
        """Mark and sweep: remove blobs and snapshots no image (nor root,
        nor lease) references, crash leftovers under snapshots/, and files
        in tmp/ and ingests untouched for ``ingest_max_age`` seconds.
        Returns the bytes reclaimed."""
        roots = self._roots()
        blobs = [b.digest for b in self.content.walk()]
        chains = self._top_first(s.chain_id for s in self.snapshots.list())
        freed, _ = self._sweep(blobs, chains, roots=roots)
        stray, missing = self.snapshots.orphans()
        for chain in missing:
            # A row whose directory vanished: drop it unless an image needs it
            # (then prepare() unpacks it again on next use).
            self._sweep((), [chain], roots=roots)
        for path in stray:
            freed += _tree_size(path)
            self.snapshots.remove_stray(path)
        # tmp/ is shared (the API spools request bodies there): only what has
        # not been touched for the expiry is a leftover.
        cutoff = time.time() - ingest_max_age
        with os.scandir(self.tmp_dir) as it:
            for entry in it:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                freed += _tree_size(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        freed += self.content.remove_stale_ingests(ingest_max_age)
        return freed

    def df(self) -> dict[str, Any]:
        """The images part of ``GET /system/df``."""
        sizes = self.snapshots.sizes()
        usage: collections.Counter[str] = collections.Counter()
        per_image: dict[str, list[str]] = collections.defaultdict(list)
        for r in self.db.query("SELECT DISTINCT image_id, chain_id FROM image_layers"):
            usage[r["chain_id"]] += 1
            per_image[r["image_id"]].append(r["chain_id"])
        images = []
        for summary in self.list(all=True):
            shared = sum(sizes.get(c, 0) for c in per_image[summary["Id"]] if usage[c] > 1)
            summary["SharedSize"] = shared
            summary["UniqueSize"] = summary["Size"] - shared
            summary["Containers"] = len(self._users(summary["Id"]))
            images.append(summary)
        return {"LayersSize": sum(sizes.values()), "Images": images}

    # -- sweeping ---------------------------------------------------------------
    def _roots(self) -> set[str]:
        roots: set[str] = set()
        for fn in self._gc_roots:
            roots.update(fn())
        return roots

    def _top_first(self, chains: Iterable[str]) -> list[str]:
        """Order snapshots so that a layer comes before its parent."""
        rows = {r["chain_id"]: r["parent"] for r in self.db.query("SELECT chain_id, parent FROM snapshots")}
        chains = set(chains)

        def depth(c: str) -> int:
            d, seen = 0, set()
            while c in rows and rows[c] and c not in seen:
                seen.add(c)
                c = rows[c]
                d += 1
            return d

        return sorted(chains, key=depth, reverse=True)

    def _blob_in_use(self, digest: str, roots: set[str]) -> bool:
        if self._leased_blobs.get(digest) or digest in roots:
            return True
        return self.db.query_one(
            "SELECT 1 FROM images WHERE id=?1 OR manifest_digest=?1"
            " UNION ALL SELECT 1 FROM image_layers WHERE blob_digest=?1 LIMIT 1",
            (digest,)) is not None

    def _snapshot_in_use(self, chain: str, roots: set[str]) -> bool:
        with self._lease_lock:
            if self._leased_snapshots.get(chain) or chain in roots:
                return True
            return self.db.query_one("SELECT 1 FROM image_layers WHERE chain_id=? LIMIT 1",
                                     (chain,)) is not None

    def _sweep(self, blobs: Iterable[str], chains: Iterable[str], roots: set[str] | None = None,
               doomed: list[str] | None = None) -> tuple[int, list[str]]:
        """Delete the given blobs and snapshots that nothing uses (checked at
        the moment of deletion). Snapshot directories go to ``doomed`` for the
        caller to purge later, or are purged here. Returns (bytes freed,
        chain IDs removed)."""
        if roots is None:
            roots = self._roots()
        freed = 0
        removed = []
        for chain in chains:
            detached = self.snapshots.detach(chain, unless=lambda c: self._snapshot_in_use(c, roots))
            if detached is None:
                continue
            removed.append(chain)
            freed += detached[1]
            if doomed is not None:
                doomed.append(detached[0])
            else:
                self.snapshots.purge(detached[0])
        for digest in blobs:
            with self._lease_lock:
                if self._blob_in_use(digest, roots):
                    continue
                freed += self.content.delete(digest)
        return freed, removed

    # -- events -----------------------------------------------------------------
    def _event(self, image_id: str, action: str, name: str,
               labels: dict[str, str] | None = None) -> None:
        attributes = dict(labels if labels is not None else self._labels(image_id))
        if name:
            attributes["name"] = name
        self.events.publish("image", action, image_id, attributes)


def parse_config_time(value: Any) -> int | None:
    return parse_rfc3339(value) if isinstance(value, str) else None


@dataclass
class _Removal:
    records: list[dict[str, str]] = field(default_factory=list)
    events: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    freed: int = 0


def _short(image_id: str) -> str:
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def _is_id_prefix(image_id: str, candidate: str) -> bool:
    return image_id.startswith(candidate) or image_id.partition(":")[2].startswith(candidate)


def _is_single_reference(refs: list[Reference]) -> bool:
    """One tag (plus any digests of the same repository), as Docker decides
    whether deleting by ID may drop the references too."""
    if len(refs) <= 1:
        return len(refs) == 1
    single = None
    names = set()
    for ref in refs:
        if ref.digest is not None:
            names.add(ref.name)
        elif single is None:
            names.add(ref.name)
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(names) == 1 and single.name in names


def _tree_size(path: str) -> int:
    total = 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
