"""Leases: what an operation in progress holds on to.

Garbage collection and image deletion never remove a blob or a snapshot
that a lease holds; the operation that took the lease removes, when it
releases it, whatever it held that no image ended up referencing (so a
failed load or import leaves nothing behind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.images.service import ImageService


class Lease:
    """Protects blobs and snapshots an operation is working on from garbage
    collection. Lease a blob *before* committing it. On release, whatever it
    held that no image references is removed (unless ``cleanup`` is off)."""

    def __init__(self, service: "ImageService", cleanup: bool = True):
        self._svc = service
        self.cleanup = cleanup
        self.blobs: set[str] = set()
        self.snapshots: set[str] = set()
        self._released = False

    def add_blob(self, digest: str) -> None:
        with self._svc._lease_lock:
            if digest not in self.blobs:
                self.blobs.add(digest)
                self._svc._leased_blobs[digest] += 1

    def add_snapshot(self, chain: str) -> None:
        with self._svc._lease_lock:
            if chain not in self.snapshots:
                self.snapshots.add(chain)
                self._svc._leased_snapshots[chain] += 1

    def release(self) -> int:
        """Drop the lease; returns bytes freed by its cleanup."""
        if self._released:
            return 0
        self._released = True
        with self._svc._lease_lock:
            for d in self.blobs:
                self._svc._leased_blobs[d] -= 1
                if self._svc._leased_blobs[d] <= 0:
                    del self._svc._leased_blobs[d]
            for c in self.snapshots:
                self._svc._leased_snapshots[c] -= 1
                if self._svc._leased_snapshots[c] <= 0:
                    del self._svc._leased_snapshots[c]
        if not self.cleanup:
            return 0
        freed, _ = self._svc._sweep(self.blobs, self._svc._top_first(self.snapshots))
        return freed

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
