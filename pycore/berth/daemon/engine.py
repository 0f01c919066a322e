"""The daemon's services, created once at start and closed at shutdown.

API handlers reach every component through an :class:`Engine`: the event bus
and the image store now; the container runtime, networks and volumes plug in
here as they land, so handlers never construct services themselves.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import time
import uuid

from berth.config import Config
from berth.events import EventBus

log = logging.getLogger("berth.daemon")

UPLOAD_PREFIX = "api-upload-"


class Engine:
    def __init__(self, config: Config, debug: bool = False, network_options=None):
        self.config = config
        self.debug = debug
        # berth.networks.NetworkOptions from berthd's flags (None: defaults and env)
        self.network_options = network_options
        self.events = EventBus()
        self.db = None  # berth.metadata.Database shared by the services, set by start()
        self.images = None  # berth.images.ImageService, set by start()
        self.containers = None  # berth.containers.ContainerService, set by start()
        self.volumes = None  # berth.volumes.VolumeService, set by start()
        self.builder = None  # berth.builder.BuildService, set by start()
        self.id = ""
        self.started_at = time.time()

    def start(self) -> None:
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        self._remove_stale_uploads()
        self.id = self._load_engine_id()
        # Imported here so that `berthd --help` and argument errors stay fast.
        from berth.containers import ContainerService
        from berth.images import ImageService
        from berth.metadata import Database
        self.db = Database(self.config.path("metadata.db"))
        self.images = ImageService(self.config, self.events, self.db)
        # Volumes are looked up when needed: that service may be created after this one.
        from berth.networks import NetworkService
        networks = NetworkService(self.config, self.events, self.db, options=self.network_options,
                                  containers=lambda name: self.containers.get(name))
        self.containers = ContainerService(self.config, self.events, self.images, self.db,
                                           volumes=lambda: getattr(self, "volumes", None),
                                           networks=networks)
        from berth.volumes import VolumeService
        self.volumes = VolumeService(self.config, self.events, self.db)
        self.volumes.set_container_resolver(lambda name: self.containers.get(name).id)
        # Created now so that its cache protects its layers from the first gc on.
        from berth.builder import BuildService
        self.builder = BuildService(self.config, self.images, self.events, self.db)

    async def start_background(self) -> None:
        """On the event loop once the services exist: reconcile containers with
        their monitors, re-arm exit watchers and restart policies."""
        if self.containers is not None:
            await self.containers.start_background()

    async def stop_background(self) -> None:
        if self.containers is not None:
            await self.containers.stop_background()

    def close(self) -> None:
        if self.builder is not None:
            self.builder.close()
            self.builder = None
        if self.volumes is not None:
            self.volumes.close()
            self.volumes = None
        if self.containers is not None:
            self.containers.close()
            self.containers = None
        if self.images is not None:
            self.images.close()
            self.images = None
        if self.db is not None:
            self.db.close()
            self.db = None

    @property
    def tmp_dir(self) -> str:
        return self.config.path("tmp")

    def upload_file(self) -> tuple[int, str]:
        """A private temp file in the data root for a request body (same
        filesystem as the store, so the services can rename from it)."""
        return tempfile.mkstemp(prefix=UPLOAD_PREFIX, dir=self.tmp_dir)

    def _remove_stale_uploads(self) -> None:
        # Bodies spooled by a daemon that crashed mid-request.
        for path in glob.glob(os.path.join(self.tmp_dir, UPLOAD_PREFIX + "*")):
            try:
                os.unlink(path)
            except OSError as exc:
                log.warning("cannot remove stale upload %s: %s", path, exc)

    def _load_engine_id(self) -> str:
        """A stable identity for this data root (Docker's Info.ID)."""
        path = self.config.path("engine-id")
        try:
            with open(path) as f:
                value = f.read().strip()
            if value:
                return value
        except FileNotFoundError:
            pass
        value = str(uuid.uuid4()).upper()
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        return value

    def container_counts(self) -> dict[str, int]:
        """Containers by state for /info."""
        if self.containers is None:
            return {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
                    "ContainersStopped": 0}
        return self.containers.counts()
