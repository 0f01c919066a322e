"""The registry's storage: content-addressed blobs shared by all
repositories, and per-repository links, manifests, tags and referrers.

Layout under the root::

    blobs/sha256/<hex>                              every blob and manifest, verified
    uploads/<uuid>/data, uploads/<uuid>/repo        upload sessions in progress
    repositories/<name>/_layers/<hex>               blob <hex> belongs to <name>
    repositories/<name>/_manifests/<hex>            manifest <hex> of <name> (JSON facts)
    repositories/<name>/_tags/<tag>                 the digest a tag points at
    repositories/<name>/_referrers/<subject>/<hex>  descriptor of a manifest with a subject

Blobs are shared so a cross-repository mount is a link, not a copy; a blob is
served from a repository only when linked there, as in distribution. Every
file appears by an atomic rename, so a crash or a concurrent writer never
exposes a half-written blob, tag or link. Repository names never clash with
the ``_`` directories: a name component cannot start with ``_``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from berth import _native
from berth.registryd.errors import RegistryError

COPY_CHUNK = 1 << 20
MAX_MANIFEST_SIZE = 4 << 20  # distribution's default limit

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES


def check_name(name: str) -> str:
    if len(name) > 255 or not NAME_RE.match(name):
        raise RegistryError("NAME_INVALID", {"name": name})
    return name


def check_digest(value: str) -> str:
    """``sha256:<hex>``; other well-formed algorithms are refused by name."""
    if DIGEST_RE.match(value):
        return value
    if _ANY_DIGEST_RE.match(value) and not value.startswith("sha256:"):
        raise RegistryError("DIGEST_INVALID", {"digest": value},
                            message=f"unsupported digest algorithm {value.split(':')[0]!r}")
    raise RegistryError("DIGEST_INVALID", {"digest": value}, message="invalid digest format")


def is_digest(reference: str) -> bool:
    return ":" in reference


def _hex(digest: str) -> str:
    return check_digest(digest).partition(":")[2]


def _write_atomic(path: str, data: bytes, fsync: bool = False) -> None:
    tmp = f"{path}.tmp-{secrets.token_hex(6)}"
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class Upload:
    uuid: str
    repo: str
    dir: str

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")

    def size(self) -> int:
        try:
            return os.stat(self.data).st_size
        except FileNotFoundError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": self.uuid}) from None


@dataclass(frozen=True)
class StoredManifest:
    digest: str
    media_type: str
    body: bytes


class Storage:
    def __init__(self, root: str, fsync: bool = True):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.uploads_dir = os.path.join(self.root, "uploads")
        self.repos_dir = os.path.join(self.root, "repositories")
        for d in (self.blobs_dir, self.uploads_dir, self.repos_dir):
            os.makedirs(d, mode=0o755, exist_ok=True)
        # Running sha256 of each upload, so a chunked upload is hashed once as
        # it arrives; after a restart the file is hashed again on completion.
        self._hashers: dict[str, tuple[Any, int]] = {}
        self._hash_lock = threading.Lock()

    # -- paths -----------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs_dir, _hex(digest))

    def _repo(self, name: str, *parts: str) -> str:
        return os.path.join(self.repos_dir, check_name(name), *parts)

    def repo_exists(self, name: str) -> bool:
        return os.path.isdir(self._repo(name, "_layers")) or os.path.isdir(self._repo(name, "_manifests"))

    def require_repo(self, name: str) -> None:
        if not self.repo_exists(name):
            raise RegistryError("NAME_UNKNOWN", {"name": name})

    # -- blobs -----------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int | None:
        """Size of a blob linked into ``name`` (manifests count too), or None."""
        hex_ = _hex(digest)
        if not (os.path.exists(self._repo(name, "_layers", hex_))
                or os.path.exists(self._repo(name, "_manifests", hex_))):
            return None
        try:
            return os.stat(os.path.join(self.blobs_dir, hex_)).st_size
        except FileNotFoundError:
            return None

    def link_blob(self, name: str, digest: str) -> None:
        path = self._repo(name, "_layers", _hex(digest))
        if os.path.exists(path):
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_atomic(path, b"")

    def unlink_blob(self, name: str, digest: str) -> bool:
        try:
            os.unlink(self._repo(name, "_layers", _hex(digest)))
            return True
        except FileNotFoundError:
            return False

    def mount_blob(self, name: str, digest: str, source: str) -> bool:
        """Link a blob of repository ``source`` into ``name``; False when the
        source does not have it (the caller then starts an upload)."""
        try:
            check_name(source)
        except RegistryError:
            return False
        if self.blob_size(source, digest) is None:
            return False
        self.link_blob(name, digest)
        return True

    # -- uploads ---------------------------------------------------------
    def new_upload(self, name: str) -> Upload:
        check_name(name)
        upload_id = str(uuid.uuid4())
        path = os.path.join(self.uploads_dir, upload_id)
        os.makedirs(path)
        with open(os.path.join(path, "repo"), "w") as f:
            f.write(name)
        open(os.path.join(path, "data"), "wb").close()
        with self._hash_lock:
            self._hashers[upload_id] = (_native.Sha256(), 0)
        return Upload(upload_id, name, path)

    def get_upload(self, name: str, upload_id: str) -> Upload:
        check_name(name)
        if not UUID_RE.match(upload_id):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload_id})
        path = os.path.join(self.uploads_dir, upload_id)
        if _read_text(os.path.join(path, "repo")) != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload_id})
        return Upload(upload_id, name, path)

    def append(self, upload: Upload, offset: int, data: bytes | bytearray) -> int:
        """Write ``data`` at ``offset`` (the upload's current size) and feed
        the running hash; returns the new size."""
        with open(upload.data, "r+b") as f:
            f.seek(offset)
            f.write(data)
        with self._hash_lock:
            state = self._hashers.get(upload.uuid)
            if state is not None and state[1] == offset:
                state[0].update(data)
                self._hashers[upload.uuid] = (state[0], offset + len(data))
            else:
                self._hashers.pop(upload.uuid, None)
        return offset + len(data)

    def _upload_digest(self, upload: Upload, size: int) -> str:
        with self._hash_lock:
            state = self._hashers.get(upload.uuid)
        if state is not None and state[1] == size:
            return "sha256:" + state[0].hexdigest()
        return "sha256:" + _native.sha256_file(upload.data)

    def commit_upload(self, upload: Upload, digest: str) -> int:
        """Verify the upload against ``digest`` and move it into the blob
        store (or drop it if the blob is already there: two clients pushing
        the same blob at once both succeed). Returns the blob's size."""
        check_digest(digest)
        size = upload.size()
        actual = self._upload_digest(upload, size)
        if actual != digest:
            self.cancel_upload(upload)
            raise RegistryError("DIGEST_INVALID", {"expected": digest, "actual": actual})
        target = self.blob_path(digest)
        if not os.path.exists(target):
            if self.fsync:
                fd = os.open(upload.data, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.rename(upload.data, target)
        self.link_blob(upload.repo, digest)
        self.cancel_upload(upload)
        return size

    def cancel_upload(self, upload: Upload) -> None:
        with self._hash_lock:
            self._hashers.pop(upload.uuid, None)
        for leaf in ("data", "repo"):
            try:
                os.unlink(os.path.join(upload.dir, leaf))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(upload.dir)
        except OSError:
            pass

    def put_blob_bytes(self, name: str, data: bytes) -> str:
        digest = "sha256:" + _native.Sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not os.path.exists(target):
            _write_atomic(target, data, fsync=self.fsync)
        return digest

    def remove_stale_uploads(self, max_age: float = 7 * 24 * 3600) -> None:
        cutoff = time.time() - max_age
        with os.scandir(self.uploads_dir) as it:
            for entry in it:
                try:
                    if entry.stat().st_mtime < cutoff:
                        name = _read_text(os.path.join(entry.path, "repo")) or ""
                        self.cancel_upload(Upload(entry.name, name, entry.path))
                except FileNotFoundError:
                    continue

    # -- manifests -------------------------------------------------------
    def put_manifest(self, name: str, reference: str, body: bytes, content_type: str
                     ) -> tuple[str, str | None]:
        """Validate and store a manifest under a tag or its digest; returns
        (digest, subject digest or None)."""
        check_name(name)
        if len(body) > MAX_MANIFEST_SIZE:
            raise RegistryError("MANIFEST_INVALID", {"size": len(body), "limit": MAX_MANIFEST_SIZE},
                                message=f"manifest too large ({len(body)} bytes, "
                                        f"limit {MAX_MANIFEST_SIZE})", status=413)
        digest = "sha256:" + _native.Sha256(body).hexdigest()
        if is_digest(reference):
            if check_digest(reference) != digest:
                raise RegistryError("DIGEST_INVALID", {"expected": reference, "actual": digest})
        elif not TAG_RE.match(reference):
            raise RegistryError("MANIFEST_INVALID", {"tag": reference}, message="invalid tag")
        facts = self._validate_manifest(name, body, content_type)
        hex_ = digest.partition(":")[2]
        target = os.path.join(self.blobs_dir, hex_)
        if not os.path.exists(target):
            _write_atomic(target, body, fsync=self.fsync)
        link = self._repo(name, "_manifests", hex_)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        _write_atomic(link, json.dumps(facts).encode())
        subject = facts.get("subject")
        if subject:
            ref_dir = self._repo(name, "_referrers", subject.partition(":")[2])
            os.makedirs(ref_dir, exist_ok=True)
            descriptor = {"mediaType": facts["mediaType"], "digest": digest, "size": len(body)}
            if facts.get("artifactType"):
                descriptor["artifactType"] = facts["artifactType"]
            if facts.get("annotations"):
                descriptor["annotations"] = facts["annotations"]
            _write_atomic(os.path.join(ref_dir, hex_), json.dumps(descriptor).encode())
        if not is_digest(reference):
            tag_path = self._repo(name, "_tags", reference)
            os.makedirs(os.path.dirname(tag_path), exist_ok=True)
            _write_atomic(tag_path, digest.encode())
        return digest, subject

    def _validate_manifest(self, name: str, body: bytes, content_type: str) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise RegistryError("MANIFEST_INVALID", {"reason": f"not JSON: {e}"}) from None
        if not isinstance(doc, dict):
            raise RegistryError("MANIFEST_INVALID", {"reason": "not a JSON object"})
        declared = doc.get("mediaType")
        content_type = (content_type or "").split(";")[0].strip()
        if declared is not None and not isinstance(declared, str):
            raise RegistryError("MANIFEST_INVALID", {"reason": "mediaType is not a string"})
        if declared and content_type and content_type in MANIFEST_TYPES and declared != content_type:
            raise RegistryError("MANIFEST_INVALID", {
                "reason": f"mediaType {declared} does not match Content-Type {content_type}"})
        media_type = declared or (content_type if content_type in MANIFEST_TYPES else "")
        if not media_type:
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else ""
        if media_type not in MANIFEST_TYPES:
            raise RegistryError("MANIFEST_INVALID", {"mediaType": media_type or content_type},
                                message=f"unsupported manifest media type "
                                        f"{(media_type or content_type or '(none)')!r}")
        if doc.get("schemaVersion") != 2:
            raise RegistryError("MANIFEST_INVALID",
                                {"reason": f"schemaVersion {doc.get('schemaVersion')!r} is not 2"})
        facts: dict[str, Any] = {"mediaType": media_type}
        if media_type in IMAGE_MANIFESTS:
            config = self._descriptor(doc.get("config"), "config")
            layers = doc.get("layers")
            if not isinstance(layers, list):
                raise RegistryError("MANIFEST_INVALID", {"reason": "layers is not a list"})
            missing = []
            for i, raw in enumerate([config, *layers]):
                desc = raw if i == 0 else self._descriptor(raw, f"layer {i - 1}")
                if desc.get("urls"):
                    continue  # foreign layers live elsewhere
                if self.blob_size(name, desc["digest"]) is None:
                    missing.append(desc["digest"])
            if missing:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digests": missing})
            facts["artifactType"] = doc.get("artifactType") or config["mediaType"]
        else:
            entries = doc.get("manifests")
            if not isinstance(entries, list):
                raise RegistryError("MANIFEST_INVALID", {"reason": "manifests is not a list"})
            missing = []
            for i, raw in enumerate(entries):
                desc = self._descriptor(raw, f"manifest {i}")
                if not os.path.exists(self._repo(name, "_manifests", _hex(desc["digest"]))):
                    missing.append(desc["digest"])
            if missing:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digests": missing})
            if doc.get("artifactType"):
                facts["artifactType"] = doc["artifactType"]
        subject = doc.get("subject")
        if subject is not None:
            facts["subject"] = self._descriptor(subject, "subject")["digest"]
        annotations = doc.get("annotations")
        if isinstance(annotations, dict):
            facts["annotations"] = annotations
        return facts

    @staticmethod
    def _descriptor(raw: Any, what: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise RegistryError("MANIFEST_INVALID", {"reason": f"{what} is not a descriptor"})
        media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise RegistryError("MANIFEST_INVALID", {"reason": f"{what} has no mediaType"})
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise RegistryError("MANIFEST_INVALID", {"reason": f"{what} has an invalid digest {digest!r}"})
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError("MANIFEST_INVALID", {"reason": f"{what} has an invalid size {size!r}"})
        return raw

    def resolve(self, name: str, reference: str) -> str:
        """A tag or digest of ``name`` -> the manifest digest."""
        if not self.repo_exists(name):
            raise RegistryError("NAME_UNKNOWN", {"name": name})
        if is_digest(reference):
            digest = check_digest(reference)
        else:
            if not TAG_RE.match(reference):
                raise RegistryError("MANIFEST_INVALID", {"tag": reference}, message="invalid tag")
            digest = _read_text(self._repo(name, "_tags", reference)) or ""
            if not digest:
                raise RegistryError("MANIFEST_UNKNOWN", {"tag": reference},
                                    message=f"manifest tagged by {reference!r} is not found")
        if not os.path.exists(self._repo(name, "_manifests", _hex(digest))):
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": digest})
        return digest

    def manifest_info(self, name: str, reference: str) -> tuple[str, str, int]:
        """(digest, media type, size) without reading the body."""
        digest = self.resolve(name, reference)
        facts = json.loads(_read_text(self._repo(name, "_manifests", _hex(digest))) or "{}")
        try:
            size = os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": digest}) from None
        return digest, facts.get("mediaType", OCI_MANIFEST), size

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        digest, media_type, _ = self.manifest_info(name, reference)
        with open(self.blob_path(digest), "rb") as f:
            return StoredManifest(digest, media_type, f.read())

    def delete_manifest(self, name: str, reference: str) -> None:
        """By digest: the manifest, every tag on it and its referrer entry.
        By tag: only the tag."""
        if not self.repo_exists(name):
            raise RegistryError("NAME_UNKNOWN", {"name": name})
        if not is_digest(reference):
            if not TAG_RE.match(reference):
                raise RegistryError("MANIFEST_INVALID", {"tag": reference}, message="invalid tag")
            try:
                os.unlink(self._repo(name, "_tags", reference))
            except FileNotFoundError:
                raise RegistryError("MANIFEST_UNKNOWN", {"tag": reference}) from None
            return
        digest = check_digest(reference)
        link = self._repo(name, "_manifests", _hex(digest))
        facts_text = _read_text(link)
        if facts_text is None:
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": digest})
        for tag in self.tags(name):
            path = self._repo(name, "_tags", tag)
            if _read_text(path) == digest:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        subject = json.loads(facts_text).get("subject")
        if subject:
            try:
                os.unlink(self._repo(name, "_referrers", _hex(subject), _hex(digest)))
            except FileNotFoundError:
                pass
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass

    # -- listings --------------------------------------------------------
    def tags(self, name: str) -> list[str]:
        try:
            entries = os.listdir(self._repo(name, "_tags"))
        except FileNotFoundError:
            return []
        return sorted(t for t in entries if TAG_RE.match(t))

    def repositories(self) -> list[str]:
        found = []
        for dirpath, dirnames, _ in os.walk(self.repos_dir):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(os.path.relpath(dirpath, self.repos_dir).replace(os.sep, "/"))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> list[dict[str, Any]]:
        check_digest(digest)
        directory = self._repo(name, "_referrers", _hex(digest))
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if ".tmp-" in entry:
                continue
            text = _read_text(os.path.join(directory, entry))
            if not text:
                continue
            descriptor = json.loads(text)
            if artifact_type and descriptor.get("artifactType") != artifact_type:
                continue
            out.append(descriptor)
        return out
