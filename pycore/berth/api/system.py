"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/system/df``."""

from __future__ import annotations

import asyncio
import datetime
import functools
import os
import platform
import socket

from aiohttp import web

from berth import __version__
from berth.api.context import engine_of
from berth.api.responses import json_response
from berth.config import API_VERSION, MIN_API_VERSION

# Docker reports Go's GOARCH names in /version and uname's in /info.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
           "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
           "riscv64": "riscv64"}


def _ping_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Ostype": "linux",
        "Docker-Experimental": "false",
        # "1": the classic builder (POST /build); berth has no BuildKit session API.
        "Builder-Version": "1",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


async def ping(request: web.Request) -> web.Response:
    # For HEAD aiohttp sends the headers (Content-Length included) and drops the body.
    return web.Response(text="OK", headers=_ping_headers())


@functools.cache
def _host_facts() -> dict[str, str]:
    uname = os.uname()
    return {
        "KernelVersion": uname.release,
        "Arch": _GOARCH.get(uname.machine, uname.machine),
        "Machine": uname.machine,
        "OperatingSystem": _os_pretty_name(),
        "OSVersion": _os_release().get("VERSION_ID", ""),
        "Runtime": f"{platform.python_implementation()} {platform.python_version()}",
    }


def _os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path) as f:
                for line in f:
                    key, sep, value = line.strip().partition("=")
                    if sep:
                        values[key] = value.strip().strip('"')
            return values
        except OSError:
            continue
    return values


def _os_pretty_name() -> str:
    return _os_release().get("PRETTY_NAME") or platform.system()


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_version() -> str:
    # The unified hierarchy exposes cgroup.controllers at its root.
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _read_flag(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _rfc3339_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat()


async def version(request: web.Request) -> web.Response:
    facts = _host_facts()
    details = {
        "ApiVersion": API_VERSION,
        "Arch": facts["Arch"],
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": facts["Runtime"],
        "KernelVersion": facts["KernelVersion"],
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return json_response({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": facts["Runtime"],
        "Os": "linux",
        "Arch": facts["Arch"],
        "KernelVersion": facts["KernelVersion"],
        "BuildTime": "",
    })


async def info(request: web.Request) -> web.Response:
    engine = engine_of(request)
    facts = _host_facts()
    images = await asyncio.to_thread(engine.images.list, True, {}, False)
    cgroup_version = _cgroup_version()
    body = {
        "ID": engine.id,
        **engine.container_counts(),
        "Images": len(images),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", _backing_fs(engine.config.root)],
                         ["Supports d_type", "true"], ["Native Overlay Diff", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        or cgroup_version == "2",
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": cgroup_version == "1",
        "IPv4Forwarding": _read_flag("/proc/sys/net/ipv4/ip_forward"),
        "BridgeNfIptables": _read_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": _read_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
        "Debug": engine.debug,
        "NFd": _count_fds(),
        "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": _rfc3339_now(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": engine.events.subscriber_count(),
        "KernelVersion": facts["KernelVersion"],
        "OperatingSystem": facts["OperatingSystem"],
        "OSVersion": facts["OSVersion"],
        "OSType": "linux",
        "Architecture": facts["Machine"],
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [],
                                           "Secure": True, "Official": True}},
            "Mirrors": [],
        },
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": engine.config.root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"berth": {"path": "berth-monitor"}},
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [],
        "Warnings": None,
    }
    return json_response(body)


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _backing_fs(path: str) -> str:
    """The filesystem type of the data root, from /proc/self/mounts."""
    best, fstype = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mountpoint = fields[1].replace("\\040", " ")
                if (real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")) \
                        and len(mountpoint) >= len(best):
                    best, fstype = mountpoint, fields[2]
    except OSError:
        pass
    return {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)


async def system_df(request: web.Request) -> web.Response:
    engine = engine_of(request)
    usage = await asyncio.to_thread(engine.images.df)
    containers = volumes = cache = None
    if getattr(engine, "containers", None) is not None:
        containers = await asyncio.to_thread(engine.containers.list, True, None, True)
    if getattr(engine, "volumes", None) is not None:
        volumes = await asyncio.to_thread(engine.volumes.disk_usage)
    if getattr(engine, "builder", None) is not None:
        cache = await asyncio.to_thread(engine.builder.df)
    return json_response({
        "LayersSize": usage.get("LayersSize", 0),
        "Images": usage.get("Images", []),
        "Containers": containers or [],
        "Volumes": volumes or [],
        "BuildCache": cache or [],
    })


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", system_df),
]
