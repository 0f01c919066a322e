"""OCI / Docker schema2 manifests, indexes and image configs: parsing with
validation (clear errors naming the object), and building manifests."""

from __future__ import annotations

import json
import platform as _platform
import re
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.images import mediatypes as mt
from berth.images.timefmt import parse_rfc3339

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
MAX_JSON_SIZE = 16 << 20


def parse_json(data: bytes, what: str) -> Any:
    if len(data) > MAX_JSON_SIZE:
        raise InvalidArgument(f"{what} is too large ({len(data)} bytes)")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None


def canonical_json(value: Any) -> bytes:
    """Compact JSON with a stable key order: the bytes that get a digest."""
    return json.dumps(value, separators=(",", ":"), sort_keys=False, ensure_ascii=False).encode()


def check_digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _DIGEST_RE.match(value):
        raise InvalidArgument(f"{what}: invalid digest {value!r} (only sha256 is supported)")
    return value


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out


def parse_descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: descriptor is not a JSON object")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidArgument(f"{what}: descriptor has no mediaType")
    digest = check_digest(obj.get("digest"), what)
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{what}: descriptor {digest} has an invalid size {size!r}")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise InvalidArgument(f"{what}: descriptor {digest} has invalid annotations")
    plat = obj.get("platform")
    if plat is not None and not isinstance(plat, dict):
        raise InvalidArgument(f"{what}: descriptor {digest} has an invalid platform")
    urls = obj.get("urls") or []
    return Descriptor(media_type, digest, size, dict(annotations), plat, tuple(urls))


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]


def _declared_media_type(doc: dict, hint: str | None, what: str) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidArgument(f"{what}: mediaType is not a string")
    if declared and hint and declared != hint:
        raise InvalidArgument(f"{what}: media type {declared} does not match its descriptor ({hint})")
    return declared or hint or ""


def parse_manifest(data: bytes, media_type: str | None = None, what: str = "manifest") -> Manifest:
    doc = parse_json(data, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    kind = _declared_media_type(doc, media_type, what)
    if not kind:
        # OCI manifests may omit mediaType; a config descriptor says what it is.
        kind = mt.OCI_MANIFEST if "config" in doc else ""
    if kind not in mt.MANIFESTS:
        raise InvalidArgument(f"{what}: unsupported manifest media type {kind or '(none)'!r}")
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"{what}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    config = parse_descriptor(doc.get("config"), f"{what} config")
    if config.media_type not in mt.CONFIGS:
        raise InvalidArgument(f"{what}: unsupported config media type {config.media_type!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidArgument(f"{what}: layers is not a list")
    layers = []
    for i, raw in enumerate(raw_layers):
        layer = parse_descriptor(raw, f"{what} layer {i}")
        if layer.media_type not in mt.LAYERS:
            raise InvalidArgument(
                f"{what}: unsupported media type {layer.media_type!r} for layer {layer.digest}")
        layers.append(layer)
    return Manifest(kind, config, tuple(layers), dict(doc.get("annotations") or {}))


def parse_index(data: bytes, media_type: str | None = None, what: str = "index") -> Index:
    doc = parse_json(data, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    kind = _declared_media_type(doc, media_type, what) or mt.OCI_INDEX
    if kind not in mt.INDEXES:
        raise InvalidArgument(f"{what}: unsupported index media type {kind!r}")
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"{what}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    raw = doc.get("manifests")
    if not isinstance(raw, list):
        raise InvalidArgument(f"{what}: manifests is not a list")
    return Index(kind, tuple(parse_descriptor(m, f"{what} entry {i}") for i, m in enumerate(raw)),
                 dict(doc.get("annotations") or {}))


@dataclass(frozen=True)
class ImageConfig:
    """A validated image config: the raw dict plus what berth needs of it."""

    raw: dict[str, Any]
    diff_ids: tuple[str, ...]
    created_ns: int | None

    @property
    def container_config(self) -> dict[str, Any]:
        return self.raw.get("config") or {}

    @property
    def labels(self) -> dict[str, str]:
        return self.container_config.get("Labels") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return [h for h in self.raw.get("history") or [] if isinstance(h, dict)]


def parse_config(data: bytes, what: str = "image config") -> ImageConfig:
    doc = parse_json(data, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument(f"{what}: rootfs type must be \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is None:
        diff_ids = []
    if not isinstance(diff_ids, list):
        raise InvalidArgument(f"{what}: rootfs.diff_ids is not a list")
    for d in diff_ids:
        check_digest(d, f"{what} diff ID")
    if doc.get("config") is not None and not isinstance(doc["config"], dict):
        raise InvalidArgument(f"{what}: config is not a JSON object")
    labels = (doc.get("config") or {}).get("Labels")
    if labels is not None and not (isinstance(labels, dict)
                                   and all(isinstance(v, str) for v in labels.values())):
        raise InvalidArgument(f"{what}: config.Labels is not a map of strings")
    created = doc.get("created")
    try:
        created_ns = parse_rfc3339(created) if isinstance(created, str) else None
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None
    if created is not None and not isinstance(created, str):
        raise InvalidArgument(f"{what}: created is not a string")
    return ImageConfig(doc, tuple(diff_ids), created_ns)


def build_manifest(config: Descriptor, layers: list[Descriptor],
                   media_type: str = mt.OCI_MANIFEST) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return canonical_json(doc)


def build_index(manifests: list[Descriptor]) -> bytes:
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    })


_ARCH = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
         "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
         "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
         "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


def host_platform() -> dict[str, str]:
    arch, variant = _ARCH.get(_platform.machine(), (_platform.machine(), ""))
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


_PLATFORM_PART = re.compile(r"^[a-z0-9_-]+$")


def parse_platform(value: str | None) -> dict[str, str]:
    """``linux/amd64[/v2]`` (or an empty value for the host's)."""
    if not value:
        return host_platform()
    parts = value.lower().split("/")
    if not 1 <= len(parts) <= 3 or not all(_PLATFORM_PART.match(p) for p in parts):
        raise InvalidArgument(f"invalid platform {value!r}: expected os[/arch[/variant]]")
    if parts[0] != "linux":
        raise InvalidArgument(f"unsupported platform {value!r}: operating system is not supported")
    host = host_platform()
    out = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else host["architecture"]}
    if out["architecture"] in ("x86_64", "x86-64"):
        out["architecture"] = "amd64"
    if out["architecture"] == "aarch64":
        out["architecture"] = "arm64"
    if len(parts) == 3:
        out["variant"] = parts[2]
    elif len(parts) == 1 and "variant" in host:
        out["variant"] = host["variant"]
    return out


def platform_matches(candidate: dict[str, Any] | None, want: dict[str, str]) -> bool:
    if not candidate:
        return False
    if candidate.get("os") != want["os"] or candidate.get("architecture") != want["architecture"]:
        return False
    variant = candidate.get("variant") or ""
    return not want.get("variant") or not variant or variant == want["variant"]


def platform_string(plat: dict[str, Any]) -> str:
    parts = [plat.get("os", ""), plat.get("architecture", "")]
    if plat.get("variant"):
        parts.append(plat["variant"])
    return "/".join(parts)
