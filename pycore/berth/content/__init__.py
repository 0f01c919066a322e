"""Content store: immutable blobs addressed by sha256 digest.

Public interface: :class:`ContentStore` (ingest -> verify -> commit, open,
path, exists, info, delete, walk), :class:`Writer`, :class:`BlobInfo` and the
digest helpers.
"""

from berth.content.store import (
    BlobInfo,
    ContentStore,
    IngestStatus,
    Writer,
    digest_bytes,
    parse_digest,
)

__all__ = ["BlobInfo", "ContentStore", "IngestStatus", "Writer", "digest_bytes", "parse_digest"]
