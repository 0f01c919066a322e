"""Views of a container's filesystem for the daemon: an O_PATH fd of the
container's ``/`` from which every path is resolved with openat2
``RESOLVE_IN_ROOT``, so a symlink inside the container can never lead a read
or a write out of it.

Three kinds of view:

- a running container: ``/proc/<pid>/root`` of its init, pinned with a pidfd.
  It is the container's own mount namespace, so volumes, binds and tmpfs
  mounts are seen exactly as the container sees them;
- a stopped container (or an image): an overlay of its layers, mounted in a
  private mount namespace that one dedicated thread holds for the view's
  lifetime, with the container's binds and volumes bound in at their mount
  points (as Docker does for ``docker cp`` on a stopped container). Nothing
  is ever mounted in the daemon's namespace, and a crash leaks no mount: the
  namespace dies with its thread;
- a plain directory (a single read-only layer).
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import queue
import secrets
import signal
import stat
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from berth.errors import InvalidArgument, SystemError_
from berth.volumes import _linux as L

log = logging.getLogger("berth.volumes")

VIEW_PREFIX = "view-"

# Filesystems whose content is the kernel's, not the container's: a copy of a
# running container never descends into them.
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
    "securityfs", "bpf", "fusectl", "configfs", "pstore", "binfmt_misc", "autofs",
})


@dataclass(frozen=True)
class ViewMount:
    """A mount inside the container, in the runtime spec's terms."""

    destination: str
    type: str = "bind"
    source: str | None = None
    options: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    @classmethod
    def from_spec(cls, entry: dict[str, Any]) -> "ViewMount":
        return cls(entry["destination"], entry.get("type") or "bind", entry.get("source"),
                   tuple(entry.get("options") or ()))


class MountNamespace:
    """A private mount namespace, held by one thread that runs the mount calls
    given to :meth:`run`. Files opened in it stay usable from any thread while
    it lives; :meth:`close` ends the thread and with it every mount."""

    def __init__(self, name: str = "view"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._started = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=f"berth-mntns-{name}",
                                        daemon=True)
        self._thread.start()
        self._started.result()

    def _main(self) -> None:
        try:
            # CLONE_NEWNS implies CLONE_FS: only this thread changes namespace.
            L.unshare(L.CLONE_NEWNS)
            # Private, so nothing mounted here propagates back to the host.
            L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
        except OSError as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        while True:
            task = self._tasks.get()
            if task is None:
                return
            fn, args, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._tasks.put((fn, args, future))
        return future.result()

    def close(self) -> None:
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()


@dataclass
class RootView:
    """An open view of a container's ``/``. Use as a context manager."""

    root_fd: int
    description: str
    mounts: list[ViewMount] = field(default_factory=list)
    readonly_root: bool = False
    pseudo_devices: frozenset[int] = frozenset()
    _namespace: MountNamespace | None = None
    _mountpoint: str | None = None

    def __enter__(self) -> "RootView":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
        if self._namespace is not None:
            self._namespace.close()
            self._namespace = None
        if self._mountpoint is not None:
            try:
                os.rmdir(self._mountpoint)
            except OSError as exc:
                log.warning("cannot remove view mountpoint %s: %s", self._mountpoint, exc)
            self._mountpoint = None

    # -- resolution ---------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
        """``path`` (container terms) -> fd, resolved inside the view."""
        return L.openat2(self.root_fd, path, flags, mode)

    def mount_for(self, path: str) -> ViewMount | None:
        """The innermost mount holding container path ``path``."""
        best = None
        for m in self.mounts:
            dest = m.destination.rstrip("/") or "/"
            if path == dest or path.startswith(dest + "/") or dest == "/":
                if best is None or len(dest) > len(best.destination.rstrip("/")):
                    best = m
        return best

    def is_pseudo(self, st: os.stat_result) -> bool:
        return st.st_dev in self.pseudo_devices

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def of_process(cls, pid: int, mounts: Iterable[ViewMount] = (), readonly_root: bool = False,
                   description: str = "") -> "RootView":
        """The root of a running process (a container's init), as it sees it."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise ProcessLookupError(errno.ESRCH, f"process {pid} is gone") from None
        try:
            root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                # Alive after the open: the fd is that process's root, not a
                # recycled pid's.
                signal.pidfd_send_signal(pidfd, 0)
                pseudo = _pseudo_devices(pid)
            except BaseException:
                os.close(root_fd)
                raise
        finally:
            os.close(pidfd)
        return cls(root_fd, description or f"process {pid}", list(mounts), readonly_root,
                   pseudo)

    @classmethod
    def of_directory(cls, path: str, description: str = "") -> "RootView":
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return cls(fd, description or path, readonly_root=True)

    @classmethod
    def of_layers(cls, tmp_dir: str, lowerdirs: list[str], upperdir: str | None = None,
                  workdir: str | None = None, *, readonly: bool = False,
                  mounts: Iterable[ViewMount] = (), readonly_root: bool = False,
                  description: str = "") -> "RootView":
        """An overlay of ``lowerdirs`` (top first) and, when ``workdir`` is
        given, ``upperdir`` as its writable layer. Without ``workdir`` the
        upper dir is read as the top layer of a read-only view (its whiteouts
        still hide what they delete)."""
        layers = list(lowerdirs)
        if upperdir and not workdir:
            layers.insert(0, upperdir)
            upperdir = None
        if not layers and not upperdir:
            raise InvalidArgument("cannot view a filesystem without layers")
        mount_list = sorted(mounts, key=lambda m: m.destination.rstrip("/").count("/"))
        if len(layers) == 1 and upperdir is None and not mount_list:
            return cls.of_directory(layers[0], description)
        os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
        mountpoint = os.path.join(tmp_dir, VIEW_PREFIX + secrets.token_hex(8))
        os.mkdir(mountpoint, 0o700)
        namespace = None
        try:
            namespace = MountNamespace()
            root_fd = namespace.run(_mount_view, mountpoint, layers, upperdir, workdir,
                                    readonly, mount_list)
        except BaseException:
            if namespace is not None:
                namespace.close()
            os.rmdir(mountpoint)
            raise
        return cls(root_fd, description or "container filesystem", mount_list,
                   readonly_root or readonly, _namespace=namespace, _mountpoint=mountpoint)


def remove_stale_mountpoints(tmp_dir: str) -> None:
    """Start-up: mountpoints of views a crashed daemon held (their mounts died
    with its namespaces, so they are plain empty directories)."""
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(VIEW_PREFIX):
            try:
                os.rmdir(os.path.join(tmp_dir, name))
            except OSError as exc:
                log.warning("cannot remove stale view mountpoint %s: %s", name, exc)


def _pseudo_devices(pid: int) -> frozenset[int]:
    devices = set()
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            if fields[sep + 1] in PSEUDO_FILESYSTEMS:
                major, _, minor = fields[2].partition(":")
                devices.add(os.makedev(int(major), int(minor)))
    return frozenset(devices)


# -- in the namespace's thread ---------------------------------------------------------

def _mount_view(mountpoint: str, layers: list[str], upperdir: str | None, workdir: str | None,
                readonly: bool, mounts: list[ViewMount]) -> int:
    if len(layers) == 1 and upperdir is None:
        L.mount(layers[0], mountpoint, None, L.MS_BIND)
    else:
        _mount_overlay(mountpoint, layers, upperdir, workdir, readonly)
    root_fd = os.open(mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in mounts:
            _attach(root_fd, m)
    except BaseException:
        os.close(root_fd)
        raise
    return root_fd


def _mount_overlay(mountpoint: str, layers: list[str], upperdir: str | None,
                   workdir: str | None, readonly: bool) -> None:
    for d in [*layers, *(filter(None, (upperdir, workdir)))]:
        if not os.path.isdir(d):
            raise SystemError_(f"overlay layer {d} is missing")
    try:
        fsfd = L.fsopen("overlay")
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        return _mount_overlay_data(mountpoint, layers, upperdir, workdir, readonly)
    try:
        try:
            # One layer per call: no page-sized limit on the layer list.
            for layer in layers:
                L.fsconfig_string(fsfd, "lowerdir+", layer)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # no `lowerdir+` before Linux 6.8
                raise
            return _mount_overlay_data(mountpoint, layers, upperdir, workdir, readonly)
        if upperdir and workdir:
            L.fsconfig_string(fsfd, "upperdir", upperdir)
            L.fsconfig_string(fsfd, "workdir", workdir)
        # The container's own mount may use the same upper dir while we look.
        L.fsconfig_string(fsfd, "index", "off")
        L.fsconfig_create(fsfd)
        mfd = L.fsmount(fsfd, L.MOUNT_ATTR_RDONLY if readonly else 0)
        try:
            L.move_mount_to(mfd, mountpoint)
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def _mount_overlay_data(mountpoint: str, layers: list[str], upperdir: str | None,
                        workdir: str | None, readonly: bool) -> None:
    # This thread has its own working directory (CLONE_FS): layer paths are
    # given relative to their common parent, which fits many more layers into
    # the page-sized option string.
    common = os.path.commonpath([*layers, *(filter(None, (upperdir, workdir)))])
    os.chdir(common)

    def rel(p: str) -> str:
        r = os.path.relpath(p, common)
        if any(c in r for c in ":,"):
            raise SystemError_(f"overlay layer {p}: ':' and ',' are not allowed in layer paths")
        return r

    data = "index=off,lowerdir=" + ":".join(rel(p) for p in layers)
    if upperdir and workdir:
        data += f",upperdir={rel(upperdir)},workdir={rel(workdir)}"
    if len(data) >= 4096:
        raise SystemError_(f"overlay of {len(layers)} layers: the layer list is over the "
                           "kernel's page-sized limit for mount options (Linux 6.8 lifts it)")
    L.mount("overlay", mountpoint, "overlay", L.MS_RDONLY if readonly else 0, data)


def _attach(root_fd: int, m: ViewMount) -> None:
    """Mount ``m`` at its destination, resolved inside the view (created if
    missing, as the runtime does), through an fd so a symlink swap cannot
    redirect it."""
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        if not m.source:
            return
        try:
            is_dir = stat.S_ISDIR(os.stat(m.source).st_mode)
        except FileNotFoundError:
            raise SystemError_(f"mount {m.destination}: source {m.source} is missing") from None
        target = make_path(root_fd, m.destination, is_dir)
        try:
            L.mount(m.source, L.fd_path(target), None, L.MS_BIND | L.MS_REC)
            real = os.readlink(L.fd_path(target))
        finally:
            os.close(target)
        if m.readonly:
            # Remount refuses a /proc/self/fd path; the real path is ours alone
            # (private namespace, stopped container).
            L.mount(None, real, None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY)
    elif m.type == "tmpfs":
        # A private tmpfs, as Docker gives each view: what a stopped container
        # had there is gone anyway.
        target = make_path(root_fd, m.destination, True)
        try:
            flags, data = L.parse_mount_options(",".join(m.options))
            L.mount("tmpfs", L.fd_path(target), "tmpfs", flags & ~(L.MS_BIND | L.MS_REC), data)
        finally:
            os.close(target)
    # proc, sysfs, devpts... hold nothing of the container's: not mounted.


def make_path(root_fd: int, path: str, is_dir: bool) -> int:
    """An O_PATH fd of container path ``path`` under ``root_fd``, creating what
    is missing (directories 0755, a last file 0644 unless ``is_dir``); each
    prefix is resolved from the root in the container's terms."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise InvalidArgument(f"cannot create {path}: '..' is not allowed")
    parent = L.openat2(root_fd, "/", os.O_PATH | os.O_DIRECTORY)
    try:
        for i, name in enumerate(parts):
            prefix = "/" + "/".join(parts[:i + 1])
            try:
                child = L.openat2(root_fd, prefix, os.O_PATH)
            except FileNotFoundError:
                try:
                    if i == len(parts) - 1 and not is_dir:
                        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent))
                    else:
                        os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
                try:
                    child = L.openat2(root_fd, prefix, os.O_PATH)
                except FileNotFoundError:
                    raise InvalidArgument(f"cannot create {path}: {prefix} is a dangling "
                                          "symlink") from None
            os.close(parent)
            parent = child
        return parent
    except BaseException:
        os.close(parent)
        raise
