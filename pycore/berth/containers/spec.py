"""Building the runtime spec (``berth.runtime.spec``) of a container from its
record: Docker's process environment, namespaces for the network mode, the
per-container /etc files, /dev/shm, tmpfs mounts, --init and limits.

``--init``: Docker's own choice, tini, bind-mounted read-only at
``/sbin/docker-init`` and run as ``docker-init -- CMD``. The static build
(Debian's ``tini`` package, a dependency of docker.io) is used so it runs in any
image; :func:`init_binary` finds it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from berth.errors import InvalidArgument
from berth.runtime import DEFAULT_PATH, capabilities, seccomp_profile, signal_number

from . import config as cfg
from .model import Container

INIT_PATH_IN_CONTAINER = "/sbin/docker-init"
_INIT_CANDIDATES = ("docker-init", "tini-static")


def init_binary() -> str | None:
    """A static init for --init: ``$BERTH_INIT``, else docker-init or tini-static."""
    env = os.environ.get("BERTH_INIT")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in _INIT_CANDIDATES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK)
                                       else None)
        if found:
            return os.path.realpath(found)
    return None


def process_env(c: Container) -> list[str]:
    """Docker's container environment: PATH, HOSTNAME and (with a tty) TERM
    first, then Config.Env replacing or adding."""
    hostname = c.config.get("Hostname") or ""
    if c.config.get("Domainname"):
        hostname += "." + c.config["Domainname"]
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if c.tty:
        base.append("TERM=xterm")
    return cfg.replace_or_append_env(base, c.config.get("Env") or [])


def _netns(c: Container, netns_of) -> str:
    mode = c.host_config.get("NetworkMode") or "default"
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        return netns_of(mode[len("container:"):])
    # default/bridge: an isolated namespace with lo up until the networks
    # component provides bridges; none: the same, by definition.
    return "none"


def build(c: Container, cgroup_paths: list[str], netns_of=None) -> dict[str, Any]:
    hc = c.host_config
    args = [c.path, *c.args]
    mounts: list[dict[str, Any]] = []
    if hc.get("Init"):
        init = init_binary()
        if init is None:
            raise InvalidArgument("--init: no init binary found on the host (install Debian's "
                                  "tini package, or set BERTH_INIT to a static init)")
        args = [INIT_PATH_IN_CONTAINER, "--", *args]
        mounts.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind", "source": init,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
    shm = int(hc.get("ShmSize") or cfg.DEFAULT_SHM_SIZE)
    if (hc.get("IpcMode") or "") != "host":
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]})
    mounts += [
        {"destination": "/etc/resolv.conf", "type": "bind", "source": c.resolv_conf_path,
         "options": ["rbind", "rprivate"]},
        {"destination": "/etc/hostname", "type": "bind", "source": c.hostname_path,
         "options": ["rbind", "rprivate"]},
        {"destination": "/etc/hosts", "type": "bind", "source": c.hosts_path,
         "options": ["rbind", "rprivate"]},
    ]
    # HostConfig.Tmpfs, Binds, Mounts and image volumes come from the volumes service.
    mounts += c.spec_mounts
    # Parents before children, as Docker orders them: a volume on /etc must not
    # cover the per-container /etc/hosts mounted after it.
    mounts.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))
    privileged = bool(hc.get("Privileged"))
    caps = capabilities(hc.get("CapAdd") or [], hc.get("CapDrop") or [], privileged)
    network = _netns(c, netns_of)
    uts_host = network == "host" or hc.get("UTSMode") == "host"
    process: dict[str, Any] = {
        "args": args,
        "env": process_env(c),
        "cwd": c.config.get("WorkingDir") or "/",
        "terminal": c.tty,
        "openStdin": bool(c.config.get("OpenStdin")),
        "stdinOnce": bool(c.config.get("StdinOnce")),
        "capabilities": caps,
        "noNewPrivileges": cfg.no_new_privileges(hc),
        "rlimits": cfg.ulimits(hc),
    }
    user = c.config.get("User") or ""
    groups = [int(g) for g in hc.get("GroupAdd") or []]
    if user or groups:
        process["user"] = {"additionalGids": groups, **({"name": user} if user else {})}
    size = hc.get("ConsoleSize") or [0, 0]
    if c.tty and size[0] and size[1]:
        process["consoleSize"] = {"height": size[0], "width": size[1]}
    spec: dict[str, Any] = {
        "process": process,
        "root": {"lowerdirs": c.lowerdirs, "upperdir": c.upperdir, "workdir": c.workdir,
                 "mountpoint": c.rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "mounts": mounts,
        "namespaces": {
            "net": network,
            "pid": "host" if hc.get("PidMode") == "host" else "new",
            "ipc": "host" if hc.get("IpcMode") == "host" else "new",
            "uts": "host" if uts_host else "new",
        },
        "cgroupPaths": cgroup_paths,
        "stopSignal": signal_number(c.config.get("StopSignal") or "SIGTERM"),
    }
    if not uts_host:
        spec["hostname"] = c.config.get("Hostname") or c.id[:12]
        if c.config.get("Domainname"):
            spec["domainname"] = c.config["Domainname"]
    if c.log_path:
        spec["logPath"] = c.log_path
    if privileged:
        spec["maskedPaths"] = []
        spec["readonlyPaths"] = []
    elif not cfg.seccomp_unconfined(hc):
        spec["seccomp"] = seccomp_profile(caps)
    return spec
