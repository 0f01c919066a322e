"""Image archives: ``docker load`` and ``docker save``.

Load accepts, plain or compressed (gzip, bzip2, xz, zstd):
- ``docker save`` archives: ``manifest.json`` naming each image's config and
  layer files (legacy ``<id>/layer.tar`` or Docker 25+ ``blobs/sha256/...``);
- OCI image layouts: ``oci-layout``, ``index.json`` and ``blobs/``.

The archive is read once, as a stream: every regular file is spooled into a
content ingest while it is hashed, so nothing is extracted by name and no
file lands outside the content store. Only after every manifest, config,
digest and layer checks out are the ingests committed and the images
registered; otherwise the ingests are dropped and nothing stays behind.

Save writes what Docker 25 writes, so old and new ``docker load`` both take
it: ``blobs/sha256/*``, ``index.json``, ``manifest.json``, ``oci-layout``,
``repositories``; streamed, blob by blob.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import zstandard

from berth.content import ContentStore, Writer, digest_bytes, parse_digest
from berth.errors import InvalidArgument, NotFound
from berth.images import mediatypes as mt
from berth.images.importer import read_head
from berth.images.manifest import (Descriptor, Index, build_index, canonical_json, parse_config,
                                   parse_index, parse_json, parse_manifest, platform_matches,
                                   platform_string)
from berth.images.reference import Reference, parse_any, parse_normalized

from berth.images.staging import StagedBlob, StagedImage, StagedLayer

if TYPE_CHECKING:
    from berth.images.service import ImageService

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
MAX_INDEX_DEPTH = 8
MAX_LINK_DEPTH = 16
MAX_JSON = 16 << 20
_BLOB_NAME_RE = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_LEGACY_CONFIG_RE = re.compile(r"^([a-f0-9]{64})\.json$")


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid image archive: {message}")


class _Prefixed:
    """A read-only stream: ``head`` bytes, then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._stream.read(n)


def _clean_name(name: str) -> str:
    """An archive member name relative to the archive root. Nothing is ever
    extracted by name, but a manifest must not reach outside the archive."""
    rel = posixpath.normpath(name.lstrip("/")) if name else "."
    if rel == ".":
        return ""
    if rel == ".." or rel.startswith("../"):
        raise _invalid(f"entry {name!r} points outside the archive")
    return rel


class _Spool:
    """The archive's regular files as content ingests, by cleaned name."""

    def __init__(self, content: ContentStore):
        self._content = content
        self.files: dict[str, Writer] = {}
        self.links: dict[str, str] = {}

    def read_archive(self, source: str | BinaryIO) -> None:
        stream: BinaryIO = open(source, "rb") if isinstance(source, str) else source
        try:
            head = read_head(stream, 6)
            if not head:
                raise _invalid("the archive is empty")
            reader: Any = _Prefixed(head, stream)
            if mt.sniff_compression(head) == "zstd":
                reader = zstandard.ZstdDecompressor().stream_reader(reader)
            try:
                with tarfile.open(fileobj=reader, mode="r|*") as tar:
                    for member in tar:
                        self._add(tar, member)
            except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
                    zstandard.ZstdError) as e:
                raise _invalid(f"cannot read the tar stream: {e}") from None
            except OSError as e:
                if e.errno is not None:
                    raise
                raise _invalid(f"cannot read the tar stream: {e}") from None
        finally:
            if stream is not source:
                stream.close()

    def _add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _clean_name(member.name)
        if member.isdir() or not name:
            return
        if member.issym():
            target = member.linkname
            base = "" if target.startswith("/") else posixpath.dirname(name)
            self.links[name] = posixpath.normpath(posixpath.join("/", base, target)).lstrip("/")
            self._drop(name)
        elif member.islnk():
            self.links[name] = _clean_name(member.linkname)
            self._drop(name)
        elif member.isfile():
            self._drop(name)
            self.links.pop(name, None)
            writer = self._content.writer()
            self.files[name] = writer
            source = tar.extractfile(member)
            assert source is not None
            writer.copy_from(source, member.size)
            writer.finish()
        # Devices, fifos ...: not part of any image archive format; ignored.

    def _drop(self, name: str) -> None:
        old = self.files.pop(name, None)
        if old is not None:
            old.abort()

    def has(self, name: str) -> bool:
        return self.lookup(name) is not None

    def lookup(self, name: str) -> Writer | None:
        name = _clean_name(name)
        for _ in range(MAX_LINK_DEPTH):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                return None
            name = self.links[name]
        raise _invalid(f"too many levels of links at {name!r}")

    def require(self, name: str, what: str) -> Writer:
        writer = self.lookup(name)
        if writer is None:
            raise _invalid(f"{what} {name} is missing from the archive")
        return writer

    def read(self, name: str, what: str) -> bytes:
        writer = self.require(name, what)
        if writer.offset > MAX_JSON:
            raise _invalid(f"{what} {name} is too large ({writer.offset} bytes)")
        with open(writer.path, "rb") as f:
            return f.read()

    def close(self) -> None:
        """Drop every ingest that was not committed."""
        for writer in self.files.values():
            writer.abort()


def _check_claimed_digest(name: str, writer: Writer) -> None:
    """A file named after a digest (``blobs/sha256/<hex>``, ``<hex>.json``)
    must have that digest."""
    m = _BLOB_NAME_RE.match(_clean_name(name)) or _LEGACY_CONFIG_RE.match(_clean_name(name))
    if m and writer.digest() != f"sha256:{m.group(1)}":
        raise _invalid(f"digest mismatch for {name}: expected sha256:{m.group(1)}, "
                       f"got {writer.digest()}")


def _layer_media_type(writer: Writer, name: str) -> str:
    with open(writer.path, "rb") as f:
        head = f.read(6)
    compression = mt.sniff_compression(head)
    if compression not in mt.OCI_LAYER_BY_COMPRESSION:
        raise _invalid(f"layer {name} is {compression}-compressed, which is not supported for layers")
    return mt.OCI_LAYER_BY_COMPRESSION[compression]


def _parse_tag(value: Any, what: str) -> Reference:
    if not isinstance(value, str):
        raise _invalid(f"{what}: tag {value!r} is not a string")
    try:
        ref = parse_normalized(value)
    except InvalidArgument as e:
        raise _invalid(f"{what}: invalid tag {value!r}: {e.message}") from None
    if ref.digest is not None:
        raise _invalid(f"{what}: {value!r} is a digest reference, not a tag")
    return ref.tag_name_only()


# -- load: docker save archives ----------------------------------------------

def _stage_docker(spool: _Spool, svc: "ImageService") -> list[StagedImage]:
    entries = parse_json(spool.read("manifest.json", "manifest"), "manifest.json in the archive")
    if not isinstance(entries, list) or not entries:
        raise _invalid("manifest.json is not a non-empty list of images")
    oci_manifests = _oci_manifests_by_config(spool) if spool.has("index.json") else {}
    staged = []
    for i, entry in enumerate(entries):
        what = f"manifest.json entry {i}"
        if not isinstance(entry, dict):
            raise _invalid(f"{what} is not a JSON object")
        config_name = entry.get("Config")
        layer_names = entry.get("Layers")
        if not isinstance(config_name, str) or not config_name:
            raise _invalid(f"{what} has no Config")
        if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
            raise _invalid(f"{what}: Layers is not a list of file names")
        config_writer = spool.require(config_name, "image config")
        _check_claimed_digest(config_name, config_writer)
        parsed = parse_config(spool.read(config_name, "image config"), f"image config {config_name}")
        if len(layer_names) != len(parsed.diff_ids):
            raise _invalid(f"{what} lists {len(layer_names)} layers but its config "
                           f"{config_name} has {len(parsed.diff_ids)} diff IDs")
        config_digest = config_writer.digest()
        oci = oci_manifests.get(config_digest)
        layers = []
        for j, (name, diff_id) in enumerate(zip(layer_names, parsed.diff_ids)):
            writer = spool.require(name, "layer")
            _check_claimed_digest(name, writer)
            media_type = _layer_media_type(writer, name)
            if oci is not None and oci[1].layers[j].digest == writer.digest():
                media_type = oci[1].layers[j].media_type
            layers.append(StagedLayer(StagedBlob(writer.digest(), writer.offset, media_type,
                                                 writer=writer), diff_id, f"layer {name}"))
        manifest_blob = None
        config_media_type = mt.OCI_CONFIG
        if oci is not None and [l.digest for l in oci[1].layers] == [l.blob.digest for l in layers]:
            manifest_writer, manifest = oci[0], oci[1]
            manifest_blob = StagedBlob(manifest_writer.digest(), manifest_writer.offset,
                                       manifest.media_type, writer=manifest_writer)
            config_media_type = manifest.config.media_type
        tags = [_parse_tag(t, what) for t in entry.get("RepoTags") or []]
        parent = entry.get("Parent")
        staged.append(StagedImage(
            StagedBlob(config_digest, config_writer.offset, config_media_type, writer=config_writer),
            parsed, layers, manifest_blob, tags=tags,
            parent=parent if isinstance(parent, str) and parent.startswith("sha256:") else None))
    return staged


def _oci_manifests_by_config(spool: _Spool) -> dict[str, tuple[Writer, Any]]:
    """In a Docker 25+ archive, the OCI manifests beside manifest.json, by
    config digest (so that a round trip keeps the manifest). Best effort:
    manifest.json is authoritative for docker-save archives."""
    out: dict[str, tuple[Writer, Any]] = {}
    try:
        index = parse_index(spool.read("index.json", "index"), what="index.json")
    except InvalidArgument:
        return out
    for desc in index.manifests:
        if desc.media_type not in mt.MANIFESTS:
            continue
        writer = spool.lookup(_blob_path(desc.digest))
        if writer is None or writer.digest() != desc.digest:
            continue
        try:
            with open(writer.path, "rb") as f:
                manifest = parse_manifest(f.read(MAX_JSON), desc.media_type)
        except InvalidArgument:
            continue
        out.setdefault(manifest.config.digest, (writer, manifest))
    return out


# -- load: OCI image layouts -------------------------------------------------

def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + parse_digest(digest)


@dataclass
class _OciImage:
    manifest_writer: Writer
    manifest: Any
    tags: list[Reference] = field(default_factory=list)
    repo_digests: list[Reference] = field(default_factory=list)


def _verified_blob(spool: _Spool, desc: Descriptor, what: str) -> Writer:
    try:
        path = _blob_path(desc.digest)
    except InvalidArgument as e:
        raise _invalid(f"{what}: {e.message}") from None
    writer = spool.lookup(path)
    if writer is None:
        raise _invalid(f"{what} {desc.digest} is missing from the archive (no {path})")
    if writer.digest() != desc.digest:
        raise _invalid(f"digest mismatch for {what} {desc.digest}: content is {writer.digest()}")
    if writer.offset != desc.size:
        raise _invalid(f"size mismatch for {what} {desc.digest}: "
                       f"descriptor says {desc.size} bytes, blob has {writer.offset}")
    return writer


def _read_blob(writer: Writer, what: str) -> bytes:
    if writer.offset > MAX_JSON:
        raise _invalid(f"{what} is too large ({writer.offset} bytes)")
    with open(writer.path, "rb") as f:
        return f.read()


def _image_names(annotations: dict[str, str], what: str) -> list[Reference]:
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if not name:
        ref_name = annotations.get(ANNOTATION_REF_NAME, "")
        # A bare tag ("latest") names no repository; a full reference does.
        name = ref_name if any(c in ref_name for c in "/:@") else ""
    if not name:
        return []
    try:
        return [parse_normalized(name)]
    except InvalidArgument as e:
        raise _invalid(f"{what}: invalid image name {name!r}: {e.message}") from None


def _resolve_oci(spool: _Spool, desc: Descriptor, platform: dict[str, str], what: str,
                 depth: int = 0) -> tuple[Writer, Any] | None:
    """Follow a descriptor (through nested indexes, choosing the platform)
    down to one image manifest. None: an index with nothing for us."""
    if depth > MAX_INDEX_DEPTH:
        raise _invalid(f"{what}: indexes nested too deeply")
    kind = mt.kind(desc.media_type)
    if kind == "index":
        writer = _verified_blob(spool, desc, "index")
        index: Index = parse_index(_read_blob(writer, f"index {desc.digest}"), desc.media_type,
                                   what=f"index {desc.digest}")
        candidates = [d for d in index.manifests if platform_matches(d.platform, platform)]
        if not candidates:
            raise _invalid(f"index {desc.digest} has no image for platform "
                           f"{platform_string(platform)}")
        exact = [d for d in candidates if (d.platform or {}).get("variant", "") == platform.get("variant", "")]
        return _resolve_oci(spool, (exact or candidates)[0], platform, what, depth + 1)
    if kind == "manifest":
        writer = _verified_blob(spool, desc, "manifest")
        manifest = parse_manifest(_read_blob(writer, f"manifest {desc.digest}"), desc.media_type,
                                  what=f"manifest {desc.digest}")
        return writer, manifest
    raise _invalid(f"{what}: unsupported media type {desc.media_type!r} for {desc.digest}")


def _stage_oci(spool: _Spool, platform: dict[str, str]) -> list[StagedImage]:
    if spool.has(mt.OCI_LAYOUT_FILE):
        layout = parse_json(spool.read(mt.OCI_LAYOUT_FILE, "oci-layout"), "oci-layout file")
        if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
            raise _invalid("oci-layout has no imageLayoutVersion")
    index = parse_index(spool.read("index.json", "index"), what="index.json")
    images: dict[str, _OciImage] = {}
    skipped = 0
    for i, desc in enumerate(index.manifests):
        what = f"index.json entry {i}"
        if desc.platform and not platform_matches(desc.platform, platform):
            skipped += 1
            continue
        resolved = _resolve_oci(spool, desc, platform, what)
        if resolved is None:
            continue
        writer, manifest = resolved
        image = images.setdefault(writer.digest(), _OciImage(writer, manifest))
        for ref in _image_names(desc.annotations, what):
            if ref.digest is None:
                if ref.tag_name_only() not in image.tags:
                    image.tags.append(ref.tag_name_only())
            elif ref.digest == writer.digest():
                image.repo_digests.append(ref.trim().with_digest(ref.digest))
    if not images:
        if skipped:
            raise _invalid(f"no image for platform {platform_string(platform)} in index.json")
        raise _invalid("index.json lists no images")
    staged = []
    for manifest_digest, image in images.items():
        manifest = image.manifest
        config_writer = _verified_blob(spool, manifest.config, "config")
        parsed = parse_config(_read_blob(config_writer, f"config {manifest.config.digest}"),
                              f"image config {manifest.config.digest}")
        if len(manifest.layers) != len(parsed.diff_ids):
            raise _invalid(f"manifest {manifest_digest} has {len(manifest.layers)} layers but "
                           f"its config has {len(parsed.diff_ids)} diff IDs")
        layers = []
        for desc, diff_id in zip(manifest.layers, parsed.diff_ids):
            writer = _verified_blob(spool, desc, "layer")
            layers.append(StagedLayer(StagedBlob(desc.digest, desc.size, desc.media_type,
                                                 writer=writer), diff_id, f"layer {desc.digest}"))
        staged.append(StagedImage(
            StagedBlob(manifest.config.digest, manifest.config.size, manifest.config.media_type,
                       writer=config_writer),
            parsed, layers,
            StagedBlob(manifest_digest, image.manifest_writer.offset, manifest.media_type,
                       writer=image.manifest_writer),
            tags=image.tags, repo_digests=image.repo_digests))
    return staged


def load_archive(svc: "ImageService", source: str | BinaryIO, platform: dict[str, str]) -> list[str]:
    spool = _Spool(svc.content)
    try:
        with svc.lease() as lease:
            spool.read_archive(source)
            if spool.has("manifest.json"):
                staged = _stage_docker(spool, svc)
            elif spool.has("index.json"):
                staged = _stage_oci(spool, platform)
            else:
                raise _invalid("no manifest.json or index.json found: "
                               "not a docker save archive or an OCI image layout")
            results = svc.install(staged, lease)
    except InvalidArgument as e:
        # Config, manifest and layer checks name their object; say where it came from.
        if e.message.startswith("invalid image archive: "):
            raise
        raise _invalid(e.message) from e
    finally:
        spool.close()
    messages = []
    for image, result in zip(staged, results):
        for ref, old in result.moved_tags:
            messages.append(f"The image {ref.familiar()} already exists, renaming the old one "
                            f"with ID {old} to empty string")
        if image.tags:
            messages.extend(f"Loaded image: {ref.familiar()}" for ref in image.tags)
        else:
            messages.append(f"Loaded image ID: {image.id}")
        svc._event(image.id, "load", image.id)
    return messages


# -- save --------------------------------------------------------------------

def _select(svc: "ImageService", names: list[str]) -> dict[str, list[Reference]]:
    """Images to save, each with the tags to write for it (Docker's rules:
    ``repo`` means all its tags, ``repo:tag`` that tag, an ID no tag)."""
    selected: dict[str, list[Reference]] = {}

    def add(image_id: str, ref: Reference | None) -> None:
        tags = selected.setdefault(image_id, [])
        if ref is not None and ref.digest is None and ref not in tags:
            tags.append(ref)

    for name in names:
        ref = parse_any(name)
        if isinstance(ref, str) or ref.familiar_name == "sha256":
            add(svc.resolve(name), None)
            continue
        if ref.is_name_only:
            rows = svc.db.query("SELECT reference, image_id FROM tags WHERE repository=?"
                                " ORDER BY reference", (ref.name,))
            rows += svc.db.query("SELECT reference, image_id FROM repo_digests WHERE repository=?"
                                 " ORDER BY reference", (ref.name,))
            for row in rows:
                add(row["image_id"], parse_normalized(row["reference"]))
            if not rows:
                add(svc.resolve(name), None)
            continue
        add(svc.resolve(name), ref.tag_name_only() if ref.digest is None else None)
    return selected


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0  # reproducible archives
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


class _BytesReader:
    def __init__(self, data: bytes):
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._pos + n)
        chunk = bytes(self._data[self._pos:end])
        self._pos = end
        return chunk


def save_archive(svc: "ImageService", names: list[str], out: BinaryIO) -> None:
    if not names:
        raise InvalidArgument("no images to save: give at least one image name or ID")
    selected = _select(svc, names)
    with svc.lease(cleanup=False) as lease:
        blobs: dict[str, bytes | None] = {}   # digest -> bytes (generated) or None (stored)
        index_entries: list[Descriptor] = []
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for image_id, tags in selected.items():
            lease.add_blob(image_id)
            layers = svc._layers(image_id)
            for layer in layers:
                lease.add_blob(layer["blob_digest"])
            manifest, manifest_type = svc.manifest(image_id)
            manifest_digest = digest_bytes(manifest)
            for digest in [image_id, *(l["blob_digest"] for l in layers)]:
                if not svc.content.exists(digest):
                    raise NotFound(f"image {image_id}: blob {digest} is missing; it cannot be saved")
                blobs.setdefault(digest, None)
            blobs[manifest_digest] = manifest
            layer_paths = ["blobs/sha256/" + parse_digest(l["blob_digest"]) for l in layers]
            descriptor = Descriptor(manifest_type, manifest_digest, len(manifest))
            if tags:
                for ref in tags:
                    index_entries.append(Descriptor(manifest_type, manifest_digest, len(manifest), {
                        ANNOTATION_IMAGE_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag or ""}))
                    if layers:
                        repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = \
                            parse_digest(layers[-1]["blob_digest"])
            else:
                index_entries.append(descriptor)
            manifest_json.append({
                "Config": "blobs/sha256/" + parse_digest(image_id),
                "RepoTags": [ref.familiar() for ref in tags] or None,
                "Layers": layer_paths,
            })

        # Stream mode (no seeks: ``out`` may be a pipe); tarfile's default
        # 10 KiB stream buffer costs more than the copying itself.
        tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                           bufsize=1 << 20, copybufsize=1 << 20)
        try:
            tar.addfile(_tarinfo("blobs", directory=True))
            tar.addfile(_tarinfo("blobs/sha256", directory=True))
            for digest, data in blobs.items():
                name = "blobs/sha256/" + parse_digest(digest)
                if data is not None:
                    tar.addfile(_tarinfo(name, len(data)), _BytesReader(data))
                    continue
                with svc.content.open(digest) as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(_tarinfo(name, size), f)
            for name, data in (
                    ("index.json", build_index(index_entries)),
                    ("manifest.json", canonical_json(manifest_json)),
                    (mt.OCI_LAYOUT_FILE, canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})),
                    ("repositories", canonical_json(repositories))):
                tar.addfile(_tarinfo(name, len(data)), _BytesReader(data))
        finally:
            tar.close()
    for image_id in selected:
        svc._event(image_id, "save", image_id)

