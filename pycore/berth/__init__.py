"""berth: a container engine in the Docker mould.

Components live one per package (content, metadata, snapshots, images, events,
api, daemon); the Rust hot paths are in :mod:`berth._native`.
"""

__version__ = "0.1.0"
