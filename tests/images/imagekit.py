"""Builders for the image-store tests: layer tars, image configs and image
archives (docker-save, legacy and Docker 25+, and OCI layouts), made with
Python's tarfile so that nothing depends on a Docker engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path



def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[1]


def layer_tar(files: dict[str, bytes | str | None], *, symlinks: dict[str, str] | None = None,
              hardlinks: dict[str, str] | None = None) -> bytes:
    """A plain layer tar: ``files`` maps names to content (None = directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def image_config(diff_ids: list[str], *, cmd: list[str] | None = None,
                 labels: dict[str, str] | None = None, created: str = "2024-01-02T03:04:05.123456789Z",
                 history: list[dict] | None = None, arch: str = "amd64") -> bytes:
    config: dict = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if cmd is not None:
        config["Cmd"] = cmd
    if labels:
        config["Labels"] = labels
    doc = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history if history is not None else [
            {"created": created, "created_by": f"/bin/sh -c #(nop) layer {i}"}
            for i in range(len(diff_ids))],
    }
    return json.dumps(doc).encode()


@dataclass
class ImageFiles:
    """An image as files: layers (as stored), diff IDs, config bytes."""

    layers: list[bytes]                     # blobs as they go into the archive
    diff_ids: list[str]
    config: bytes
    tags: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return sha256(self.config)


def make_image(layer_files: list[dict[str, bytes | str | None]], *, gzip_layers: bool = False,
               tags: list[str] | None = None, **config_kw) -> ImageFiles:
    raw = [layer_tar(files) for files in layer_files]
    diff_ids = [sha256(r) for r in raw]
    blobs = [gzip.compress(r, mtime=0) if gzip_layers else r for r in raw]
    return ImageFiles(blobs, diff_ids, image_config(diff_ids, **config_kw), tags or [])


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def oci_manifest(image: ImageFiles, layer_media_type: str | None = None) -> bytes:
    def layer_type(blob: bytes) -> str:
        if layer_media_type:
            return layer_media_type
        return ("application/vnd.oci.image.layer.v1.tar+gzip" if blob[:2] == b"\x1f\x8b"
                else "application/vnd.oci.image.layer.v1.tar")
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(image.config), "size": len(image.config)},
        "layers": [{"mediaType": layer_type(b), "digest": sha256(b), "size": len(b)}
                   for b in image.layers],
    }).encode()


def docker_save_archive(images: list[ImageFiles], *, legacy: bool = True,
                        overrides: dict[str, bytes | None] | None = None) -> bytes:
    """A ``docker save`` archive. legacy: ``<id>/layer.tar`` + ``<hex>.json``
    (Docker < 25); otherwise Docker 25's blobs/ + index.json layout.
    ``overrides`` replaces (or with None, drops) members by name."""
    members: dict[str, bytes] = {}
    manifest = []
    index_entries = []
    for image in images:
        if legacy:
            config_name = hex_of(image.id) + ".json"
            layer_names = []
            for i, blob in enumerate(image.layers):
                layer_id = hashlib.sha256(f"{image.id}-{i}".encode()).hexdigest()
                layer_names.append(f"{layer_id}/layer.tar")
                members[f"{layer_id}/layer.tar"] = blob
                members[f"{layer_id}/VERSION"] = b"1.0"
                members[f"{layer_id}/json"] = b"{}"
        else:
            config_name = "blobs/sha256/" + hex_of(image.id)
            layer_names = ["blobs/sha256/" + hex_of(sha256(b)) for b in image.layers]
            for name, blob in zip(layer_names, image.layers):
                members[name] = blob
            m = oci_manifest(image)
            members["blobs/sha256/" + hex_of(sha256(m))] = m
            for tag in image.tags or [None]:
                entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "digest": sha256(m), "size": len(m)}
                if tag:
                    entry["annotations"] = {"io.containerd.image.name": tag,
                                            "org.opencontainers.image.ref.name": tag.split(":")[-1]}
                index_entries.append(entry)
        members[config_name] = image.config
        manifest.append({"Config": config_name, "RepoTags": image.tags or None,
                         "Layers": layer_names})
    members["manifest.json"] = json.dumps(manifest).encode()
    if not legacy:
        members["index.json"] = json.dumps({"schemaVersion": 2,
                                            "mediaType": "application/vnd.oci.image.index.v1+json",
                                            "manifests": index_entries}).encode()
        members["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    for name, data in (overrides or {}).items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            _add(tar, name, data)
    return buf.getvalue()


def oci_layout_archive(images: list[ImageFiles], *, index: dict | None = None,
                       extra_blobs: list[bytes] = (), overrides: dict[str, bytes | None] | None = None,
                       layer_media_type: str | None = None) -> bytes:
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    entries = []
    for image in images:
        m = oci_manifest(image, layer_media_type)
        for blob in [image.config, m, *image.layers]:
            members["blobs/sha256/" + hex_of(sha256(blob))] = blob
        for tag in image.tags or [None]:
            entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "digest": sha256(m), "size": len(m)}
            if tag:
                entry["annotations"] = {"io.containerd.image.name": tag,
                                        "org.opencontainers.image.ref.name": tag.split(":")[-1]}
            entries.append(entry)
    for blob in extra_blobs:
        members["blobs/sha256/" + hex_of(sha256(blob))] = blob
    members["index.json"] = json.dumps(index if index is not None else {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries}).encode()
    for name, data in (overrides or {}).items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            _add(tar, name, data)
    return buf.getvalue()


def store_is_empty(root: Path) -> bool:
    """No blob, snapshot, ingest or image registered under a data root."""
    blobs = list((root / "content" / "blobs" / "sha256").iterdir())
    ingests = list((root / "content" / "ingest").iterdir())
    snaps = list((root / "snapshots").iterdir())
    return not blobs and not ingests and not snaps


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
