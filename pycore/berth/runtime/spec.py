"""The container spec written to ``<bundle>/spec.json`` and Docker's defaults for it.

The spec is berth's OCI-runtime-like document read by ``berth-monitor`` (the Rust
types in rust/runtime/src/spec.rs are the reference; unknown keys are rejected
there). Shape, camelCase keys::

    process:   args, env ["K=V"], cwd, user {uid, gid, additionalGids,
               additionalGroups (names, --group-add), name ("user[:group]")},
               terminal, openStdin, stdinOnce, consoleSize {height, width},
               capabilities (list of names, or {bounding, effective, permitted,
               inheritable, ambient}; absent = Docker's default set),
               noNewPrivileges, rlimits [{type, soft, hard}], oomScoreAdj
    root:      lowerdirs (top-most first), upperdir, workdir | path; mountpoint;
               readonly
    hostname, domainname
    mounts:    [{destination, type, source, options}]  (after berth's own /proc,
               /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys; same destination
               replaces the default)
    namespaces: {pid, net, ipc, uts, cgroup}: "new" | "host" | a namespace path
               (net "none" = new with lo up); the mount namespace is always new
    maskedPaths, readonlyPaths   (filled with Docker's defaults by write_spec when
               absent; give [] for --privileged)
    cgroupPaths: cgroup directories the process joins (v1 `tasks`, v2 cgroup.procs)
    logPath:   json-file log; stopSignal: number
    devices:   [{path (under /dev), type "c"|"b", major, minor, fileMode, uid, gid}]
    sysctl:    {"net.core.somaxconn": "1024"} (namespaced ones; set before /proc/sys
               turns read-only)
    seccomp:   {deny: [syscall names -> EPERM], denyNewUserNamespaces} — see
               seccomp_profile() for Docker's default; applies to execs too
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from berth.errors import InvalidArgument

#: What ``docker run`` grants without --cap-add/--cap-drop/--privileged.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

#: Every capability the runtime knows (for --privileged and --cap-add ALL).
ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

#: Docker's masked paths (hidden behind /dev/null or an empty read-only tmpfs).
DEFAULT_MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]

#: Docker's read-only paths.
DEFAULT_READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]

#: The PATH Docker puts in a container's env when the image has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def capabilities(cap_add: list[str] = (), cap_drop: list[str] = (),
                 privileged: bool = False) -> list[str]:
    """Docker's capability list after --cap-add/--cap-drop (``ALL`` allowed)."""
    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") or c == "ALL" else "CAP_" + c

    if privileged:
        return list(ALL_CAPABILITIES)
    add = [norm(c) for c in cap_add]
    drop = [norm(c) for c in cap_drop]
    for c in add + drop:
        if c != "ALL" and c not in ALL_CAPABILITIES:
            raise InvalidArgument(f"invalid capability {c!r}: unknown capability")
    caps = list(ALL_CAPABILITIES) if "ALL" in add else list(DEFAULT_CAPABILITIES)
    caps += [c for c in add if c != "ALL" and c not in caps]
    if "ALL" in drop:
        return [c for c in add if c != "ALL"]
    return [c for c in caps if c not in drop]


# Docker's default seccomp profile as a deny list: these fail with EPERM unless
# the capability that guards them is granted. (Docker also allows ptrace on
# kernels >= 4.8, as here.)
_SECCOMP_ALWAYS = [
    "add_key", "keyctl", "request_key", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
    "afs_syscall", "tuxcall", "security", "vserver", "getpmsg", "putpmsg",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
]
_SECCOMP_BY_CAPABILITY = {
    "CAP_SYS_ADMIN": ["bpf", "lookup_dcookie", "mount", "umount2", "pivot_root", "setns", "unshare",
                      "quotactl", "swapon", "swapoff", "fanotify_init", "open_tree", "move_mount",
                      "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "perf_event_open"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_TIME": ["clock_adjtime", "clock_settime", "settimeofday"],
    "CAP_SYS_MODULE": ["delete_module", "finit_module", "init_module"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    "CAP_SYS_RAWIO": ["ioperm", "iopl"],
    "CAP_SYS_PTRACE": ["kcmp", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "userfaultfd"],
    "CAP_SYS_BOOT": ["kexec_file_load", "kexec_load", "reboot"],
    "CAP_DAC_READ_SEARCH": ["name_to_handle_at", "open_by_handle_at"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
}


def seccomp_profile(capabilities: list[str]) -> dict[str, Any]:
    """The spec's ``seccomp`` for Docker's default profile, given the container's
    capabilities (leave ``seccomp`` out for --privileged or seccomp=unconfined)."""
    granted = set(capabilities)
    deny = set(_SECCOMP_ALWAYS)
    for cap, calls in _SECCOMP_BY_CAPABILITY.items():
        if cap not in granted:
            deny.update(calls)
    return {"deny": sorted(deny), "denyNewUserNamespaces": "CAP_SYS_ADMIN" not in granted}


def signal_number(sig: int | str) -> int:
    """``SIGTERM``, ``TERM``, ``15`` or 15 -> 15, as ``docker kill -s`` accepts."""
    if isinstance(sig, int):
        number = sig
    else:
        s = sig.strip().upper()
        if s.isdigit():
            number = int(s)
        else:
            name = s if s.startswith("SIG") else "SIG" + s
            try:
                number = int(getattr(signal.Signals, name))
            except AttributeError:
                if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
                    number = _rt_signal(name)
                else:
                    raise InvalidArgument(f"invalid signal: {sig}") from None
    if not 0 < number <= signal.SIGRTMAX:
        raise InvalidArgument(f"invalid signal: {sig}")
    return number


def _rt_signal(name: str) -> int:
    base, _, off = name.partition("+") if "+" in name else name.partition("-")
    n = int(signal.SIGRTMIN if base == "SIGRTMIN" else signal.SIGRTMAX)
    if off:
        if not off.isdigit():
            raise InvalidArgument(f"invalid signal: {name}")
        n = n + int(off) if "+" in name else n - int(off)
    return n


def _check(spec: dict[str, Any]) -> None:
    """The checks worth a clear message before the monitor's stricter parse."""
    proc = spec.get("process")
    if not isinstance(proc, dict):
        raise InvalidArgument("spec: process is missing")
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise InvalidArgument("spec: process.args must be a non-empty list of strings (no command given)")
    root = spec.get("root")
    if not isinstance(root, dict) or not str(root.get("mountpoint", "")).startswith("/"):
        raise InvalidArgument("spec: root.mountpoint must be an absolute path")
    if not root.get("lowerdirs") and not root.get("path"):
        raise InvalidArgument("spec: root needs lowerdirs or a path")


def write_spec(bundle: str | os.PathLike, spec: dict[str, Any]) -> str:
    """Write ``spec`` to ``<bundle>/spec.json`` atomically; fills Docker's masked
    and read-only paths when the spec has no such keys. Returns the path."""
    _check(spec)
    spec = dict(spec)
    spec.setdefault("maskedPaths", list(DEFAULT_MASKED_PATHS))
    spec.setdefault("readonlyPaths", list(DEFAULT_READONLY_PATHS))
    bundle = os.fspath(bundle)
    os.makedirs(bundle, exist_ok=True)
    # No fsync: a spec is written again on every start, and after a power loss
    # there is no running process that one could describe.
    return write_json_atomic(os.path.join(bundle, "spec.json"), spec, sync=False)


def read_spec(bundle: str | os.PathLike) -> dict[str, Any]:
    with open(os.path.join(os.fspath(bundle), "spec.json"), "rb") as f:
        return json.load(f)


def write_json_atomic(path: str, data: Any, sync: bool = True) -> str:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps(data))  # json.dump would use the pure-Python encoder
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)
    return path
