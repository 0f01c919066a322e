"""Fixtures for the image-store tests: an ImageService on a private data
root and an event recorder."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.config import Config
from berth.events import EventBus
from berth.images import ImageService


class EventRecorder(EventBus):
    """An EventBus that also keeps every event, for assertions."""

    def actions(self, type_: str = "image") -> list[tuple[str, str]]:
        return [(e["Action"], e["Actor"]["Attributes"].get("name", ""))
                for e in self.history() if e["Type"] == type_]


@pytest.fixture
def events() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def root(workdir: Path) -> Path:
    path = workdir / "root"
    path.mkdir()
    return path


@pytest.fixture
def service(root: Path, events: EventRecorder):
    svc = ImageService(Config(root=str(root)), events)
    yield svc
    svc.close()


@pytest.fixture
def write(workdir: Path):
    """Write bytes to a file in the test's workdir; returns its path."""
    def _write(name: str, data: bytes) -> str:
        path = workdir / name
        path.write_bytes(data)
        return str(path)
    return _write
