"""ContainerService: the containers of one daemon and their lifecycle.

Records live in the metadata database (component ``containers``) and in
memory; processes live under their monitors (``berth.runtime``), so they
outlive the daemon. Lifecycle operations are coroutines on the daemon's event
loop (state changes happen there, in order); blocking work (cgroups, spawning
a monitor, removing directories) runs in worker threads, and records are
written by one dedicated thread so that they reach the database in the order
they were changed.

Exits are learnt from each monitor's ``wait`` (no polling); at start-up,
:meth:`start_background` reconciles the records with the monitors' files:
running containers are adopted, exits that happened while the daemon was down
are recorded, restart policies applied, half-created containers removed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import secrets
import shutil
import signal as _signal
import sqlite3
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

from berth import runtime
from berth.cgroups import CgroupManager, parent_name
from berth.config import Config
from berth.errors import (BerthError, Conflict, InvalidArgument, NotFound, NotModified,
                          SystemError_)
from berth.events import EventBus
from berth.fsflags import mark_top_of_hierarchies
from berth.images.timefmt import format_rfc3339nano, parse_rfc3339
from berth.metadata import Database

from . import config as cfg
from . import etcfiles, names
from . import spec as spec_mod
from .execs import ExecProcess
from .model import (CREATED, DEAD, EXITED, MIGRATIONS, PAUSED, REMOVING, RESTARTING, RUNNING,
                    Container, State)

log = logging.getLogger("berth.containers")

#: Docker's restart back-off: 100 ms, doubled each time, at most a minute; a
#: container that ran this long since its last start begins again at 100 ms.
BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: Exit code recorded when a container's monitor died without recording one.
EXIT_UNKNOWN = 255

LIST_FILTERS = frozenset({"id", "name", "label", "label!", "status", "ancestor", "exited",
                          "before", "since", "network", "volume", "health", "isolation",
                          "is-task", "publish", "expose"})


def _new_id(taken: Callable[[str], bool]) -> str:
    while True:
        value = secrets.token_hex(32)
        # Docker never hands out an ID whose short form reads as a number.
        if value[:12].isdigit() or taken(value):
            continue
        return value


def _now_ns() -> int:
    return time.time_ns()


class PendingAttach:
    """An attach to a container that is not running yet (``docker run`` attaches
    before it starts): start() arms it once the monitor exists, and waits until
    the client is attached before letting the process exec, so no output is lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.armed: asyncio.Future = loop.create_future()
        self.attached: asyncio.Future = loop.create_future()

    def cancel(self, exc: BaseException | None = None) -> None:
        if not self.armed.done():
            if exc is None:
                self.armed.cancel()
            else:
                self.armed.set_exception(exc)
        if not self.attached.done():
            self.attached.set_result(None)


class _Mounts:
    """Host mounts of stopped containers' rootfs, for the filesystem endpoints."""

    _libc = None

    @classmethod
    def libc(cls):
        if cls._libc is None:
            cls._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return cls._libc

    @classmethod
    def mount_overlay(cls, c: Container) -> None:
        os.makedirs(c.rootfs, exist_ok=True)
        data = f"lowerdir={':'.join(c.lowerdirs)},upperdir={c.upperdir},workdir={c.workdir}"
        if len(data) >= 4096:
            raise SystemError_(f"cannot mount the rootfs of container {c.id[:12]}: its image has "
                               "too many layers for one mount option string")
        if cls.libc().mount(b"overlay", os.fsencode(c.rootfs), b"overlay", 0,
                            data.encode()) != 0:
            err = ctypes.get_errno()
            raise SystemError_(f"cannot mount the rootfs of container {c.id[:12]}: "
                               f"{os.strerror(err)}")

    @classmethod
    def unmount(cls, path: str) -> None:
        # MNT_DETACH: a reader still inside must not keep the container alive.
        if cls.libc().umount2(os.fsencode(path), 2) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                raise SystemError_(f"cannot unmount {path}: {os.strerror(err)}")


class ContainerService:
    def __init__(self, config: Config, events: EventBus, images, db: Database,
                 volumes: Callable[[], Any] = lambda: None, networks=None):
        self.config = config
        self.events = events
        self.images = images
        self.db = db
        self._volumes = volumes
        if networks is None:
            # Containers cannot run without networks: made here unless the Engine
            # gives its own (berth.networks.NetworkService; lookups go through get).
            from berth.networks import NetworkService
            networks = NetworkService(config, events, db, containers=self.get)
        self.networks = networks
        self.db.migrate("containers", MIGRATIONS)
        self.root = config.path("containers")
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        # Each container's files are made and deleted on every run: away from
        # the last container's freed inodes, they cost ext4 far less (fsflags).
        mark_top_of_hierarchies(self.root)
        #: Removed containers' directories wait here for deletion (same filesystem).
        self.trash_dir = config.path("tmp", "removed-containers")
        shutil.rmtree(self.trash_dir, ignore_errors=True)
        os.makedirs(self.trash_dir, mode=0o700, exist_ok=True)
        self.cgroups = CgroupManager(parent_name(config.root))
        self._lock = threading.RLock()   # the in-memory maps (image hooks read them from threads)
        self._containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}
        self._incomplete: list[tuple[str, str]] = []
        self.execs: dict[str, ExecProcess] = {}
        self._saver = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="berth-ctr-db")
        self._trasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="berth-ctr-rm")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._op_locks: dict[str, asyncio.Lock] = {}
        self._next_exit: dict[str, asyncio.Future] = {}
        self._removed: dict[str, asyncio.Future] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._restart_timers: dict[str, asyncio.TimerHandle] = {}
        self._backoff: dict[str, float] = {}
        self._pending_attaches: dict[str, list[PendingAttach]] = {}
        self._rootfs_mounts: dict[str, int] = {}
        self._rootfs_lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._load()
        images.set_image_users(self._image_users)
        images.add_gc_root(self._gc_roots)

    # ------------------------------------------------------------------ records
    def _load(self) -> None:
        for row in self.db.query("SELECT * FROM containers"):
            if not row["complete"]:
                self._incomplete.append((row["id"], row["name"]))
                continue
            try:
                c = Container.from_row(row)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("container %s: unreadable record (%s); ignored", row["id"], exc)
                continue
            self._containers[c.id] = c
            self._names[c.name] = c.id

    def _save(self, c: Container) -> concurrent.futures.Future:
        """Write the record as it is now; writes land in call order."""
        record, name = c.to_record(), c.name

        def write() -> None:
            self.db.execute("UPDATE containers SET record=?, name=? WHERE id=?",
                            (record, name, c.id))
        return self._saver.submit(write)

    async def _persist(self, c: Container) -> None:
        await asyncio.wrap_future(self._save(c))

    def _save_soon(self, c: Container) -> None:
        """_save without waiting (the run path): memory is what the API answers
        from, writes still land in order, and a crash before one lands is what
        reconcile at start-up repairs. A failure is logged."""
        self._save(c).add_done_callback(_log_save_failure)

    def _image_users(self, image_id: str):
        return [(c.id, c.running) for c in list(self._containers.values())
                if c.image_id == image_id]

    def _gc_roots(self):
        roots: set[str] = set()
        for c in list(self._containers.values()):
            roots.update(c.layers)
        return roots

    # ------------------------------------------------------------------ lookups
    def get(self, name_or_id: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix."""
        if not name_or_id:
            raise InvalidArgument("container name or ID cannot be empty")
        with self._lock:
            c = self._containers.get(name_or_id)
            if c is not None:
                return c
            cid = self._names.get(name_or_id.lstrip("/"))
            if cid is not None:
                return self._containers[cid]
            matches = [c for cid, c in self._containers.items() if cid.startswith(name_or_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {name_or_id}")
        raise NotFound(f"No such container: {name_or_id}")

    def all(self) -> list[Container]:
        return list(self._containers.values())

    def counts(self) -> dict[str, int]:
        running = paused = stopped = 0
        for c in list(self._containers.values()):
            if c.status == PAUSED:
                paused += 1
            elif c.status in (RUNNING, RESTARTING):
                running += 1
            else:
                stopped += 1
        return {"Containers": running + paused + stopped, "ContainersRunning": running,
                "ContainersPaused": paused, "ContainersStopped": stopped}

    # ------------------------------------------------------------------ events
    def _event(self, c: Container, action: str, **attrs: str) -> None:
        self.events.publish("container", action, c.id, c.event_attributes(**attrs))

    # ------------------------------------------------------------------ create
    async def create(self, name: str | None, body: Any) -> tuple[str, list[str]]:
        """``POST /containers/create``: returns (ID, warnings). A bad request is
        refused before anything exists; a failure midway removes what was made."""
        config, host_config, networking = cfg.split_body(body)
        cfg.check_config(config)
        volumes = self._volumes()
        cfg.check_host_config(host_config, volumes is not None)
        self.networks.check(config, host_config, networking)
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise InvalidArgument("No image was specified for the container (config.Image)")
        if name:
            name = names.normalize(name)
        image_id, image_cfg, layers, lowerdirs = await asyncio.to_thread(self._image_parts, image_ref)
        merged = cfg.merge_image_config(config, image_cfg.container_config)
        path, args = cfg.command_of(merged)
        if host_config.get("NetworkMode", "").startswith("container:"):
            other = self.get(host_config["NetworkMode"].split(":", 1)[1])
            host_config["NetworkMode"] = f"container:{other.id}"
        with self._lock:
            cid = _new_id(lambda v: v in self._containers)
            if not name:
                name = names.generate(lambda n: n in self._names)
            if not merged.get("Hostname"):
                merged["Hostname"] = (os.uname().nodename if host_config["NetworkMode"] == "host"
                                      else cid[:12])
            c = Container(id=cid, name=name, image_id=image_id, created_ns=_now_ns(),
                          config=merged, host_config=host_config, path=path, args=args,
                          bundle=os.path.join(self.root, cid), layers=layers,
                          lowerdirs=lowerdirs, networking_config=networking)
            self._reserve(c)
        try:
            # Endpoints (the network's workers) and files (ours) side by side.
            for outcome in await asyncio.gather(
                    self.networks.register(c),
                    asyncio.to_thread(self._create_files, c, image_cfg.container_config, volumes),
                    return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            await self._network_forget(c.id)
            await asyncio.to_thread(self._discard_half_created, c.id, c.name, volumes)
            with self._lock:
                self._names.pop(c.name, None)
            raise
        with self._lock:
            self._containers[c.id] = c
        self._event(c, "create")
        return c.id, []

    def _reserve(self, c: Container) -> None:
        """Claim the name and ID in the database (the unique index decides)."""
        existing = self._names.get(c.name)
        if existing is None:
            try:
                self.db.execute(
                    "INSERT INTO containers(id, name, image_id, created_ns, complete, record)"
                    " VALUES (?, ?, ?, ?, 0, ?)",
                    (c.id, c.name, c.image_id, c.created_ns, c.to_record()))
                self._names[c.name] = c.id
                return
            except sqlite3.IntegrityError:
                row = self.db.query_one("SELECT id FROM containers WHERE name=?", (c.name,))
                existing = row["id"] if row else "?"
        raise Conflict(f'Conflict. The container name "/{c.name}" is already in use by container '
                       f'"{existing}". You have to remove (or rename) that container to be able '
                       "to reuse that name.")

    def _image_parts(self, image_ref: str):
        """Worker: (ID, config, layer chain IDs, lowerdirs) of the image to run."""
        image_id = self.images.resolve(image_ref)
        chains = self.images.layer_chain_ids(image_id)
        return (image_id, self.images.image_config(image_id), chains,
                self.images.snapshots.lowerdirs(chains))

    def _create_files(self, c: Container, image_config: dict, volumes) -> None:
        """Worker: the bundle, volumes and /etc files; then the record is complete."""
        os.makedirs(c.bundle, mode=0o710)
        for d in (c.upperdir, c.workdir, c.rootfs):
            os.mkdir(d, 0o755)
        if not c.lowerdirs:
            # An image without layers: overlayfs still wants a lower layer.
            empty = os.path.join(c.bundle, "empty-layer")
            os.mkdir(empty, 0o755)
            c.lowerdirs = [empty]
        etcfiles.write_all(c.bundle, c.config, c.host_config)
        if volumes is not None:
            # c.config, not the image's: `-v /path` arrives as Config.Volumes.
            c.spec_mounts = list(volumes.prepare_mounts(c.id, c.host_config, c.config,
                                                        c.lowerdirs) or [])
            mount_points = getattr(volumes, "mount_points", None)
            if mount_points is not None and c.spec_mounts:
                c.mounts = list(mount_points(c.id) or [])
        self.db.execute("UPDATE containers SET complete=1, record=? WHERE id=?",
                        (c.to_record(), c.id))

    def _discard_half_created(self, cid: str, name: str, volumes) -> None:
        if volumes is not None:
            try:
                volumes.release(cid, True)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                log.warning("container %s: releasing volumes failed: %s", cid[:12], exc)
        bundle = os.path.join(self.root, cid)
        _Mounts.unmount(os.path.join(bundle, "rootfs"))
        shutil.rmtree(bundle, ignore_errors=True)
        try:
            self.cgroups.remove(cid)
        except BerthError as exc:
            log.warning("container %s: %s", cid[:12], exc.message)
        self.db.execute("DELETE FROM containers WHERE id=?", (cid,))

    # ------------------------------------------------------------------ start
    def _op_lock(self, cid: str) -> asyncio.Lock:
        lock = self._op_locks.get(cid)
        if lock is None:
            lock = self._op_locks[cid] = asyncio.Lock()
        return lock

    async def start(self, name_or_id: str) -> None:
        c = self.get(name_or_id)
        async with self._op_lock(c.id):
            if c.status == PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.status == RUNNING:
                raise NotModified(f"container {c.id} is already running")
            if c.status in (REMOVING, DEAD):
                raise Conflict(f"cannot start container {c.id}: it is being removed")
            self._cancel_restart(c)
            c.state.manually_stopped = False
            await self._start_locked(c)

    def _netns_of(self, name_or_id: str) -> str:
        other = self.get(name_or_id)
        if not other.running:
            raise Conflict(f"cannot join the network namespace of container {other.id}: "
                           "it is not running")
        return f"/proc/{other.state.pid}/ns/net"

    async def _start_locked(self, c: Container) -> None:
        resources = cfg.resources_of(c.host_config)
        # The network side (its own workers) and the cgroups are made side by side;
        # the launch waits for the namespace only when it writes the spec.
        netns = asyncio.run_coroutine_threadsafe(self.networks.prepare(c),
                                                 asyncio.get_running_loop())
        prepared = asyncio.wrap_future(netns)
        try:
            outcome = await asyncio.gather(
                prepared, asyncio.to_thread(self._launch, c, resources, netns),
                return_exceptions=True)
            for result in outcome:
                if isinstance(result, BaseException):
                    raise result
        except BaseException as exc:
            await self._network_release(c.id)
            await asyncio.to_thread(self._remove_cgroup_quietly, c.id)
            if isinstance(exc, BerthError):
                c.state.error = exc.message
                await self._persist(c)
            if c.host_config.get("AutoRemove"):
                # `docker run --rm` waits for the removal after a failed start (dockerd
                # removes such a container), e.g. when its host port is taken.
                self.spawn_task(self._auto_remove(c))
            raise
        # The process exists, stopped before exec: clients waiting to attach go first.
        await self._arm_attaches(c)
        c.state.started_ns = _now_ns()
        try:
            pid = await runtime.start_async(c.bundle)
        except runtime.StartError as exc:
            await self._start_failed(c, exc)
            raise
        except BaseException:
            # The monitor is unreachable or failed: the process must not linger.
            with contextlib.suppress(BerthError):
                runtime.kill(c.bundle, _signal.SIGKILL)
            await self._handle_exit(c, await self._wait_monitor(c))
            raise
        c.state = State(status=RUNNING, pid=pid, started_ns=c.state.started_ns,
                        finished_ns=c.state.finished_ns, has_been_started=True,
                        manually_stopped=False)
        self._save_soon(c)
        self._event(c, "start")
        self._watch(c)
        self._volumes_hook("container_started", c)

    def _launch(self, c: Container, resources, netns: concurrent.futures.Future) -> None:
        """Worker: fresh cgroups, the spec (once the network namespace is known), and
        the monitor that creates the process (stopped before exec). One thread hop:
        each costs the run path time."""
        self._remove_cgroup_quietly(c.id)
        paths = self.cgroups.create(c.id, resources)
        spec = spec_mod.build(c, paths, self._netns_of)
        spec["namespaces"]["net"] = netns.result()
        runtime.write_spec(c.bundle, spec)
        runtime.spawn_monitor(c.bundle)

    def _volumes_hook(self, name: str, c: Container) -> None:
        """Tell the volumes service (its mount/unmount events)."""
        if not any(m.get("Type") == "volume" for m in c.mounts):
            return  # no volume to tell about: spare the run path a query
        hook = getattr(self._volumes(), name, None)
        if hook is not None:
            try:
                hook(c.id)
            except BerthError as exc:
                log.warning("container %s: volumes: %s", c.id[:12], exc.message)

    async def _start_failed(self, c: Container, exc: runtime.StartError) -> None:
        """The command could not run (Docker's 126/127): record it like an exit."""
        record = await self._wait_monitor(c)
        c.state.status = EXITED
        c.state.pid = 0
        c.state.exit_code = exc.exit_code
        c.state.error = exc.message
        c.state.finished_ns = _finished_ns(record)
        await self._network_release(c.id)
        await asyncio.to_thread(self._remove_cgroup_quietly, c.id)
        await self._persist(c)
        self._resolve(self._next_exit, c.id, c)
        if c.host_config.get("AutoRemove"):
            self.spawn_task(self._auto_remove(c))

    async def _network_release(self, cid: str) -> None:
        """Addresses, ports and namespace of a container that stopped (or failed to start)."""
        try:
            await self.networks.release(cid)
        except BerthError as exc:
            log.warning("container %s: releasing its network: %s", cid[:12], exc.message)

    async def _network_forget(self, cid: str) -> None:
        try:
            await self.networks.forget(cid)
        except BerthError as exc:
            log.warning("container %s: removing its network endpoints: %s", cid[:12], exc.message)

    def spawn_task(self, coro) -> asyncio.Task:
        """A background task (held until done: the loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _wait_monitor(self, c: Container) -> dict | None:
        try:
            return await asyncio.wait_for(runtime.wait_exit(c.bundle), 30)
        except (BerthError, asyncio.TimeoutError) as exc:
            log.warning("container %s: no exit record from its monitor: %s", c.id[:12], exc)
            return None

    async def _arm_attaches(self, c: Container) -> None:
        pending = self._pending_attaches.pop(c.id, [])
        for p in pending:
            if not p.armed.done():
                p.armed.set_result(c.bundle)
        if pending:
            await asyncio.wait([p.attached for p in pending], timeout=10)

    def pending_attach(self, c: Container) -> PendingAttach:
        p = PendingAttach(asyncio.get_running_loop())
        self._pending_attaches.setdefault(c.id, []).append(p)
        return p

    def drop_pending_attach(self, c: Container, p: PendingAttach) -> None:
        lst = self._pending_attaches.get(c.id)
        if lst and p in lst:
            lst.remove(p)

    # ------------------------------------------------------------------ exits
    def _watch(self, c: Container) -> None:
        old = self._watchers.get(c.id)
        if old is not None and not old.done():
            return
        self._watchers[c.id] = asyncio.get_running_loop().create_task(
            self._watch_exit(c), name=f"watch-{c.id[:12]}")

    async def _watch_exit(self, c: Container) -> None:
        try:
            try:
                record = await runtime.wait_exit(c.bundle)
            except BerthError as exc:
                log.error("container %s: %s", c.id[:12], exc.message)
                record = None
            await self._handle_exit(c, record)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a watcher must not die silently
            log.exception("container %s: handling its exit failed", c.id[:12])
        finally:
            if self._watchers.get(c.id) is asyncio.current_task():
                del self._watchers[c.id]

    async def _handle_exit(self, c: Container, record: dict | None) -> None:
        if c.id not in self._containers:
            return
        was_paused = c.status == PAUSED
        # A --rm container is removed next: its endpoints are dropped at once (not
        # saved as released, then deleted), its cgroups go with the rest of it, and
        # its exited record is not written (a crash before the removal finds the
        # exit again in the monitor's record).
        auto_remove = bool(c.host_config.get("AutoRemove"))
        network = self._network_forget(c.id) if auto_remove else self._network_release(c.id)
        oom, _ = await asyncio.gather(
            asyncio.to_thread(self._release_cgroups, c.id, was_paused,
                              bool(record and record.get("oomKilled")), not auto_remove),
            network)
        if record is None:
            code, error = EXIT_UNKNOWN, "the container's monitor died without recording its exit"
        else:
            code, error = int(record.get("exitCode", EXIT_UNKNOWN)), record.get("error") or ""
        c.state.status = EXITED
        c.state.pid = 0
        c.state.exit_code = code
        c.state.error = error
        c.state.oom_killed = oom
        c.state.finished_ns = _finished_ns(record)
        if not auto_remove:
            self._save_soon(c)
        if oom:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(code))
        self._volumes_hook("container_stopped", c)
        self._resolve(self._next_exit, c.id, c)
        if auto_remove:
            # Not awaited: the caller may hold the container's operation lock.
            self.spawn_task(self._auto_remove(c))
        elif self._should_restart(c):
            self._schedule_restart(c)

    def _release_cgroups(self, cid: str, was_paused: bool, oom: bool, remove: bool = True) -> bool:
        """Worker, after an exit: whether the OOM killer struck (the monitor's
        record or the cgroup says so), then the cgroups go (unless the removal
        of the container that follows takes them)."""
        if not oom:
            oom = self.cgroups.oom_killed(cid)
        if was_paused:
            self._thaw_quietly(cid)
        if remove:
            self._remove_cgroup_quietly(cid)
        return oom

    def _thaw_quietly(self, cid: str) -> None:
        with contextlib.suppress(BerthError, OSError):
            self.cgroups.freeze(cid, False)

    def _remove_cgroup_quietly(self, cid: str) -> None:
        try:
            self.cgroups.remove(cid)
        except BerthError as exc:
            log.warning("container %s: %s", cid[:12], exc.message)

    def _resolve(self, futures: dict[str, asyncio.Future], cid: str, c: Container) -> None:
        fut = futures.pop(cid, None)
        if fut is not None and not fut.done():
            fut.set_result((c.state.exit_code, c.state.error))

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.remove(c.id, force=True, volumes=True)
        except NotFound:
            pass
        except BerthError as exc:
            log.error("container %s: auto-remove failed: %s", c.id[:12], exc.message)

    # ------------------------------------------------------------------ restart policies
    def _should_restart(self, c: Container) -> bool:
        policy, retries = c.restart_policy
        if c.state.manually_stopped or policy == "no":
            return False
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure":
            return c.state.exit_code != 0 and (retries == 0 or c.restart_count < retries)
        return False

    def _schedule_restart(self, c: Container) -> None:
        ran = (c.state.finished_ns or 0) - (c.state.started_ns or 0)
        delay = self._backoff.get(c.id, 0.0)
        delay = BACKOFF_START if not delay or ran >= BACKOFF_RESET_AFTER * 1e9 \
            else min(delay * 2, BACKOFF_MAX)
        self._backoff[c.id] = delay
        c.state.status = RESTARTING
        self._save(c)
        loop = asyncio.get_running_loop()
        self._restart_timers[c.id] = loop.call_later(
            delay, lambda: self.spawn_task(self._restart_by_policy(c)))

    def _cancel_restart(self, c: Container) -> None:
        timer = self._restart_timers.pop(c.id, None)
        if timer is not None:
            timer.cancel()
        if c.status == RESTARTING:
            c.state.status = EXITED

    async def _restart_by_policy(self, c: Container) -> None:
        self._restart_timers.pop(c.id, None)
        async with self._op_lock(c.id):
            if c.status != RESTARTING or c.id not in self._containers:
                return
            if c.state.manually_stopped:
                c.state.status = EXITED
                await self._persist(c)
                return
            c.restart_count += 1
            try:
                await self._start_locked(c)
            except BerthError as exc:
                log.error("container %s: restart failed: %s", c.id[:12], exc.message)
                if c.status == RESTARTING:
                    c.state.status = EXITED
                    await self._persist(c)
                return
        self._event(c, "restart")

    # ------------------------------------------------------------------ stop / kill
    def exit_future(self, c: Container) -> asyncio.Future:
        fut = self._next_exit.get(c.id)
        if fut is None or fut.done():
            fut = self._next_exit[c.id] = asyncio.get_running_loop().create_future()
        return fut

    async def _signal(self, c: Container, sig: int) -> None:
        try:
            await asyncio.to_thread(runtime.kill, c.bundle, sig)
        except Conflict:
            return  # it exited meanwhile
        self._event(c, "kill", signal=str(sig))
        if c.status == PAUSED:
            # A frozen process cannot act on a signal (not even die of SIGKILL).
            await asyncio.to_thread(self._thaw_quietly, c.id)
            c.state.status = RUNNING

    async def kill(self, name_or_id: str, sig: int | str = "SIGKILL") -> None:
        number = runtime.signal_number(sig)
        c = self.get(name_or_id)
        if not c.running:
            raise Conflict(f"Cannot kill container: {name_or_id}: Container {c.id} is not running")
        stop_signal = runtime.signal_number(c.config.get("StopSignal") or "SIGTERM")
        if number in (_signal.SIGKILL, stop_signal):
            c.state.manually_stopped = True
        exited = self.exit_future(c)
        await self._signal(c, number)
        if number == _signal.SIGKILL:
            # Like Docker: kill -9 returns once the container is gone.
            await asyncio.shield(exited)

    async def stop(self, name_or_id: str, timeout: int | None = None,
                   sig: str | None = None) -> None:
        c = self.get(name_or_id)
        if c.status == RESTARTING:
            c.state.manually_stopped = True
            # A restart already under way finishes first; then it is stopped below.
            async with self._op_lock(c.id):
                if c.status == RESTARTING:
                    self._cancel_restart(c)
                    await self._persist(c)
                    self._event(c, "stop")
                    return
        if not c.running:
            raise NotModified(f"container {c.id} is already stopped")
        await self._stop_running(c, timeout, sig)
        self._event(c, "stop")

    async def _stop_running(self, c: Container, timeout: int | None, sig: str | None = None) -> None:
        c.state.manually_stopped = True
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = cfg.DEFAULT_STOP_TIMEOUT
        number = runtime.signal_number(sig or c.config.get("StopSignal") or "SIGTERM")
        exited = self.exit_future(c)
        await self._signal(c, number)
        if timeout < 0:
            await asyncio.shield(exited)
            return
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
            return
        except asyncio.TimeoutError:
            pass
        await self._signal(c, _signal.SIGKILL)
        await asyncio.shield(exited)

    async def restart(self, name_or_id: str, timeout: int | None = None) -> None:
        c = self.get(name_or_id)
        if c.running:
            await self._stop_running(c, timeout)
        async with self._op_lock(c.id):
            self._cancel_restart(c)
            if not c.running:
                c.state.manually_stopped = False
                await self._start_locked(c)
        self._event(c, "restart")

    # ------------------------------------------------------------------ pause
    async def pause(self, name_or_id: str) -> None:
        c = self.get(name_or_id)
        async with self._op_lock(c.id):
            if c.status == PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.status != RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            await asyncio.to_thread(self.cgroups.freeze, c.id, True)
            c.state.status = PAUSED
            await self._persist(c)
        self._event(c, "pause")

    async def unpause(self, name_or_id: str) -> None:
        c = self.get(name_or_id)
        async with self._op_lock(c.id):
            if c.status != PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await asyncio.to_thread(self.cgroups.freeze, c.id, False)
            c.state.status = RUNNING
            await self._persist(c)
        self._event(c, "unpause")

    # ------------------------------------------------------------------ remove
    async def remove(self, name_or_id: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(name_or_id)
        if c.status == REMOVING:
            raise Conflict(f"removal of container {c.id} is already in progress")
        if c.running:
            if not force:
                if c.status == PAUSED:
                    raise Conflict(f"You cannot remove a paused container {c.id}. Unpause and "
                                   "then stop the container before attempting removal or force "
                                   "remove")
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            c.state.manually_stopped = True
            exited = self.exit_future(c)
            await self._signal(c, _signal.SIGKILL)
            await asyncio.shield(exited)
            if c.id not in self._containers:
                return  # --rm took it meanwhile
        async with self._op_lock(c.id):
            if c.id not in self._containers or c.status == REMOVING:
                return
            self._cancel_restart(c)
            c.state.status = REMOVING
            self._save_soon(c)  # lands before the DELETE or is moot
            await asyncio.gather(asyncio.to_thread(self._destroy, c, volumes),
                                 self._network_forget(c.id))
            self._forget(c)
        self._event(c, "destroy")

    def _destroy(self, c: Container, remove_volumes: bool) -> None:
        with self._rootfs_lock:
            if self._rootfs_mounts.pop(c.id, 0):
                _Mounts.unmount(c.rootfs)
        _Mounts.unmount(c.rootfs)
        self.cgroups.remove(c.id)
        volumes = self._volumes()
        if volumes is not None:
            volumes.release(c.id, remove_volumes)
        # Out of the way at once (a rename), deleted in the background: unlinking a
        # container's files costs more than the rest of its removal.
        trash = os.path.join(self.trash_dir, c.id)
        try:
            os.rename(c.bundle, trash)
        except FileNotFoundError:
            trash = None
        except OSError as exc:
            raise SystemError_(f"cannot remove the directory of container {c.id}: "
                               f"{exc.strerror}") from None
        self.db.execute("DELETE FROM containers WHERE id=?", (c.id,))
        if trash is not None:
            self._trasher.submit(shutil.rmtree, trash, True)

    def _forget(self, c: Container) -> None:
        with self._lock:
            self._containers.pop(c.id, None)
            if self._names.get(c.name) == c.id:
                del self._names[c.name]
        for eid in [e.id for e in self.execs.values() if e.container_id == c.id]:
            self.execs.pop(eid, None)
        for p in self._pending_attaches.pop(c.id, []):
            p.cancel(NotFound(f"No such container: {c.id}"))
        self._backoff.pop(c.id, None)
        self._op_locks.pop(c.id, None)
        self._resolve(self._next_exit, c.id, c)
        self._resolve(self._removed, c.id, c)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        from berth.images.filters import match_labels, parse_until
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = parse_until(filters["until"][-1]) if filters.get("until") else None
        deleted, reclaimed = [], 0
        for c in self.all():
            if c.running or c.status in (RESTARTING, REMOVING):
                continue
            if not match_labels(filters, c.labels):
                continue
            if until is not None and c.created_ns > until:
                continue
            size = await asyncio.to_thread(_tree_size, c.upperdir)
            try:
                await self.remove(c.id)
            except BerthError as exc:
                log.warning("prune: container %s: %s", c.id[:12], exc.message)
                continue
            deleted.append(c.id)
            reclaimed += size
        self.events.publish("container", "prune", "",
                            {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ------------------------------------------------------------------ wait
    def wait_future(self, name_or_id: str, condition: str = "not-running"
                    ) -> asyncio.Future | tuple[int, str]:
        """Register a wait; an immediate (exit code, error) or a future of it."""
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: {condition!r} (not-running, next-exit "
                                  "or removed)")
        c = self.get(name_or_id)
        if condition == "removed":
            fut = self._removed.get(c.id)
            if fut is None or fut.done():
                fut = self._removed[c.id] = asyncio.get_running_loop().create_future()
            return fut
        if condition == "not-running" and not c.running and c.status != RESTARTING:
            return c.state.exit_code, c.state.error
        return self.exit_future(c)

    # ------------------------------------------------------------------ rename / update / resize
    async def rename(self, name_or_id: str, new_name: str) -> None:
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        c = self.get(name_or_id)
        new = names.normalize(new_name)
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        old = c.name
        with self._lock:
            taken = self._names.get(new)
            if taken is not None:
                raise Conflict(f'Conflict. The container name "/{new}" is already in use by '
                               f'container "{taken}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
            self._names[new] = c.id
            c.name = new
        try:
            await self._persist(c)
        except sqlite3.IntegrityError:
            with self._lock:
                c.name = old
                self._names.pop(new, None)
            raise Conflict(f'Conflict. The container name "/{new}" is already in use') from None
        with self._lock:
            self._names.pop(old, None)
        self._event(c, "rename", oldName="/" + old)

    async def update(self, name_or_id: str, body: Any) -> list[str]:
        if not isinstance(body, dict):
            raise InvalidArgument("invalid update: the request body must be a JSON object")
        c = self.get(name_or_id)
        hc = dict(c.host_config)
        current = cfg.resources_of(hc)
        wanted = cfg.resources_of(body)
        merged = current.merged(wanted)
        merged.validate()
        if "RestartPolicy" in body and body["RestartPolicy"] is not None:
            probe = {"RestartPolicy": body["RestartPolicy"], "AutoRemove": hc.get("AutoRemove")}
            policy = probe["RestartPolicy"]
            if isinstance(policy, dict) and policy.get("Name") is not None:
                cfg.check_host_config(probe, True)
                hc["RestartPolicy"] = probe["RestartPolicy"]
        if c.running:
            await asyncio.to_thread(self.cgroups.apply, c.id, merged)
        for key, value in (("Memory", merged.memory), ("MemorySwap", merged.memory_swap),
                           ("MemoryReservation", merged.memory_reservation),
                           ("NanoCpus", merged.nano_cpus), ("CpuShares", merged.cpu_shares),
                           ("CpuPeriod", merged.cpu_period), ("CpuQuota", merged.cpu_quota),
                           ("CpusetCpus", merged.cpuset_cpus),
                           ("CpusetMems", merged.cpuset_mems), ("PidsLimit", merged.pids_limit)):
            if value:
                hc[key] = value
        c.host_config = hc
        await self._persist(c)
        self._event(c, "update")
        return []

    async def resize(self, name_or_id: str, height: int, width: int) -> None:
        c = self.get(name_or_id)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        await asyncio.to_thread(runtime.resize, c.bundle, height, width)
        self._event(c, "resize", height=str(height), width=str(width))

    # ------------------------------------------------------------------ top / stats
    def top(self, name_or_id: str, ps_args: str = "") -> dict[str, Any]:
        c = self.get(name_or_id)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = set(self.cgroups.pids(c.id))
        args = ps_args.split() if ps_args else ["-ef"]
        proc = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SystemError_(f"Error running ps: {proc.stderr.strip() or proc.returncode}")
        lines = proc.stdout.splitlines()
        if not lines:
            raise SystemError_("Error running ps: no output")
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidArgument(f"Couldn't find PID field in ps output (ps {' '.join(args)})")
        pid_index = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) <= pid_index:
                continue
            try:
                pid = int(fields[pid_index])
            except ValueError:
                continue
            if pid in pids:
                processes.append(fields)
        self._event(c, "top")
        return {"Titles": titles, "Processes": processes}

    def stats_sample(self, c: Container) -> dict[str, Any]:
        """One stats reading in Docker's shape (without the precpu part)."""
        base: dict[str, Any] = {
            "read": format_rfc3339nano(_now_ns()),
            "pids_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0,
                                                          "usage_in_kernelmode": 0,
                                                          "usage_in_usermode": 0},
                                            "throttling_data": {"periods": 0,
                                                                "throttled_periods": 0,
                                                                "throttled_time": 0}},
            "memory_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                            "io_queue_recursive": None, "io_service_time_recursive": None,
                            "io_wait_time_recursive": None, "io_merged_recursive": None,
                            "io_time_recursive": None, "sectors_recursive": None},
            "num_procs": 0, "storage_stats": {},
            "name": "/" + c.name, "id": c.id,
        }
        if c.running:
            try:
                base.update(self.cgroups.stats(c.id))
            except (OSError, ValueError) as exc:
                log.debug("container %s: stats: %s", c.id[:12], exc)
            base["blkio_stats"].update(_blkio_stats(self.cgroups, c.id))
        return base

    # ------------------------------------------------------------------ exec
    def exec_create(self, name_or_id: str, body: Any) -> ExecProcess:
        c = self.get(name_or_id)
        if c.status == PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        eid = _new_id(lambda v: v in self.execs)
        e = ExecProcess.from_body(eid, c.id, c.bundle, body)
        self.execs[eid] = e
        self._event(c, f"exec_create: {e.command_line}", execID=eid)
        return e

    def exec_get(self, exec_id: str) -> ExecProcess:
        e = self.execs.get(exec_id)
        if e is None:
            matches = [x for k, x in self.execs.items() if k.startswith(exec_id)] if exec_id else []
            if len(matches) != 1:
                raise NotFound(f"No such exec instance: {exec_id}")
            e = matches[0]
        return e

    async def exec_prepare(self, e: ExecProcess, tty: bool | None = None,
                           console_size: list[int] | None = None) -> None:
        """Create the exec's process (stopped before exec) under its monitor."""
        if e.started:
            raise Conflict(f"Error: Exec command {e.id} has already run")
        c = self.get(e.container_id)
        if c.status == PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        if tty is not None:
            e.tty = tty
        if console_size:
            e.console_size = console_size
        hc = c.host_config
        process: dict[str, Any] = {
            "args": e.cmd,
            "env": cfg.replace_or_append_env(spec_mod.process_env(c), e.env),
            "cwd": e.working_dir or c.config.get("WorkingDir") or "/",
            "terminal": e.tty,
            "openStdin": e.attach_stdin,
            "stdinOnce": True,
            "capabilities": runtime.capabilities(hc.get("CapAdd") or [], hc.get("CapDrop") or [],
                                                 bool(hc.get("Privileged")) or e.privileged),
            "noNewPrivileges": cfg.no_new_privileges(hc),
            "rlimits": cfg.ulimits(hc),
        }
        if e.tty and not any(v.startswith("TERM=") for v in process["env"]):
            process["env"].append("TERM=xterm")
        user = e.user or c.config.get("User") or ""
        if user:
            process["user"] = {"name": user}
        if e.tty and e.console_size and all(e.console_size):
            process["consoleSize"] = {"height": e.console_size[0], "width": e.console_size[1]}
        e.started = True
        e.finished = asyncio.get_running_loop().create_future()
        try:
            handle = await asyncio.to_thread(runtime.exec_create, c.bundle, e.directory, process)
        except BaseException as exc:
            e.exit_code = getattr(exc, "exit_code", 126)
            e.finished.set_result(e.exit_code)
            await asyncio.to_thread(shutil.rmtree, e.directory, True)
            raise
        e.pid = handle.pid

    async def exec_run(self, e: ExecProcess) -> None:
        """Let the prepared exec process run (after any attach)."""
        c = self._containers.get(e.container_id)
        try:
            e.pid = await asyncio.to_thread(runtime.start, e.directory)
        except runtime.StartError as exc:
            await self.exec_finished(e, {"exitCode": exc.exit_code})
            raise
        e.running = True
        if c is not None:
            self._event(c, f"exec_start: {e.command_line}", execID=e.id)

    async def exec_finished(self, e: ExecProcess, record: dict | None) -> None:
        if e.finished is not None and e.finished.done():
            return
        e.running = False
        e.exit_code = int(record.get("exitCode", EXIT_UNKNOWN)) if record else EXIT_UNKNOWN
        if e.finished is not None:
            e.finished.set_result(e.exit_code)
        c = self._containers.get(e.container_id)
        if c is not None:
            self._event(c, "exec_die", execID=e.id, exitCode=str(e.exit_code))
        await asyncio.to_thread(shutil.rmtree, e.directory, True)

    async def exec_watch(self, e: ExecProcess) -> None:
        """Record a detached exec's exit."""
        try:
            record = await runtime.wait_exit(e.directory)
        except BerthError:
            record = None
        await self.exec_finished(e, record)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        e = self.exec_get(exec_id)
        if not e.started or (e.finished is not None and e.finished.done()):
            raise Conflict(f"Exec {e.id} is not running")
        await asyncio.to_thread(runtime.resize, e.directory, height, width)

    # ------------------------------------------------------------------ rootfs for others
    def mount_rootfs(self, name_or_id: str) -> str:
        """A host path of the container's root filesystem, for the filesystem
        endpoints (cp, export, commit, diff): ``/proc/<pid>/root`` while it
        runs; otherwise its overlay mounted on ``<bundle>/rootfs`` until
        :meth:`unmount_rootfs` (calls nest)."""
        c = self.get(name_or_id)
        if c.running and c.state.pid:
            return f"/proc/{c.state.pid}/root"
        with self._rootfs_lock:
            count = self._rootfs_mounts.get(c.id, 0)
            if count == 0:
                _Mounts.mount_overlay(c)
            self._rootfs_mounts[c.id] = count + 1
        return c.rootfs

    def unmount_rootfs(self, name_or_id: str) -> None:
        c = self.get(name_or_id)
        with self._rootfs_lock:
            count = self._rootfs_mounts.get(c.id, 0)
            if count <= 1:
                self._rootfs_mounts.pop(c.id, None)
                if count == 1:
                    _Mounts.unmount(c.rootfs)
            else:
                self._rootfs_mounts[c.id] = count - 1

    @contextlib.contextmanager
    def rootfs(self, name_or_id: str) -> Iterator[str]:
        path = self.mount_rootfs(name_or_id)
        try:
            yield path
        finally:
            if not path.startswith("/proc/"):
                self.unmount_rootfs(name_or_id)

    # ------------------------------------------------------------------ start-up / shutdown
    async def start_background(self) -> None:
        """On the daemon's loop, once: reconcile records with the monitors and
        apply restart policies."""
        self._loop = asyncio.get_running_loop()
        await self.networks.start_background()
        volumes = self._volumes()
        for cid, name in self._incomplete:
            log.warning("removing half-created container %s (%s)", cid[:12], name)
            await self._network_forget(cid)
            await asyncio.to_thread(self._discard_half_created, cid, name, volumes)
        self._incomplete.clear()
        if volumes is not None and hasattr(volumes, "reconcile_references"):
            await asyncio.to_thread(volumes.reconcile_references, [c.id for c in self.all()])
        for c in self.all():
            try:
                await self._reconcile(c)
            except Exception:  # noqa: BLE001 - one bad record must not stop the daemon
                log.exception("container %s: reconcile failed", c.id[:12])
        await self.networks.reconcile({c.id for c in self.all() if c.running})

    async def _reconcile(self, c: Container) -> None:
        if c.status == REMOVING:
            await asyncio.to_thread(self._destroy, c, False)
            await self._network_forget(c.id)
            self._forget(c)
            return
        if c.status == RESTARTING:
            self._backoff.pop(c.id, None)
            self._schedule_restart(c)
            return
        st = None
        if c.status in (CREATED, RUNNING, PAUSED) and os.path.exists(
                os.path.join(c.bundle, "state.json")):
            try:
                st = await asyncio.to_thread(runtime.state, c.bundle)
            except NotFound:
                st = None
        if st is None:
            if c.status in (RUNNING, PAUSED):
                await self._handle_exit(c, None)
            elif self._restart_at_boot(c):
                await self._boot_start(c)
            return
        status = st.get("status")
        if status == "running" and not st.get("monitorDied"):
            c.state.pid = int(st.get("pid") or 0)
            if c.status == CREATED:
                c.state.status = RUNNING
                c.state.has_been_started = True
                c.state.started_ns = parse_rfc3339(st.get("startedAt") or "") or _now_ns()
                await self._persist(c)
            self._watch(c)
            return
        if status == "created" and not st.get("monitorDied"):
            # The daemon died between creating the process and starting it.
            with contextlib.suppress(BerthError):
                await asyncio.to_thread(runtime.kill, c.bundle, _signal.SIGKILL)
            await self._wait_monitor(c)
            c.state.status = CREATED if not c.state.has_been_started else EXITED
            await asyncio.to_thread(self._remove_cgroup_quietly, c.id)
            await self._persist(c)
            return
        if status == "running":
            # Its monitor died: nobody keeps its output or exit code. End it.
            with contextlib.suppress(OSError):
                os.kill(int(st["pid"]), _signal.SIGKILL)
            await self._handle_exit(c, None)
            return
        if c.status == CREATED and st.get("exit") and not st["exit"].get("startedAt"):
            return  # a start that failed before exec, already recorded
        await self._handle_exit(c, st.get("exit"))
        if c.id in self._containers and c.status == EXITED and self._restart_at_boot(c):
            await self._boot_start(c)

    def _restart_at_boot(self, c: Container) -> bool:
        policy, _ = c.restart_policy
        return c.state.has_been_started and (
            policy == "always" or (policy == "unless-stopped" and not c.state.manually_stopped))

    async def _boot_start(self, c: Container) -> None:
        async with self._op_lock(c.id):
            if c.running:
                return
            try:
                await self._start_locked(c)
            except BerthError as exc:
                log.error("container %s: start at boot failed: %s", c.id[:12], exc.message)

    async def stop_background(self) -> None:
        """Daemon shutdown: containers keep running under their monitors."""
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()
        tasks = list(self._watchers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.networks.stop_background()

    def close(self) -> None:
        self._saver.shutdown(wait=True)
        self.networks.close()
        self._trasher.shutdown(wait=True)
        self._remove_cgroup_parent()

    def _remove_cgroup_parent(self) -> None:
        """The daemon's cgroup parent, when no container is left in it (rmdir
        refuses a non-empty cgroup, so running containers keep theirs)."""
        mount, parent = self.cgroups.mount, self.cgroups.parent
        dirs = ([os.path.join(mount, parent)] if self.cgroups.version == 2 else
                [os.path.join(mount, c, parent) for c in self.cgroups.controllers])
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)

    # ------------------------------------------------------------------ list / inspect
    def list(self, all_: bool = False, limit: int | None = None, size: bool = False,
             filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        from .listing import select, summary
        chosen = select(self, self.all(), all_, limit, filters or {})
        return [summary(self, c, size) for c in chosen]

    def inspect(self, name_or_id: str, size: bool = False) -> dict[str, Any]:
        from .listing import inspect
        return inspect(self, self.get(name_or_id), size)


def _log_save_failure(fut: concurrent.futures.Future) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("saving a container record failed: %s", exc)


def _finished_ns(record: dict | None) -> int:
    if record and record.get("finishedAt"):
        try:
            return parse_rfc3339(record["finishedAt"]) or _now_ns()
        except ValueError:
            pass
    return _now_ns()


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not os.path.isdir(os.path.join(dirpath, name)) or os.path.islink(
                    os.path.join(dirpath, name)):
                total += st.st_size
    return total


def _blkio_stats(cgroups: CgroupManager, cid: str) -> dict[str, Any]:
    """blkio_stats.io_service_bytes_recursive from cgroup v1 blkio or v2 io.stat."""
    entries = []
    try:
        if cgroups.version == 2:
            with open(os.path.join(cgroups.path(cid), "io.stat")) as f:
                for line in f:
                    fields = line.split()
                    if not fields:
                        continue
                    major, _, minor = fields[0].partition(":")
                    kv = dict(x.split("=", 1) for x in fields[1:] if "=" in x)
                    for op, key in (("read", "rbytes"), ("write", "wbytes")):
                        entries.append({"major": int(major), "minor": int(minor), "op": op,
                                        "value": int(kv.get(key, 0))})
        else:
            path = os.path.join(cgroups.path(cid, "blkio"),
                                "blkio.throttle.io_service_bytes_recursive")
            with open(path) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) != 3:
                        continue
                    major, _, minor = fields[0].partition(":")
                    entries.append({"major": int(major), "minor": int(minor),
                                    "op": fields[1].lower(), "value": int(fields[2])})
    except (OSError, ValueError):
        return {}
    return {"io_service_bytes_recursive": entries}
