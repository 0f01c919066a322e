"""The body of ``POST /containers/create``: checked, merged with the image's
config the way Docker merges them, and normalised for storage and inspect.

Everything here is pure (no I/O): a bad request is refused before anything of
the container exists.
"""

from __future__ import annotations

import copy
import json
import resource
from typing import Any

from berth.cgroups import Resources
from berth.errors import InvalidArgument
from berth.runtime import capabilities, signal_number

#: Docker's Config struct, in its order, with the values inspect shows when unset.
CONFIG_FIELDS: list[tuple[str, Any]] = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", None), ("Cmd", None),
    ("Healthcheck", None), ("ArgsEscaped", None), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", None), ("MacAddress", None),
    ("OnBuild", None), ("Labels", None), ("StopSignal", None), ("StopTimeout", None),
    ("Shell", None),
]
#: Fields inspect leaves out when they are unset (Go's omitempty).
_OMIT_EMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress",
               "StopSignal", "StopTimeout", "Shell"}

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_STOP_TIMEOUT = 10

RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
NETWORK_MODES = ("", "default", "bridge", "none", "host")
LOG_DRIVERS = ("json-file", "none")

#: --security-opt values accepted besides no-new-privileges: seccomp=unconfined is
#: honoured; AppArmor and SELinux are never applied by berth, so turning them off
#: changes nothing.
_IGNORED_SECURITY_OPTS = ("seccomp=unconfined", "apparmor=unconfined", "label=disable",
                          "label:disable", "apparmor:unconfined", "seccomp:unconfined")

_RESOURCE_KEYS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
                  "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit")

# Linux's RLIMIT_* numbers (Python's resource module lacks some of them).
_ULIMITS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
    "rtprio": 14, "rttime": 15,
}


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def _str_list(value: Any, what: str, allow_string: bool = False) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) and allow_string:
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"invalid {what}: expected a list of strings, got {value!r}")
    return list(value)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"invalid {what}: expected an object of strings")
    return dict(value)


def _int(value: Any, what: str, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"invalid {what}: {value!r} is not an integer")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"invalid {what}: expected a JSON object")
    return value


def env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def replace_or_append_env(base: list[str], overrides: list[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: ``K=V`` replaces K in place or is
    appended; a bare ``K`` (no ``=``) removes K."""
    out = list(base)
    for entry in overrides:
        key = env_key(entry)
        index = next((i for i, e in enumerate(out) if env_key(e) == key), None)
        if "=" not in entry:
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append(entry)
        else:
            out[index] = entry
    return out


def check_env(env: list[str] | None, what: str = "environment variable") -> None:
    for entry in env or []:
        if env_key(entry) == "":
            raise _bad(f"invalid {what} {entry!r}: the name is empty")
        if "\x00" in entry:
            raise _bad(f"invalid {what} {entry!r}: contains a NUL byte")


def split_body(body: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Config, HostConfig, NetworkingConfig) of a create request body."""
    if not isinstance(body, dict):
        raise _bad("invalid container config: the request body must be a JSON object")
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    host_config = _obj(body.get("HostConfig"), "HostConfig")
    networking = _obj(body.get("NetworkingConfig"), "NetworkingConfig")
    return _copy_json(config), _copy_json(host_config), _copy_json(networking)


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON (C speed; copy.deepcopy is ~10x slower on the run path)."""
    return json.loads(json.dumps(value))


def merge_image_config(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """Docker's merge of the image's config under the container's."""
    out = dict(config)
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(out.get("ExposedPorts") or {})
    out["ExposedPorts"] = ports or None
    env = list(out.get("Env") or [])
    keys = {env_key(e) for e in env}
    env += [e for e in image.get("Env") or [] if env_key(e) not in keys]
    out["Env"] = env or None
    labels = dict(image.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    entrypoint = out.get("Entrypoint")
    if not entrypoint:
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
            if image.get("ArgsEscaped") is not None:
                out["ArgsEscaped"] = image.get("ArgsEscaped")
        if entrypoint is None:
            out["Entrypoint"] = image.get("Entrypoint")
    elif entrypoint == [""]:
        # `--entrypoint ""`: reset the image's entrypoint, keep only Cmd.
        out["Entrypoint"] = None
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    volumes = dict(image.get("Volumes") or {})
    volumes.update(out.get("Volumes") or {})
    out["Volumes"] = volumes or None
    if not out.get("StopSignal") and image.get("StopSignal"):
        out["StopSignal"] = image["StopSignal"]
    if out.get("Healthcheck") is None and image.get("Healthcheck") is not None:
        out["Healthcheck"] = image["Healthcheck"]
    if not out.get("Shell") and image.get("Shell"):
        out["Shell"] = image["Shell"]
    if out.get("OnBuild") is None:
        out["OnBuild"] = None
    return out


def command_of(config: dict[str, Any]) -> tuple[str, list[str]]:
    """(Path, Args) as inspect shows them: entrypoint + cmd."""
    argv = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not argv or not argv[0]:
        raise _bad("No command specified")
    return argv[0], argv[1:]


def check_config(config: dict[str, Any]) -> None:
    """Types and values of the Config part (before the merge)."""
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "Image", "StopSignal"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad(f"invalid {key}: {value!r} is not a string")
    for key in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr"):
        value = config.get(key)
        if value is not None and not isinstance(value, bool):
            raise _bad(f"invalid {key}: {value!r} is not a boolean")
    config["Env"] = _str_list(config.get("Env"), "Env")
    check_env(config["Env"])
    config["Cmd"] = _str_list(config.get("Cmd"), "Cmd", allow_string=True)
    config["Entrypoint"] = _str_list(config.get("Entrypoint"), "Entrypoint", allow_string=True)
    config["Labels"] = _str_map(config.get("Labels"), "Labels")
    for key in ("ExposedPorts", "Volumes"):
        value = config.get(key)
        if value is not None and not isinstance(value, dict):
            raise _bad(f"invalid {key}: expected a JSON object")
    wd = config.get("WorkingDir") or ""
    if wd and not wd.startswith("/"):
        raise _bad(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    if config.get("StopSignal"):
        signal_number(config["StopSignal"])
    if config.get("StopTimeout") is not None:
        _int(config["StopTimeout"], "StopTimeout")
    hostname = config.get("Hostname") or ""
    if len(hostname) > 63 or "\x00" in hostname:
        raise _bad(f"invalid hostname {hostname!r}: at most 63 characters")


def check_host_config(hc: dict[str, Any], volumes_available: bool) -> None:
    """Refuse what berth cannot honour, with the field named; normalise the rest."""
    mode = hc.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise _bad(f"invalid NetworkMode: {mode!r}")
    # Which networks exist is for berth.networks to say (NetworkService.check).
    hc["NetworkMode"] = mode
    if mode in ("none", "host") or mode.startswith("container:"):
        if hc.get("PortBindings"):
            raise _bad("conflicting options: port publishing and the container type network mode")
    if mode.startswith("container:") and not mode[len("container:"):]:
        raise _bad("invalid NetworkMode container: no container given")
    for key in ("PidMode", "IpcMode", "UTSMode"):
        value = hc.get(key) or ""
        allowed = ("", "host", "private", "shareable") if key == "IpcMode" else ("", "host", "private")
        if value not in allowed:
            raise _bad(f"invalid {key} {value!r}: only {', '.join(repr(a) for a in allowed[1:])} "
                       "are supported")
    policy = _obj(hc.get("RestartPolicy"), "RestartPolicy")
    name = policy.get("Name") or ""
    retries = _int(policy.get("MaximumRetryCount"), "RestartPolicy.MaximumRetryCount")
    if name not in RESTART_POLICIES:
        raise _bad(f"invalid restart policy '{name}'")
    if retries < 0:
        raise _bad("invalid restart policy: maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise _bad("invalid restart policy: maximum retry count can only be used with "
                   "'on-failure'")
    hc["RestartPolicy"] = {"Name": name or "no", "MaximumRetryCount": retries}
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise _bad("can't create 'AutoRemove' container with restart policy")
    caps_add = _str_list(hc.get("CapAdd"), "CapAdd") or []
    caps_drop = _str_list(hc.get("CapDrop"), "CapDrop") or []
    capabilities(caps_add, caps_drop, bool(hc.get("Privileged")))
    for opt in _str_list(hc.get("SecurityOpt"), "SecurityOpt") or []:
        if opt.startswith(("seccomp=", "seccomp:")) and opt not in _IGNORED_SECURITY_OPTS:
            raise _bad("invalid --security-opt: custom seccomp profiles are not supported "
                       "(Docker's default profile applies, or seccomp=unconfined)")
        if no_new_privileges_opt(opt) is None and opt not in _IGNORED_SECURITY_OPTS:
            raise _bad(f"invalid --security-opt: {opt!r} (supported: no-new-privileges, "
                       "seccomp=unconfined, apparmor=unconfined, label=disable)")
    ulimits(hc)
    resources_of(hc).validate()
    log = _obj(hc.get("LogConfig"), "LogConfig")
    driver = log.get("Type") or "json-file"
    if driver not in LOG_DRIVERS:
        raise _bad(f"logging driver {driver!r} is not supported (json-file or none)")
    hc["LogConfig"] = {"Type": driver, "Config": _str_map(log.get("Config"), "LogConfig.Config")}
    shm = _int(hc.get("ShmSize"), "ShmSize")
    if shm < 0:
        raise _bad("SHM size can not be less than 0")
    hc["ShmSize"] = shm or DEFAULT_SHM_SIZE
    tmpfs = _str_map(hc.get("Tmpfs"), "Tmpfs")
    for path in tmpfs:
        if not path.startswith("/"):
            raise _bad(f"invalid tmpfs mount point {path!r}: it must be an absolute path")
    has_volumes = bool(hc.get("Binds") or hc.get("Mounts") or hc.get("VolumesFrom"))
    if has_volumes and not volumes_available:
        raise _bad("volumes and bind mounts (Binds, Mounts, VolumesFrom) are not supported by "
                   "this daemon yet")
    for key, what in (("Devices", "devices"), ("Sysctls", "sysctls"), ("Links", "links"),
                      ("DeviceRequests", "device requests"), ("CgroupParent", "cgroup parents")):
        if hc.get(key):
            raise _bad(f"{key}: {what} are not supported by this daemon yet")
    for g in _str_list(hc.get("GroupAdd"), "GroupAdd") or []:
        if not g.isdigit():
            raise _bad(f"invalid GroupAdd {g!r}: only numeric group IDs are supported")
    for host in _str_list(hc.get("ExtraHosts"), "ExtraHosts") or []:
        name, sep, addr = host.partition(":")
        if not sep or not name or not addr:
            raise _bad(f"invalid extra host {host!r}: expected HOST:IP")
    for key in ("Dns", "DnsSearch", "DnsOptions"):
        _str_list(hc.get(key), key)
    size = hc.get("ConsoleSize")
    if size is not None and (not isinstance(size, list) or len(size) != 2
                             or not all(isinstance(v, int) and 0 <= v <= 65535 for v in size)):
        raise _bad(f"invalid ConsoleSize {size!r}: expected [height, width]")
    if hc.get("Init") is not None and not isinstance(hc.get("Init"), bool):
        raise _bad(f"invalid Init: {hc.get('Init')!r} is not a boolean")


def no_new_privileges_opt(opt: str) -> bool | None:
    """``no-new-privileges[=|:true|false]`` -> its value; anything else -> None."""
    for sep in ("=", ":"):
        key, found, value = opt.partition(sep)
        if found and key == "no-new-privileges":
            if value not in ("true", "false"):
                raise _bad(f"invalid --security-opt {opt!r}: expected true or false")
            return value == "true"
    return True if opt == "no-new-privileges" else None


def seccomp_unconfined(hc: dict[str, Any]) -> bool:
    """``--security-opt seccomp=unconfined``: no seccomp filter (Docker's default
    profile applies otherwise)."""
    return any(opt in ("seccomp=unconfined", "seccomp:unconfined")
               for opt in hc.get("SecurityOpt") or [])


def no_new_privileges(hc: dict[str, Any]) -> bool:
    value = False
    for opt in hc.get("SecurityOpt") or []:
        v = no_new_privileges_opt(opt)
        if v is not None:
            value = v
    return value


def resources_of(hc: dict[str, Any]) -> Resources:
    values = {k: hc.get(k) for k in _RESOURCE_KEYS}
    for key in ("CpusetCpus", "CpusetMems"):
        if values[key] is not None and not isinstance(values[key], str):
            raise _bad(f"invalid {key}: {values[key]!r} is not a string")
    return Resources.from_host_config(values)


def ulimits(hc: dict[str, Any]) -> list[dict[str, Any]]:
    """``Ulimits`` as spec rlimits, each capped at the daemon's own hard limit
    (a container never gets more than the daemon that starts it)."""
    out = []
    for item in hc.get("Ulimits") or []:
        if not isinstance(item, dict):
            raise _bad(f"invalid ulimit {item!r}")
        name = item.get("Name")
        if name not in _ULIMITS:
            raise _bad(f"invalid ulimit type: {name}")
        soft = _int(item.get("Soft"), f"ulimit {name}")
        hard = _int(item.get("Hard"), f"ulimit {name}")
        if soft > hard:
            raise _bad(f"ulimit soft limit must be less than or equal to hard limit: "
                       f"{soft} > {hard}")
        _, our_hard = resource.getrlimit(_ULIMITS[name])
        if our_hard != resource.RLIM_INFINITY:
            hard = min(hard, our_hard) if hard >= 0 else our_hard
            soft = min(soft, hard) if soft >= 0 else hard
        unlimited = 2**64 - 1
        out.append({"type": "RLIMIT_" + name.upper(),
                    "soft": unlimited if soft < 0 else soft,
                    "hard": unlimited if hard < 0 else hard})
    return out


def inspect_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Config section of inspect: Docker's fields in Docker's order."""
    out: dict[str, Any] = {}
    for key, default in CONFIG_FIELDS:
        value = config.get(key, default)
        if key in _OMIT_EMPTY and value in (None, "", {}, []):
            continue
        out[key] = value
    return out


#: HostConfig fields inspect always shows, with Docker's zero values.
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                  "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
    "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
    "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
    "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
    "UsernsMode": "", "ShmSize": DEFAULT_SHM_SIZE, "Runtime": "berth", "Isolation": "",
    "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None,
    "ReadonlyPaths": None,
}


def inspect_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(HOST_CONFIG_DEFAULTS)
    for key, value in hc.items():
        if value is None and key in out and out[key] is not None:
            continue
        out[key] = value
    if out.get("IpcMode") == "":
        out["IpcMode"] = "private"
    return out
