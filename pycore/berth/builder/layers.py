"""Turning a layer directory (an overlay upper dir, or what COPY wrote) into a
layer of the image store: one pass of the Rust packer gives the tar blob,
its diff ID and digest; the blob goes into the content store; the directory
itself becomes the layer's snapshot (it already has the snapshot's form:
overlayfs whiteouts, opaque directories), so nothing is unpacked again.

Blobs are plain tar, as Docker keeps layers locally: the packer writes them
at disk speed, and ``save`` hands them to ``docker load`` as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile

from berth import _native
from berth.images import LayerBlob, Lease
from berth.images import mediatypes as mt
from berth.snapshots import chain_id

log = logging.getLogger("berth.builder")

LAYER_MEDIA_TYPE = mt.DOCKER_LAYER


def is_empty(directory: str) -> bool:
    with os.scandir(directory) as it:
        return next(it, None) is None


def tree_size(directory: str) -> int:
    """Bytes of regular files below ``directory`` (hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [directory]
    while stack:
        path = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_size
    return total


class LayerCommitter:
    def __init__(self, images, tmp_dir: str):
        self.images = images
        self.tmp_dir = tmp_dir

    def commit(self, layer_dir: str, parent_chain: str | None, lease: Lease,
               size: int | None = None) -> LayerBlob | None:
        """Pack ``layer_dir`` and make it the snapshot of the new layer on top
        of ``parent_chain``. Returns None (and removes the directory) when the
        layer is empty: the step then adds no layer, as in Docker. The blob
        and snapshot are held by ``lease`` until an image references them."""
        if is_empty(layer_dir):
            shutil.rmtree(layer_dir, ignore_errors=True)
            return None
        content = self.images.content
        fd, tmp = tempfile.mkstemp(prefix="build-layer-", dir=self.tmp_dir)
        os.close(fd)
        try:
            result = _native.pack_layer(layer_dir, tmp, compression="none", overlay_upper=True)
            digest = result["digest"]
            lease.add_blob(digest)
            if content.exists(digest):
                os.unlink(tmp)
            else:
                self._commit_blob(tmp, content.path(digest))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        layer = LayerBlob(digest, LAYER_MEDIA_TYPE, result["size"], result["diff_id"])
        chain = chain_id(parent_chain, layer.diff_id)
        if size is None:
            size = tree_size(layer_dir)
        self._adopt(layer_dir, chain, parent_chain, layer.diff_id, size, lease)
        return layer

    @staticmethod
    def _commit_blob(tmp: str, final: str) -> None:
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o444)
        os.rename(tmp, final)
        dfd = os.open(os.path.dirname(final), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _adopt(self, layer_dir: str, chain: str, parent: str | None, diff_id: str, size: int,
               lease: Lease) -> None:
        """Rename the layer directory into the snapshot store. The store has no
        public "adopt" yet; without its internals, the directory is dropped and
        the snapshot is unpacked from the blob when the image is registered."""
        store = self.images.snapshots
        locks = getattr(store, "_locks", None)
        commit = getattr(store, "_commit", None)
        new_tmp = getattr(store, "_new_tmp", None)
        drop_tmp = getattr(store, "_drop_tmp", None)
        if None in (locks, commit, new_tmp, drop_tmp):
            shutil.rmtree(layer_dir, ignore_errors=True)
            return
        with locks.hold([chain]):
            lease.add_snapshot(chain)
            if store.exists(chain):
                shutil.rmtree(layer_dir, ignore_errors=True)
                return
            tmp = new_tmp()
            try:
                os.rename(layer_dir, tmp)
                commit(tmp, chain, parent, diff_id, size)
            finally:
                drop_tmp(tmp)
