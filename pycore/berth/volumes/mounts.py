"""A container's mount requests, parsed and checked the way Docker's Linux
parser does, with its messages: ``HostConfig.Binds`` (``-v``),
``HostConfig.Mounts`` (``--mount``), ``HostConfig.Tmpfs`` (``--tmpfs``) and
the image's ``VOLUME``s; and the runtime spec entries they become.

Parsing has no side effects: volumes are created and bind sources made by
:class:`berth.volumes.VolumeService` only once every request has passed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from berth.errors import InvalidArgument

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DEFAULT_DRIVER = "local"
DEFAULT_PROPAGATION = "rprivate"

VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RESTRICTED_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"

PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_RW_MODES = frozenset({"rw", "ro"})
_LABEL_MODES = frozenset({"z", "Z"})
_COPY_MODES = frozenset({"nocopy"})
_CONSISTENCY_MODES = frozenset({"consistent", "cached", "delegated"})

# Tmpfs options (Docker's mount.MergeTmpfsOptions): flag words, and data keys.
_TMPFS_FLAG_KEYS = {
    "ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid", "dev": "nodev",
    "nodev": "nodev", "exec": "noexec", "noexec": "noexec", "sync": "sync", "async": "sync",
    "dirsync": "dirsync", "mand": "mand", "nomand": "mand", "atime": "noatime",
    "noatime": "noatime", "diratime": "nodiratime", "nodiratime": "nodiratime",
    "relatime": "relatime", "norelatime": "relatime", "strictatime": "strictatime",
    "nostrictatime": "strictatime", "remount": "remount",
    # One propagation mode only.
    "bind": "prop", "rbind": "prop", "unbindable": "prop", "runbindable": "prop",
    "private": "prop", "rprivate": "prop", "shared": "prop", "rshared": "prop",
    "slave": "prop", "rslave": "prop",
}
_TMPFS_DATA_KEYS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})
_TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]


@dataclass
class MountPoint:
    """One mount of a container, as Docker records it (``Mounts`` in inspect),
    plus what berth needs to set it up and to release it."""

    type: str                       # "bind" | "volume" | "tmpfs"
    destination: str
    source: str = ""                # bind: host path; volume: its _data (once known)
    name: str = ""                  # volume name ("" = anonymous, until created)
    anonymous: bool = False         # created for this container (removed by `rm -v`)
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    copy_data: bool = True          # pre-fill an empty volume from the image
    non_recursive: bool = False     # bind: "bind" instead of "rbind"
    create_source: bool = False     # -v: a missing host path becomes a directory
    tmpfs_data: str = ""            # tmpfs: "size=...,mode=..."
    driver_options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    origin: str = "binds"           # binds | mounts | tmpfs | image | volumes-from
    in_inspect: bool = True         # HostConfig.Tmpfs entries are not in Mounts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MountPoint":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def inspect(self) -> dict[str, Any]:
        """Docker's ``MountPoint`` (``Type``/``Name``/``Driver`` left out when empty)."""
        out: dict[str, Any] = {"Type": self.type}
        if self.name:
            out["Name"] = self.name
        out["Source"] = self.source
        out["Destination"] = self.destination
        if self.driver:
            out["Driver"] = self.driver
        out.update({"Mode": self.mode, "RW": self.rw, "Propagation": self.propagation})
        return out

    def spec(self) -> dict[str, Any]:
        """The runtime spec's mount entry (see berth.runtime.spec)."""
        if self.type == "tmpfs":
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                    "options": merge_tmpfs_options(_TMPFS_DEFAULTS + split_options(
                        self.tmpfs_data))}
        options = ["bind" if self.non_recursive else "rbind"]
        if not self.rw:
            options.append("ro")
        if self.propagation:
            options.append(self.propagation)
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": options}


def split_options(data: str) -> list[str]:
    return [o for o in (data or "").split(",") if o]


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """Docker's merge: the last of two contradicting flags (``noexec``,
    ``exec``) or of two ``key=`` values wins; unknown options are refused."""
    seen_flags: set[str] = set()
    seen_data: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        key = _TMPFS_FLAG_KEYS.get(option)
        if key is not None:
            if key not in seen_flags:
                merged.insert(0, option)
                seen_flags.add(key)
            continue
        name, eq, _ = option.partition("=")
        if not eq or name not in _TMPFS_DATA_KEYS:
            raise InvalidArgument(f"invalid tmpfs option {name!r}")
        if name not in seen_data:
            merged.insert(0, option)
            seen_data.add(name)
    return merged


def check_volume_name(name: str) -> None:
    """The local driver's rule, with its message (wrapped as Docker's
    ``create NAME: ...``)."""
    if len(name) == 1:
        raise InvalidArgument(f"create {name}: volume name is too short, names should be at "
                              "least two alphanumeric characters")
    if not VOLUME_NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            f'only "{RESTRICTED_NAME_CHARS}" are allowed. If you intended to pass a host '
            "directory, use absolute path")


# -- validation helpers (Docker's linuxParser) ------------------------------------------

def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def _config_error(mount_type: str, cause: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{mount_type}": {cause}')


def _check_target(mount_type: str, target: str) -> None:
    if not target:
        raise _config_error(mount_type, "field Target must not be empty")
    if _clean(target.replace("\\", "/")) == "/":
        raise _config_error(mount_type, "invalid specification: destination can't be '/'")
    if not target.replace("\\", "/").startswith("/"):
        raise _config_error(mount_type, f"invalid mount path: '{target}' mount path must be "
                                        "absolute")


def valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "prop": 0, "copy": 0, "consistency": 0}
    for o in mode.split(","):
        if o in _RW_MODES:
            counts["rw"] += 1
        elif o in _LABEL_MODES:
            counts["label"] += 1
        elif o in PROPAGATIONS:
            counts["prop"] += 1
        elif o in _COPY_MODES:
            counts["copy"] += 1
        elif o in _CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(c <= 1 for c in counts.values())


def parse_bind(raw: str) -> MountPoint:
    """One ``HostConfig.Binds`` entry: ``/ctr``, ``NAME:/ctr[:MODE]`` or
    ``/host:/ctr[:MODE]``, MODE a comma list of ro|rw, z|Z, a propagation,
    nocopy."""
    if not isinstance(raw, str):
        raise InvalidArgument(f"invalid volume specification: {raw!r} is not a string")
    parts = raw.split(":", 3)
    if parts[0] == "" or len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    mode = ""
    source = ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):
            # "/foo:rw": a destination with a mode is not a volume spec.
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = parts
    else:
        source, target, mode = parts
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    options = mode.split(",") if mode else []
    mount_type = "bind" if source.startswith("/") else "volume"
    try:
        _check_target(mount_type, target)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid volume specification: '{raw}': {exc.message}") from None
    mp = MountPoint(type=mount_type, destination=_clean(target), mode=mode,
                    rw="ro" not in options, origin="binds")
    propagation = next((o for o in options if o in PROPAGATIONS), "")
    if mount_type == "bind":
        mp.source = _clean(source)
        mp.propagation = propagation or DEFAULT_PROPAGATION
        mp.create_source = True
    else:
        mp.name = source
        mp.driver = DEFAULT_DRIVER
        mp.copy_data = "nocopy" not in options
        if source:
            check_volume_name(source)
            if not mode:
                mp.mode = "z"  # Docker's default mode for a named local volume
    return mp


def parse_mount(cfg: Any) -> MountPoint:
    """One ``HostConfig.Mounts`` entry (``--mount``)."""
    if not isinstance(cfg, dict):
        raise InvalidArgument(f"invalid mount config: expected an object, got {cfg!r}")
    mount_type = cfg.get("Type") or ""
    target = cfg.get("Target") or ""
    source = cfg.get("Source") or ""
    readonly = bool(cfg.get("ReadOnly"))
    for kind, key in (("bind", "BindOptions"), ("volume", "VolumeOptions"),
                      ("tmpfs", "TmpfsOptions")):
        if mount_type != kind and cfg.get(key) is not None:
            raise _config_error(mount_type, f"field {key} must not be specified")
    if mount_type not in ("bind", "volume", "tmpfs"):
        if mount_type in ("npipe", "cluster", "image"):
            raise _config_error(mount_type, f"mount type {mount_type} is not supported by "
                                            "this daemon")
        raise _config_error(mount_type, "mount type unknown")
    _check_target(mount_type, target)
    mp = MountPoint(type=mount_type, destination=_clean(target), rw=not readonly,
                    origin="mounts")
    if mount_type == "bind":
        if not source:
            raise _config_error("bind", "field Source must not be empty")
        opts = cfg.get("BindOptions") or {}
        propagation = opts.get("Propagation") or ""
        if propagation and propagation not in PROPAGATIONS:
            raise _config_error("bind", f"invalid propagation mode: {propagation}")
        if not source.startswith("/"):
            raise _config_error("bind", f"invalid mount path: '{source}' mount path must be "
                                        "absolute")
        mp.source = _clean(source)
        mp.propagation = propagation or DEFAULT_PROPAGATION
        mp.non_recursive = bool(opts.get("NonRecursive"))
        mp.create_source = bool(opts.get("CreateMountpoint"))
    elif mount_type == "volume":
        opts = cfg.get("VolumeOptions") or {}
        if opts.get("Subpath"):
            if not source:
                raise _config_error("volume", "must not set Subpath when using anonymous "
                                              "volumes")
            raise _config_error("volume", "volume subpaths are not supported by this daemon")
        driver = (opts.get("DriverConfig") or {}).get("Name") or DEFAULT_DRIVER
        mp.name = source
        mp.driver = driver
        mp.mode = "z"
        mp.copy_data = not opts.get("NoCopy")
        mp.driver_options = dict((opts.get("DriverConfig") or {}).get("Options") or {})
        mp.labels = dict(opts.get("Labels") or {})
        if source:
            check_volume_name(source)
    else:
        if source:
            raise _config_error("tmpfs", "field Source must not be specified")
        mp.tmpfs_data = tmpfs_data(cfg.get("TmpfsOptions"), readonly)
        merge_tmpfs_options(split_options(mp.tmpfs_data))
    return mp


def tmpfs_data(options: Any, readonly: bool) -> str:
    """``TmpfsOptions`` -> mount data, as Docker's ConvertTmpfsOptions."""
    opts = options or {}
    if not isinstance(opts, dict):
        raise _config_error("tmpfs", "TmpfsOptions must be an object")
    raw: list[str] = ["ro"] if readonly else []
    mode = opts.get("Mode") or 0
    if mode:
        raw.append(f"mode={int(mode):o}")
    size = int(opts.get("SizeBytes") or 0)
    if size < 0:
        raise _config_error("tmpfs", f"invalid size {size}: must not be negative")
    if size:
        for suffix, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                raw.append(f"size={size // divisor}{suffix}")
                break
        else:
            raw.append(f"size={size}")
    for option in opts.get("Options") or []:
        if not isinstance(option, list) or not 1 <= len(option) <= 2:
            raise _config_error("tmpfs", "invalid option array length")
        if option[0] not in ("exec", "noexec"):
            raise _config_error("tmpfs", f"invalid option: {option[0]}")
        raw.append(option[0] if len(option) == 1 else f"{option[0]}={option[1]}")
    return ",".join(raw)


def parse_tmpfs(destination: str, data: Any) -> MountPoint:
    """One ``HostConfig.Tmpfs`` entry (``--tmpfs /path:size=64m,mode=1777``)."""
    if not isinstance(data, str):
        raise InvalidArgument(f"invalid tmpfs options for {destination}: expected a string")
    target = destination.replace("\\", "/")
    if _clean(target) == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{destination}' mount path must be absolute")
    merge_tmpfs_options(split_options(data))
    return MountPoint(type="tmpfs", destination=_clean(target), tmpfs_data=data,
                      rw="ro" not in split_options(data), origin="tmpfs", in_inspect=False)


def parse_volumes_from(spec: Any) -> tuple[str, str]:
    """``CONTAINER[:ro|rw]`` -> (container, mode)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    container, _, mode = spec.partition(":")
    if not mode:
        return container, "rw"
    if not valid_mode(mode) or any(o in PROPAGATIONS or o in _COPY_MODES
                                   for o in mode.split(",")):
        raise InvalidArgument(f"invalid mode: {mode}")
    return container, mode


def duplicate(destination: str) -> InvalidArgument:
    return InvalidArgument(f"Duplicate mount point: {destination}")


def depth(destination: str) -> int:
    """Mount order: parents before children (Docker sorts by path depth)."""
    return _clean(destination).rstrip("/").count("/")
