"""``docker commit``: a container's overlay upper dir packed as one new layer
on top of its image, with the container's config (after ``--change``) as the
new image's config and one more history entry.

The runtime's mount points (``/etc/hosts``... created empty in the upper dir
at start) are not the container's changes: Docker keeps them in a separate
"init" layer. When the upper dir has any, the layer is packed from a staging
tree of hard links that leaves them (and directories copied up only for
them) out, so an unchanged container commits no layer at all.
"""

from __future__ import annotations

import copy
import errno
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Any

from berth import _native
from berth.images import LayerBlob
from berth.images import mediatypes as mt
from berth.images.changes import apply_changes
from berth.images.manifest import canonical_json
from berth.images.timefmt import format_rfc3339nano, now_ns
from berth.volumes.changes import (RUNTIME_MOUNT_POINTS, ImageLayers, is_opaque, is_placeholder)
from berth.volumes.rootview import RootView

#: diffID of a tar with no entries: the layer Docker leaves out of a commit.
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


@dataclass
class CommitRequest:
    container_id: str
    image_id: str
    upperdir: str
    lowerdirs: list[str]                 # the image's layers, top first
    container_config: dict[str, Any]     # the container's Config (Cmd, Env, ...)
    config: dict[str, Any] | None = None  # the request body: replaces it when given
    changes: tuple[str, ...] = ()
    comment: str = ""
    author: str = ""
    tag: str | None = None               # "repo:tag" to give the new image


def merge_config(user: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Docker's commit merge: what the committed config leaves unset comes
    from the container's config (env by key, labels and ports by name)."""
    out = copy.deepcopy(user)
    if not out.get("User"):
        out["User"] = base.get("User", "")
    ports = dict(base.get("ExposedPorts") or {})
    ports.update(out.get("ExposedPorts") or {})
    if ports:
        out["ExposedPorts"] = ports
    if not out.get("Env"):
        out["Env"] = base.get("Env")
    else:
        keys = {e.split("=", 1)[0] for e in out["Env"]}
        out["Env"] = list(out["Env"]) + [e for e in base.get("Env") or []
                                         if e.split("=", 1)[0] not in keys]
    labels = dict(base.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = base.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = base.get("Entrypoint")
    if base.get("Healthcheck") and not out.get("Healthcheck"):
        out["Healthcheck"] = base["Healthcheck"]
    if not out.get("WorkingDir"):
        out["WorkingDir"] = base.get("WorkingDir", "")
    volumes = dict(out.get("Volumes") or {})
    volumes.update(base.get("Volumes") or {})
    out["Volumes"] = volumes or None
    if not out.get("StopSignal") and base.get("StopSignal"):
        out["StopSignal"] = base["StopSignal"]
    return out


def commit(images: Any, tmp_dir: str, req: CommitRequest) -> str:
    """Pack, store and register the new image; returns its ID. Nothing is
    registered on failure (the packed blob is removed with the lease)."""
    parent = images.image_config(req.image_id).raw
    parent_layers: list[LayerBlob] = images.image_layers(req.image_id)
    docker_types = any(layer.media_type.startswith("application/vnd.docker")
                       for layer in parent_layers)
    user = apply_changes(copy.deepcopy(req.config or req.container_config), list(req.changes))
    new_config = merge_config(user, req.container_config)

    created = format_rfc3339nano(now_ns())
    fd, packed = tempfile.mkstemp(prefix="commit-", suffix=".tar.gz", dir=tmp_dir)
    os.close(fd)
    staging = None
    try:
        staging = _staging_tree(req.upperdir, req.lowerdirs, tmp_dir)
        result = _native.pack_layer(staging or req.upperdir, packed, compression="gzip",
                                    overlay_upper=True)
        empty = result["diff_id"] == EMPTY_LAYER_DIFF_ID
        history: dict[str, Any] = {"created": created}
        if req.author:
            history["author"] = req.author
        history["created_by"] = " ".join(req.container_config.get("Cmd") or [])
        if req.comment:
            history["comment"] = req.comment
        if empty:
            history["empty_layer"] = True
        diff_ids = list((parent.get("rootfs") or {}).get("diff_ids") or [])
        layers = list(parent_layers)
        with images.lease() as lease:
            if not empty:
                lease.add_blob(result["digest"])
                if not images.content.exists(result["digest"]):
                    with open(packed, "rb") as f:
                        images.content.ingest(f, expected=result["digest"], size=result["size"])
                diff_ids.append(result["diff_id"])
                layers.append(LayerBlob(result["digest"],
                                        mt.DOCKER_LAYER_GZIP if docker_types else mt.OCI_LAYER_GZIP,
                                        result["size"], result["diff_id"]))
            config: dict[str, Any] = {}
            if req.author:
                config["author"] = req.author
            if req.comment:
                config["comment"] = req.comment
            config["architecture"] = parent.get("architecture", "amd64")
            if parent.get("variant"):
                config["variant"] = parent["variant"]
            config["os"] = parent.get("os", "linux")
            for key in ("os.version", "os.features"):
                if parent.get(key):
                    config[key] = parent[key]
            config["config"] = new_config
            config["container"] = req.container_id
            config["container_config"] = req.container_config
            config["created"] = created
            config["history"] = list(parent.get("history") or []) + [history]
            config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            return images.register_image(
                canonical_json(config), layers,
                config_media_type=mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG,
                parent=req.image_id, tags=[req.tag] if req.tag else ())
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        try:
            os.unlink(packed)
        except FileNotFoundError:
            pass


def _staging_tree(upperdir: str, lowerdirs: list[str], tmp_dir: str) -> str | None:
    """A copy of ``upperdir`` (hard links, same filesystem) without the
    runtime's mount points, or None when there is nothing to leave out."""
    layers = [d for d in lowerdirs if os.path.isdir(d)]
    view = RootView.of_layers(tmp_dir, layers, readonly=True, description="image") \
        if layers else None
    try:
        image = ImageLayers(view)
        keep = _kept_entries(upperdir, image)
    finally:
        if view is not None:
            view.close()
    if keep is None:
        return None
    staging = tempfile.mkdtemp(prefix="commit-layer-", dir=tmp_dir)
    try:
        for rel in sorted(keep):
            _stage(upperdir, staging, rel)
        # Last, children first: linking into a directory changes its mtime.
        for rel in sorted(keep, reverse=True):
            st = os.lstat(os.path.join(upperdir, rel))
            if stat.S_ISDIR(st.st_mode):
                os.utime(os.path.join(staging, rel), ns=(st.st_atime_ns, st.st_mtime_ns))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _kept_entries(upperdir: str, image: ImageLayers) -> set[str] | None:
    """Relative paths of the upper dir that belong in the layer; None when
    that is all of them."""
    keep: set[str] = set()
    dropped = False

    def visit(dirfd: int, rel: str) -> bool:
        """True when something below ``rel`` is kept."""
        nonlocal dropped
        kept_any = False
        for name in sorted(os.listdir(dirfd)):
            path = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            lower = image.stat("/" + path)
            if "/" + path in RUNTIME_MOUNT_POINTS and lower is None \
                    and is_placeholder(dirfd, name, st):
                dropped = True
                continue
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dirfd)
                try:
                    below = visit(child, path)
                finally:
                    os.close(child)
                same = lower is not None and stat.S_ISDIR(lower.st_mode) \
                    and stat.S_IMODE(lower.st_mode) == stat.S_IMODE(st.st_mode) \
                    and (lower.st_uid, lower.st_gid) == (st.st_uid, st.st_gid)
                if below or not same or is_opaque(dirfd, name):
                    keep.add(path)
                    kept_any = True
                else:
                    dropped = True
            else:
                keep.add(path)
                kept_any = True
        return kept_any

    root = os.open(upperdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        visit(root, "")
    finally:
        os.close(root)
    return keep if dropped else None


def _stage(upperdir: str, staging: str, rel: str) -> None:
    src = os.path.join(upperdir, rel)
    dst = os.path.join(staging, rel)
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst)
        for key in os.listxattr(src, follow_symlinks=False):
            os.setxattr(dst, key, os.getxattr(src, key, follow_symlinks=False),
                        follow_symlinks=False)
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        return
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    # The data root spans filesystems: a copy instead of a link.
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    else:
        os.mknod(dst, st.st_mode, st.st_rdev)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
