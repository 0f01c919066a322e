"""Type stub of berth._native, the Rust extension (rust/native).

Every function releases the GIL while it does I/O or hashing.
"""

import os
from typing import Optional, Sequence, TypedDict, Union

Buffer = Union[bytes, bytearray, memoryview]

class LayerError(Exception):
    """A layer could not be unpacked or packed: hostile entry, corrupt stream,
    digest mismatch. The message names the entry or the cause."""

class Sha256:
    """Streaming sha256 (SHA-NI when available), hashlib-compatible: accepts
    any C-contiguous buffer; digest()/hexdigest() do not end the stream."""
    name: str               # "sha256"
    digest_size: int        # 32
    block_size: int         # 64
    def __init__(self, data: Optional[Buffer] = None) -> None: ...
    def update(self, data: Buffer) -> None: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...
    def copy(self) -> "Sha256": ...

def sha256_file(path: Union[str, "os.PathLike[str]"]) -> str:
    """Hex sha256 of a file's content. Raises OSError (FileNotFoundError...)."""

def xxh3_64(data: Buffer, seed: int = 0) -> int: ...
def xxh3_128_hex(data: Buffer) -> str: ...

class UnpackResult(TypedDict):
    diff_id: str            # "sha256:<hex>" of the uncompressed tar stream
    digest: Optional[str]   # "sha256:<hex>" of the bytes read (compressed stream); None with source_digest=False
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
    file_workers: Optional[int] = None,
    source_digest: bool = True,
) -> UnpackResult:
    """Unpack a layer tar (gzip, zstd or plain, detected by magic) from a file
    path or a readable fd (a file or a pipe; the fd stays open and the caller's)
    into directory `target` (created if missing), turning OCI whiteouts into
    overlayfs form (``.wh.NAME`` -> 0:0 char device NAME, ``.wh..wh..opq`` ->
    ``trusted.overlay.opaque=y`` on the directory). A later entry replaces an
    earlier one of the same name; a directory over a directory merges.

    Every entry is resolved inside `target` (openat2 RESOLVE_IN_ROOT): absolute
    names, ``..`` and symlinks are confined to the root, as Docker does; a
    parent path whose symlink dangles or loops once resolved inside the root is
    refused; a hard link whose target is not inside the root is refused.
    ``trusted.overlay.*`` xattrs carried by the tar itself are dropped.
    If `expected_digest` / `expected_diff_id` are given and do not match, raises
    LayerError after reading the whole stream (the caller removes `target`).
    Raises LayerError on a corrupt or truncated stream or a hostile entry,
    naming it (``tar entry "a/b": ...``); ValueError for a malformed expected
    digest (before anything is written); TypeError/OSError for a bad source.

    `file_workers`: threads that create small files beside the parser (0:
    none); by default, the CPUs a layer leaves idle, used only while the
    layers being unpacked leave CPUs idle. The tree is the same either way.

    `source_digest=False`: the bytes read are not hashed (for a caller that
    hashes them itself as it feeds them, so a download is hashed once);
    ``digest`` is then None and `expected_digest` is refused (ValueError)."""

class UnpackOptions(TypedDict, total=False):
    expected_digest: Optional[str]
    expected_diff_id: Optional[str]
    file_workers: Optional[int]
    source_digest: bool

def unpack_layers(
    jobs: Sequence[Union[tuple[Union[str, int], str], tuple[Union[str, int], str, UnpackOptions]]],
    *,
    threads: int = 0,
) -> list[Union[UnpackResult, LayerError]]:
    """Unpack independent layers in parallel (threads=0: one per CPU; largest
    first). A job is (source, target) or (source, target, options) with the
    keyword arguments of unpack_layer. Each result, in job order, is an
    UnpackResult or the LayerError (ValueError for a malformed digest) of
    that job."""

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
