"""Images on their way into the store: blobs, layers and configs gathered
by import, load, pull or build before :meth:`ImageService.install` unpacks,
commits and registers them all at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.content import Writer
from berth.images.manifest import ImageConfig
from berth.images.reference import Reference


@dataclass
class StagedBlob:
    """A blob on its way in: bytes in memory, an uncommitted ingest, or a
    blob already in the content store (``path`` only)."""

    digest: str
    size: int
    media_type: str
    path: str | None = None
    writer: Writer | None = None
    data: bytes | None = None


@dataclass
class StagedLayer:
    blob: StagedBlob
    diff_id: str
    name: str


@dataclass
class StagedImage:
    config: StagedBlob
    parsed: ImageConfig
    layers: list[StagedLayer]
    manifest: StagedBlob | None = None
    tags: list[Reference] = field(default_factory=list)
    repo_digests: list[Reference] = field(default_factory=list)
    parent: str | None = None

    @property
    def id(self) -> str:
        return self.config.digest

    def blobs(self) -> list[StagedBlob]:
        out = [self.config, *(layer.blob for layer in self.layers)]
        if self.manifest is not None:
            out.append(self.manifest)
        return out


@dataclass(frozen=True)
class LayerBlob:
    """A layer already in the content store, for :meth:`ImageService.register_image`."""

    digest: str
    media_type: str
    size: int
    diff_id: str


@dataclass(frozen=True)
class InstallResult:
    image_id: str
    new: bool
    moved_tags: list[tuple[Reference, str]]  # (tag, image it was taken from)
