"""RUN: the command in a real container, through :mod:`berth.runtime`.

The container's root is an overlay of the parent image's snapshots (plus a
small "init" layer, below) with a fresh upper directory; once the command
has exited, that upper directory *is* the step's layer (see
:mod:`berth.builder.layers`). The container lives under
``<root>/builder/run/<id>/``, has Docker's default capabilities, masked and
read-only paths, its own pid/ipc/uts namespaces, and the host's network (no
bridge exists for builds; ``--network=none`` gives it only a loopback).

The init layer, like Docker's, holds the mount points the runtime needs
(``/proc``, ``/sys``, ``/dev``, ``/etc/hosts``, ``/etc/resolv.conf``,
``/etc/hostname``) when the image lacks them, with the parent directories'
attributes, so that nothing the runtime creates ends up in the step's layer.
"""

from __future__ import annotations

import codecs
import logging
import os
import secrets
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from berth import runtime
from berth.runtime import StartError

from .fsview import LayerView

log = logging.getLogger("berth.builder")

_MOUNT_DIRS = ("/proc", "/sys", "/dev")
_ETC_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
_FALLBACK_RESOLV = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


@dataclass
class RunSpec:
    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    lowerdirs: list[str]            # the parent's snapshots, top first
    network: str = "host"           # host | none
    privileged: bool = False
    mounts: list[dict] = field(default_factory=list)   # extra spec mounts (RUN --mount)
    hostname: str = ""


@dataclass
class RunResult:
    exit_code: int
    upper: str          # the layer directory (caller commits or removes it)
    start_error: str = ""


class RunDir:
    """One RUN's directory: bundle files, upper/work dirs, init layer."""

    def __init__(self, root: str):
        self.id = secrets.token_hex(32)
        self.path = os.path.join(root, self.id)
        os.makedirs(self.path, mode=0o700)
        self.upper = os.path.join(self.path, "upper")
        self.work = os.path.join(self.path, "work")
        self.rootfs = os.path.join(self.path, "rootfs")
        self.init = os.path.join(self.path, "init")
        for d in (self.upper, self.work, self.rootfs):
            os.mkdir(d, 0o755)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            text = f.read()
    except OSError:
        return _FALLBACK_RESOLV
    return text if "nameserver" in text else _FALLBACK_RESOLV


def _make_init_layer(run: RunDir, view: LayerView, spec: RunSpec) -> bool:
    """Create the missing mount points; returns whether anything was needed."""
    needed = False
    files = set(_ETC_FILES)
    for m in spec.mounts:
        if m.get("type") == "bind" and not os.path.isdir(m.get("source", "")):
            files.add(m["destination"])
    for path in _MOUNT_DIRS + _ETC_FILES + tuple(m["destination"] for m in spec.mounts):
        if view.lookup(path) is not None:
            continue
        needed = True
        parts = [p for p in path.split("/") if p]
        current = ""
        for i, part in enumerate(parts):
            current += "/" + part
            host = run.init + current
            last = i == len(parts) - 1
            if os.path.lexists(host):
                continue
            below = view.lookup(current)
            if last and path in files:
                os.makedirs(os.path.dirname(host), exist_ok=True)
                with open(host, "w"):
                    pass
                os.chmod(host, 0o644)
            elif below is not None and below.is_dir:
                os.makedirs(os.path.dirname(host), exist_ok=True)
                os.mkdir(host)
                os.chown(host, below.st.st_uid, below.st.st_gid)
                os.chmod(host, stat.S_IMODE(below.st.st_mode))
                os.utime(host, ns=(below.st.st_atime_ns, below.st.st_mtime_ns))
            elif below is None:
                os.makedirs(host, mode=0o755, exist_ok=True)
            else:
                break  # a file is in the way: the runtime reports it
    if needed:
        # The init layer's root must not hide the image's root attributes.
        top = view.lookup("/")
        if top is not None:
            os.chown(run.init, top.st.st_uid, top.st.st_gid)
            os.chmod(run.init, stat.S_IMODE(top.st.st_mode))
    return needed


def run_container(run_root: str, spec: RunSpec, output: Callable[[str], None],
                  cancel: threading.Event) -> RunResult:
    """Run ``spec`` to completion; ``output`` gets its stdout and stderr as
    text, as it comes. The returned upper directory belongs to the caller;
    everything else of the container is removed here."""
    run = RunDir(run_root)
    try:
        os.mkdir(run.init, 0o755)
        view = LayerView(spec.lowerdirs) if spec.lowerdirs else None
        lowers = list(spec.lowerdirs)
        if view is None:
            lowers = [run.init]
            os.makedirs(run.init + "/etc", exist_ok=True)
        elif _make_init_layer(run, view, spec):
            lowers = [run.init] + lowers
        hostname = spec.hostname or run.id[:12]
        etc = {
            "/etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                          f"127.0.1.1\t{hostname}\n",
            "/etc/resolv.conf": _host_resolv_conf(),
            "/etc/hostname": hostname + "\n",
        }
        mounts = []
        for dest, text in etc.items():
            host = os.path.join(run.path, os.path.basename(dest))
            with open(host, "w") as f:
                f.write(text)
            mounts.append({"destination": dest, "type": "bind", "source": host,
                           "options": ["rbind", "rprivate"]})
        mounts.extend(spec.mounts)
        env = list(spec.env)
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.insert(0, f"HOSTNAME={hostname}")
        process = {"args": spec.argv, "env": env, "cwd": spec.cwd or "/",
                   "user": {"name": spec.user} if spec.user else {"uid": 0, "gid": 0}}
        if spec.privileged:
            process["capabilities"] = list(runtime.ALL_CAPABILITIES)
        document = {
            "process": process,
            "root": {"lowerdirs": lowers, "upperdir": run.upper, "workdir": run.work,
                     "mountpoint": run.rootfs},
            "hostname": hostname,
            "mounts": mounts,
            "namespaces": {"pid": "new", "ipc": "new", "uts": "new",
                           "net": "host" if spec.network == "host" else "none"},
        }
        if spec.privileged:
            document["maskedPaths"] = []
            document["readonlyPaths"] = []
        runtime.write_spec(run.path, document)
        if cancel.is_set():
            raise _Cancelled()
        try:
            runtime.spawn_monitor(run.path)
        except StartError as e:
            return RunResult(e.exit_code, _take_upper(run), start_error=e.message)
        code, error = _attach_and_start(run, output, cancel)
        _wait_monitor_gone(run.path)
        return RunResult(code, _take_upper(run), start_error=error)
    finally:
        run.remove()


class _Cancelled(Exception):
    pass


def _take_upper(run: RunDir) -> str:
    """Move the upper dir out of the run directory, which is removed."""
    target = run.path + ".upper"
    os.rename(run.upper, target)
    return target


def _attach_and_start(run: RunDir, output: Callable[[str], None],
                      cancel: threading.Event) -> tuple[int, str]:
    attachment = runtime.attach(run.path, stdin=False, stdout=True, stderr=True)
    stop_watch = threading.Event()

    def watch_cancel() -> None:
        while not stop_watch.wait(0.1):
            if cancel.is_set():
                try:
                    runtime.kill(run.path, signal.SIGKILL)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                return

    watcher = threading.Thread(target=watch_cancel, name="berth-build-cancel", daemon=True)
    watcher.start()
    decoders = {"stdout": codecs.getincrementaldecoder("utf-8")("replace"),
                "stderr": codecs.getincrementaldecoder("utf-8")("replace")}
    try:
        with attachment:
            try:
                runtime.start(run.path)
            except StartError as e:
                exit_ = _drain(attachment, output, decoders)
                return e.exit_code, e.message
            exit_ = _drain(attachment, output, decoders)
        if exit_ is None:
            exit_ = runtime.wait_exit_sync(run.path, timeout=60)
        return int(exit_.get("exitCode", 1)), ""
    finally:
        stop_watch.set()
        watcher.join()


def _drain(attachment, output, decoders) -> dict | None:
    exit_ = None
    for kind, data in attachment:
        if kind in decoders:
            text = decoders[kind].decode(data)
            if text:
                output(text)
        elif kind == "exit":
            exit_ = data
    for decoder in decoders.values():
        tail = decoder.decode(b"", final=True)
        if tail:
            output(tail)
    return exit_


def _wait_monitor_gone(bundle: str, timeout: float = 5.0) -> None:
    """The monitor leaves once its clients took the exit; wait for it, so the
    bundle can be removed under no one's feet."""
    try:
        with open(os.path.join(bundle, "monitor.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state == b"Z":
                return
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        time.sleep(0.01)
    if _is_monitor_of(pid, bundle):
        log.warning("monitor %d of %s still running after the build step; killing it", pid, bundle)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_monitor_of(pid: int, bundle: str) -> bool:
    """Whether ``pid`` is still the monitor of ``bundle`` (not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return any(a.endswith(b"berth-monitor") for a in argv[:1]) and cwd == bundle


def cleanup_leftovers(run_root: str) -> None:
    """Daemon start: containers of builds a crash interrupted."""
    if not os.path.isdir(run_root):
        return
    for name in os.listdir(run_root):
        path = os.path.join(run_root, name)
        try:
            # Through its control socket: a stale pid file never names a stranger.
            runtime.kill(path, signal.SIGKILL)
            runtime.wait_exit_sync(path, timeout=10)
        except Exception:  # noqa: BLE001 - no monitor answers: nothing runs there
            pass
        shutil.rmtree(path, ignore_errors=True)
