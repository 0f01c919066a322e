"""Snapshots: unpacked layers keyed by chain ID, used as overlay lowerdirs.

Public interface: :class:`SnapshotStore` (``prepare``, ``prepare_many``,
``get``, ``exists``, ``list``, ``lowerdirs``, ``remove``, ``orphans``),
:class:`Snapshot`, :class:`LayerJob`, :func:`chain_id`, :func:`chain_ids`.
"""

from berth.snapshots.store import LayerJob, Snapshot, SnapshotStore, chain_id, chain_ids

__all__ = ["LayerJob", "Snapshot", "SnapshotStore", "chain_id", "chain_ids"]
