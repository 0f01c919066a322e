"""``docker commit``: a container's overlay upper dir packed as one new layer
on top of its image, with the container's config (after ``--change``) as the
new image's config and one more history entry.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from berth import _native
from berth.images import LayerBlob
from berth.images import mediatypes as mt
from berth.images.changes import apply_changes
from berth.images.manifest import canonical_json
from berth.images.timefmt import format_rfc3339nano, now_ns

#: diffID of a tar with no entries: the layer Docker leaves out of a commit.
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


@dataclass
class CommitRequest:
    container_id: str
    image_id: str
    upperdir: str
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
    try:
        result = _native.pack_layer(req.upperdir, packed, compression="gzip", overlay_upper=True)
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
        try:
            os.unlink(packed)
        except FileNotFoundError:
            pass
