"""Container records: what berth knows of a container, kept in the metadata
database (``containers`` component) and mirrored in memory by the service.

A :class:`Container` is what other components get from
``ContainerService.get(name_or_id)``: its attributes are public and read-only
for them (``id``, ``name``, ``image_id``, ``bundle``, ``upperdir``,
``workdir``, ``lowerdirs``, ``rootfs``, ``mounts``, ``state``, ``pid``,
``config``, ``host_config``...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from berth.images.timefmt import format_rfc3339nano

MIGRATIONS = [
    """
    CREATE TABLE containers (
        id          TEXT PRIMARY KEY,           -- 64 hex
        name        TEXT NOT NULL UNIQUE,       -- without the leading '/'
        image_id    TEXT NOT NULL,
        created_ns  INTEGER NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0, -- 0 while create is still setting up
        record      TEXT NOT NULL               -- the rest, JSON (see Container.to_record)
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
]

#: Docker's State.Status values.
CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "created", "running", "paused", "restarting", "removing", "exited", "dead")
STATUSES = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)


@dataclass
class State:
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_ns: int | None = None
    finished_ns: int | None = None
    #: `docker stop`/`kill` by a user: restart policies leave the container alone.
    manually_stopped: bool = False
    has_been_started: bool = False

    @property
    def running(self) -> bool:
        """Docker's State.Running: a paused container is still running."""
        return self.status in (RUNNING, PAUSED)

    def inspect(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "Running": self.running,
            "Paused": self.status == PAUSED,
            "Restarting": self.status == RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == DEAD,
            "Pid": self.pid if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": format_rfc3339nano(self.started_ns),
            "FinishedAt": format_rfc3339nano(self.finished_ns),
        }


@dataclass
class Container:
    id: str
    name: str                      # without the leading '/'
    image_id: str                  # sha256:...
    created_ns: int
    config: dict[str, Any]         # Docker's Config, merged with the image's
    host_config: dict[str, Any]    # Docker's HostConfig, normalised
    path: str                      # Path and Args: the command, as inspect shows it
    args: list[str]
    bundle: str                    # <root>/containers/<id>
    layers: list[str]              # the image's snapshot chain IDs (base first)
    lowerdirs: list[str]           # overlay lowerdirs (top first)
    #: Spec mounts prepared by the volumes service at create (applied at each start).
    spec_mounts: list[dict[str, Any]] = field(default_factory=list)
    #: Inspect's "Mounts" (MountPoint shape), from the volumes service.
    mounts: list[dict[str, Any]] = field(default_factory=list)
    networking_config: dict[str, Any] = field(default_factory=dict)
    state: State = field(default_factory=State)
    restart_count: int = 0

    # -- paths ---------------------------------------------------------------
    @property
    def upperdir(self) -> str:
        return os.path.join(self.bundle, "upper")

    @property
    def workdir(self) -> str:
        return os.path.join(self.bundle, "work")

    @property
    def rootfs(self) -> str:
        """Where the rootfs is mounted: in the container's own mount namespace
        while it runs, on the host while ``ContainerService.mount_rootfs`` holds it."""
        return os.path.join(self.bundle, "rootfs")

    @property
    def log_path(self) -> str:
        if (self.host_config.get("LogConfig") or {}).get("Type") == "none":
            return ""
        return os.path.join(self.bundle, f"{self.id}-json.log")

    @property
    def hosts_path(self) -> str:
        return os.path.join(self.bundle, "hosts")

    @property
    def hostname_path(self) -> str:
        return os.path.join(self.bundle, "hostname")

    @property
    def resolv_conf_path(self) -> str:
        return os.path.join(self.bundle, "resolv.conf")

    # -- state shortcuts -----------------------------------------------------
    @property
    def status(self) -> str:
        return self.state.status

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def pid(self) -> int:
        return self.state.pid if self.state.running else 0

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def image(self) -> str:
        """The image as the user named it (Config.Image)."""
        return self.config.get("Image") or self.image_id

    @property
    def labels(self) -> dict[str, str]:
        return self.config.get("Labels") or {}

    @property
    def restart_policy(self) -> tuple[str, int]:
        p = self.host_config.get("RestartPolicy") or {}
        return (p.get("Name") or "no"), int(p.get("MaximumRetryCount") or 0)

    @property
    def created(self) -> str:
        return format_rfc3339nano(self.created_ns)

    def event_attributes(self, **extra: str) -> dict[str, str]:
        """Docker's container event attributes: labels, image, name, extras."""
        attrs = dict(self.labels)
        attrs.update(image=self.image, name=self.name)
        attrs.update(extra)
        return attrs

    # -- persistence ---------------------------------------------------------
    _RECORD_FIELDS = ("config", "host_config", "path", "args", "bundle", "layers", "lowerdirs",
                      "spec_mounts", "mounts", "networking_config", "restart_count")

    def to_record(self) -> str:
        data = {k: getattr(self, k) for k in self._RECORD_FIELDS}
        data["state"] = dict(vars(self.state))  # flat: asdict's deep copy is not needed
        return json.dumps(data)

    @classmethod
    def from_row(cls, row) -> "Container":
        data = json.loads(row["record"])
        state = State(**data.pop("state"))
        return cls(id=row["id"], name=row["name"], image_id=row["image_id"],
                   created_ns=row["created_ns"], state=state, **data)
