"""Fixtures for the registry tests: registries (berth's server, Debian's
docker-registry, a fault-injecting fake) and an in-process image store with
a RegistryService, so tests can look at what a failed pull left behind."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from regkit import (BlobStore, FakeRegistry, htpasswd_line, start_berth_registry,  # noqa: E402
                    start_distribution)

from berth.config import Config  # noqa: E402
from berth.events import EventBus  # noqa: E402
from berth.images import ImageService  # noqa: E402
from berth.registry.client import Backoff  # noqa: E402
from berth.registry.hosts import RegistryOptions  # noqa: E402
from berth.registry.service import RegistryService  # noqa: E402


class Store:
    """An ImageService and a RegistryService on a private data root."""

    def __init__(self, root: Path, options: RegistryOptions | None = None, resolver=None,
                 downloads: int = 3):
        self.root = root
        self.events = EventBus()
        self.images = ImageService(Config(root=str(root)), self.events)
        self.registry = RegistryService(self.images, self.events, options or RegistryOptions(),
                                        resolver=resolver, max_concurrent_downloads=downloads,
                                        backoff=Backoff(attempts=3, base=0.01, cap=0.05))
        self.messages: list[dict] = []

    async def _send(self, message: dict) -> None:
        self.messages.append(message)

    def pull(self, reference: str, **kw):
        self.messages = []
        return asyncio.run(self.registry.pull(reference, send=self._send, **kw))

    def push(self, name: str, tag: str | None = None, **kw):
        self.messages = []
        return asyncio.run(self.registry.push(name, tag, send=self._send, **kw))

    def statuses(self) -> list[str]:
        return [m["status"] for m in self.messages if "status" in m]

    def leftovers(self) -> dict[str, list]:
        """What is in the store: images, committed blobs, snapshots, ingests."""
        return {
            "images": [i["Id"] for i in self.images.list(all=True)],
            "blobs": sorted(b.digest for b in self.images.content.walk()),
            "snapshots": [s.chain_id for s in self.images.snapshots.list()],
            "ingests": [i.ref for i in self.images.content.ingests()],
        }

    def close(self) -> None:
        self.images.close()


@pytest.fixture
def store(workdir):
    root = workdir / "store"
    root.mkdir()
    s = Store(root)
    yield s
    s.close()


@pytest.fixture
def make_store(workdir):
    made = []

    def make(name: str = "store2", **kw) -> Store:
        root = workdir / name
        root.mkdir()
        s = Store(root, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


@pytest.fixture
def fake_registry():
    registry = FakeRegistry().start()
    yield registry
    registry.stop()


@pytest.fixture
def blob_store(fake_registry):
    store = BlobStore(fake_registry).start()
    yield store
    store.stop()


@pytest.fixture
def berth_registry(workdir):
    registry = start_berth_registry(workdir)
    yield registry
    registry.stop()


@pytest.fixture
def htpasswd(workdir) -> Path:
    path = workdir / "htpasswd"
    path.write_text(htpasswd_line("alice", "s3cret") + htpasswd_line("bob", "hunter2"))
    return path


@pytest.fixture
def berth_registry_auth(workdir, htpasswd):
    registry = start_berth_registry(workdir, htpasswd)
    yield registry
    registry.stop()


@pytest.fixture
def distribution(workdir):
    registry = start_distribution(workdir)
    yield registry
    registry.stop()


@pytest.fixture
def distribution_auth(workdir, htpasswd):
    registry = start_distribution(workdir, htpasswd)
    yield registry
    registry.stop()
