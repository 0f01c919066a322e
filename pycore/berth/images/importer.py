"""Reading a ``docker import`` source into a content ingest.

gzip, zstd and plain tars are kept byte for byte (the native unpacker reads
them); bzip2 and xz, which it does not, are decompressed here into a plain
tar once.
"""

from __future__ import annotations

import bz2
import lzma
from typing import BinaryIO

from berth.content import Writer
from berth.errors import InvalidArgument
from berth.images.mediatypes import sniff_compression

CHUNK = 1 << 20


def read_head(stream: BinaryIO, n: int = 6) -> bytes:
    """Up to ``n`` first bytes of a stream (short reads allowed by pipes)."""
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def copy_layer_source(source: str | BinaryIO, writer: Writer) -> str:
    """Copy a layer (a path or a stream) into ``writer``; returns the
    compression of what was stored: "gzip", "zstd" or "none"."""
    if isinstance(source, str):
        try:
            stream: BinaryIO = open(source, "rb")
        except FileNotFoundError:
            raise InvalidArgument(f"import source {source}: no such file") from None
        except IsADirectoryError:
            raise InvalidArgument(f"import source {source}: is a directory") from None
    else:
        stream = source
    try:
        head = read_head(stream)
        if not head:
            raise InvalidArgument("import source is empty: expected a tar archive")
        compression = sniff_compression(head)
        if compression in ("bzip2", "xz"):
            decompressor = bz2.BZ2Decompressor() if compression == "bzip2" else lzma.LZMADecompressor()
            try:
                writer.write(decompressor.decompress(head))
                while chunk := stream.read(CHUNK):
                    writer.write(decompressor.decompress(chunk))
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise InvalidArgument(f"import source: corrupt {compression} stream: {e}") from None
            if not decompressor.eof:
                raise InvalidArgument(f"import source: truncated {compression} stream")
            return "none"
        writer.write(head)
        writer.copy_from(stream)
        return compression
    finally:
        if stream is not source:
            stream.close()
