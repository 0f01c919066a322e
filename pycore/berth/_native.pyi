"""Type stub of berth._native, the Rust extension (rust/native).

Every function releases the GIL while it does I/O or hashing.
"""

from typing import Optional, Sequence, TypedDict, Union

Buffer = Union[bytes, bytearray, memoryview]

class LayerError(Exception):
    """A layer could not be unpacked or packed: hostile entry, corrupt stream,
    digest mismatch. The message names the entry or the cause."""

class Sha256:
    """Streaming sha256 (SHA-NI when available)."""
    def __init__(self, data: Optional[Buffer] = None) -> None: ...
    def update(self, data: Buffer) -> None: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...
    def copy(self) -> "Sha256": ...

def sha256_file(path: str) -> str:
    """Hex sha256 of a file's content."""

def xxh3_64(data: Buffer, seed: int = 0) -> int: ...
def xxh3_128_hex(data: Buffer) -> str: ...

class UnpackResult(TypedDict):
    diff_id: str            # "sha256:<hex>" of the uncompressed tar stream
    digest: str             # "sha256:<hex>" of the bytes read (compressed stream)
    compressed_size: int    # bytes read from the source
    size: int               # sum of regular file sizes written
    entries: int            # tar entries processed
    compression: str        # "gzip" | "zstd" | "none" (detected)

def unpack_layer(
    source: Union[str, int],
    target: str,
    *,
    expected_digest: Optional[str] = None,
    expected_diff_id: Optional[str] = None,
) -> UnpackResult:
    """Unpack a layer tar (gzip, zstd or plain, detected by magic) from a file
    path or a readable fd into directory `target` (created if missing), turning
    OCI whiteouts into overlayfs form (``.wh.NAME`` -> 0:0 char device NAME,
    ``.wh..wh..opq`` -> ``trusted.overlay.opaque=y`` on the directory).

    Every entry is resolved inside `target` (openat2 RESOLVE_IN_ROOT): absolute
    names, ``..`` and symlinks are confined to the root, as Docker does; a hard
    link whose target is outside the layer root is refused. If
    `expected_digest` / `expected_diff_id` are given and do not match, raises
    LayerError after reading the whole stream (the caller removes `target`).
    Raises LayerError on a corrupt stream or hostile entry, naming it."""

def unpack_layers(
    jobs: Sequence[tuple[Union[str, int], str]],
    *,
    threads: int = 0,
) -> list[Union[UnpackResult, LayerError]]:
    """Unpack independent layers in parallel (threads=0: one per CPU). Each
    result is an UnpackResult or the LayerError of that job."""

class PackResult(TypedDict):
    diff_id: str            # "sha256:<hex>" of the uncompressed tar
    digest: str             # "sha256:<hex>" of the written (compressed) file
    size: int               # bytes written to `output`
    uncompressed_size: int

def pack_layer(
    source: str,
    output: str,
    *,
    compression: str = "gzip",      # "gzip" | "zstd" | "none"
    level: Optional[int] = None,
    overlay_upper: bool = False,
) -> PackResult:
    """Pack directory `source` into a reproducible tar (sorted names, numeric
    owners, PAX for long names and xattrs) at `output`, compressed as asked,
    hashing the tar and the compressed output in the same pass. With
    overlay_upper=True, overlayfs whiteouts (0:0 char devices, opaque xattrs)
    become OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``)."""
