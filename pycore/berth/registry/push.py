"""Pushing an image: layers in parallel (a HEAD first, then a cross-repository
mount if the blob is known elsewhere in the registry, else a monolithic or
chunked upload), the config, then the manifest under its tag or digest.

Layers are pushed as stored when they are compressed already; an
uncompressed layer is gzipped on the way, and ``compression`` ("gzip" or
"zstd") converts every layer that is not in that form. A converted layer
keeps its diff ID (the tar is the same), so the config does not change; the
manifest is rebuilt for the new blobs.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AsyncIterator, BinaryIO

import aiohttp
from yarl import URL

from berth import _native
from berth.errors import BerthError, InvalidArgument, NotFound, SystemError_
from berth.images import mediatypes as mt
from berth.images.manifest import Descriptor, Manifest, build_manifest, parse_manifest
from berth.images.reference import Reference
from berth.registry.auth import AuthConfig, repository_scope
from berth.registry.client import RegistryClient, connection_message, quote_path
from berth.registry.errors import RegistryHTTPError, TransferError, push_error
from berth.registry.progress import Progress, short_id
from berth.registry.tasks import run_all

if TYPE_CHECKING:
    from berth.registry.service import RegistryService

log = logging.getLogger("berth.registry")

UPLOAD_CHUNK = 1 << 20
GZIP_LEVEL = 6  # gzip.DefaultCompression, as Docker uses
ZSTD_LEVEL = 3
COMPRESSIONS = ("gzip", "zstd")
_FOREIGN = frozenset({mt.DOCKER_FOREIGN_LAYER, mt.OCI_LAYER_NONDIST, mt.OCI_LAYER_NONDIST_GZIP,
                      mt.OCI_LAYER_NONDIST_ZSTD})


@dataclass(frozen=True)
class PushResult:
    reference: str      # familiar: localhost:5000/x:latest or x@sha256:...
    tag: str | None
    digest: str
    size: int


@dataclass
class PlannedBlob:
    """A blob to push: where its bytes are and what it is called remotely."""

    descriptor: Descriptor
    path: str
    temporary: bool = False
    layer: bool = True


def layer_compression(media_type: str) -> str:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "none"


def _layer_media_type(manifest_type: str, compression: str) -> str:
    if manifest_type == mt.DOCKER_MANIFEST:
        return mt.DOCKER_LAYER_BY_COMPRESSION[compression]
    return mt.OCI_LAYER_BY_COMPRESSION[compression]


def convert_layer(source: str, source_compression: str, target_compression: str,
                  output: str) -> tuple[str, int]:
    """Recompress a layer blob; returns (digest, size) of ``output``."""
    hasher = _native.Sha256()
    size = 0
    with open(output, "wb") as out:
        def emit(data: bytes) -> None:
            nonlocal size
            if data:
                out.write(data)
                hasher.update(data)
                size += len(data)

        reader = _open_decompressed(source, source_compression)
        try:
            if target_compression == "gzip":
                # wbits 31: a gzip member, as `gzip` and Docker write them.
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
                while chunk := reader.read(UPLOAD_CHUNK):
                    emit(compressor.compress(chunk))
                emit(compressor.flush())
            elif target_compression == "zstd":
                import zstandard

                class _Sink:
                    def write(self, data: bytes) -> int:
                        emit(bytes(data))
                        return len(data)

                cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
                with cctx.stream_writer(_Sink(), closefd=False) as writer:
                    while chunk := reader.read(UPLOAD_CHUNK):
                        writer.write(chunk)
            else:
                raise InvalidArgument(f"unsupported compression {target_compression!r}")
        finally:
            reader.close()
    # No fsync: a temporary file, gone after the push (and with a crash).
    return "sha256:" + hasher.hexdigest(), size


def _open_decompressed(path: str, compression: str) -> BinaryIO:
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True,
                                                          closefd=True)
    return open(path, "rb")


@dataclass
class Pusher:
    service: "RegistryService"
    http: aiohttp.ClientSession
    ref: Reference                  # name plus tag or digest
    image_id: str
    auth: AuthConfig
    progress: Progress
    compression: str | None = None
    chunk_size: int | None = None
    _temporary: list[str] = field(default_factory=list)

    @property
    def images(self):
        return self.service.images

    async def run(self) -> PushResult:
        try:
            return await self._run()
        finally:
            for path in self._temporary:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    async def _run(self) -> PushResult:
        manifest_bytes, media_type = await asyncio.to_thread(self.images.manifest, self.image_id)
        manifest = parse_manifest(manifest_bytes, media_type, f"manifest of {self.ref.familiar()}")
        await self.progress.status(f"The push refers to repository [{self.ref.name}]")
        blobs, manifest_bytes, media_type = await self._plan(manifest, manifest_bytes, media_type)
        digest = "sha256:" + _native.Sha256(manifest_bytes).hexdigest()
        if self.ref.digest and self.ref.digest != digest:
            raise InvalidArgument(
                f"cannot push {self.ref.familiar()}: the image's manifest has digest {digest}")
        candidates = {b.descriptor.digest: await asyncio.to_thread(
            self.service.sources.candidates, b.descriptor.digest, self.ref.domain, self.ref.path)
            for b in blobs}
        scopes = [repository_scope(self.ref.path, "pull,push")]
        scopes += sorted({repository_scope(c, "pull") for cs in candidates.values() for c in cs})
        endpoint = self.service.options.endpoints(self.ref.domain, pull=False)[0]
        client = self.service.client(self.http, endpoint, self.auth, scopes)
        layers = [b for b in blobs if b.layer]
        for blob in layers:
            await self.progress.layer(short_id(blob.descriptor.digest), "Preparing")
        await run_all(self._push_blob(client, b, candidates[b.descriptor.digest]) for b in layers)
        for blob in blobs:
            if not blob.layer:
                await self._push_blob(client, blob, candidates[blob.descriptor.digest])
        reference = self.ref.digest or self.ref.tag or "latest"
        resp = await client.request(
            "PUT", f"/v2/{quote_path(self.ref.path)}/manifests/{reference}",
            headers={"Content-Type": media_type}, data=manifest_bytes, expect=(200, 201))
        announced = resp.headers.get("Docker-Content-Digest", "")
        resp.release()
        if announced.startswith("sha256:") and announced != digest:
            raise InvalidArgument(f"cannot push {self.ref.familiar()}: the registry stored the manifest "
                                  f"as {announced}, expected {digest}")
        await asyncio.to_thread(self.images.add_repo_digest, self.image_id, f"{self.ref.name}@{digest}")
        await asyncio.to_thread(self.service.sources.add, [b.descriptor.digest for b in blobs],
                                self.ref.domain, self.ref.path)
        tag = None if self.ref.digest else (self.ref.tag or "latest")
        if tag:
            await self.progress.status(f"{tag}: digest: {digest} size: {len(manifest_bytes)}")
        else:
            await self.progress.status(f"digest: {digest} size: {len(manifest_bytes)}")
        await self.progress.aux({"Tag": tag or "", "Digest": digest, "Size": len(manifest_bytes)})
        self.service.events.publish("image", "push", self.ref.familiar(),
                                    {"name": self.ref.familiar_name})
        return PushResult(self.ref.familiar(), tag, digest, len(manifest_bytes))

    async def _plan(self, manifest: Manifest, manifest_bytes: bytes, media_type: str
                    ) -> tuple[list[PlannedBlob], bytes, str]:
        """The blobs to push and the manifest that names them (rebuilt when
        a layer is recompressed)."""
        content = self.images.content
        blobs: list[PlannedBlob] = []
        new_layers: list[Descriptor] = []
        changed = False
        target_type = media_type
        if self.compression == "zstd" and media_type == mt.DOCKER_MANIFEST:
            target_type = mt.OCI_MANIFEST  # schema2 has no standard zstd layer type
        conversions = []
        for layer in manifest.layers:
            if layer.media_type in _FOREIGN or layer.urls:
                new_layers.append(layer)  # foreign layers are fetched from their URLs, never pushed
                continue
            path = content.path(layer.digest)
            if not await asyncio.to_thread(os.path.exists, path):
                raise NotFound(f"cannot push {self.ref.familiar()}: layer {layer.digest} is not in "
                               "the local store (the image was loaded without it)")
            current = layer_compression(layer.media_type)
            wanted = self.compression or (current if current != "none" else "gzip")
            if wanted == current and target_type == media_type:
                blobs.append(PlannedBlob(layer, path))
                new_layers.append(layer)
                continue
            changed = True
            if wanted == current:
                converted = Descriptor(_layer_media_type(target_type, current), layer.digest,
                                       layer.size, layer.annotations)
                blobs.append(PlannedBlob(converted, path))
                new_layers.append(converted)
                continue
            output = os.path.join(self.images.tmp_dir, f"push-{secrets.token_hex(8)}")
            self._temporary.append(output)
            blobs.append(PlannedBlob(layer, output, temporary=True))  # descriptor set below
            new_layers.append(layer)
            conversions.append((len(blobs) - 1, len(new_layers) - 1, layer, path, current, wanted))

        async def convert(job) -> None:
            blob_index, layer_index, layer, path, current, wanted = job
            await self.progress.layer(short_id(layer.digest), f"Compressing ({wanted})")
            digest, size = await asyncio.to_thread(convert_layer, path, current, wanted,
                                                   blobs[blob_index].path)
            converted = Descriptor(_layer_media_type(target_type, wanted), digest, size,
                                   layer.annotations)
            blobs[blob_index].descriptor = converted
            new_layers[layer_index] = converted

        # zlib and zstd release the GIL: layers recompress side by side.
        await run_all(convert(job) for job in conversions)
        config = manifest.config
        blobs.append(PlannedBlob(config, content.path(config.digest), layer=False))
        if changed:
            config_desc = Descriptor(mt.OCI_CONFIG if target_type == mt.OCI_MANIFEST
                                     and config.media_type == mt.DOCKER_CONFIG else config.media_type,
                                     config.digest, config.size)
            blobs[-1] = PlannedBlob(config_desc, blobs[-1].path, layer=False)
            manifest_bytes = build_manifest(config_desc, new_layers, target_type)
            media_type = target_type
        return blobs, manifest_bytes, media_type

    async def _push_blob(self, client: RegistryClient, blob: PlannedBlob, candidates: list[str]) -> None:
        desc = blob.descriptor
        id_ = short_id(desc.digest) if blob.layer else None
        repo = quote_path(self.ref.path)
        async with self.service.upload_slots:
            resp = await client.request("HEAD", f"/v2/{repo}/blobs/{desc.digest}", expect=(200, 404))
            resp.release()
            if resp.status == 200:
                if id_:
                    await self.progress.layer(id_, "Layer already exists")
                return
            location = None
            for source in candidates:
                resp = await client.request(
                    "POST", f"/v2/{repo}/blobs/uploads/?mount={desc.digest}&from={quote_path(source)}",
                    expect=(201, 202))
                resp.release()
                if resp.status == 201:
                    if id_:
                        await self.progress.layer(id_, f"Mounted from {source}")
                    return
                location = resp.headers.get("Location")
                if location:
                    break
            await self._upload(client, blob, id_, location)
        if id_:
            await self.progress.layer(id_, "Pushed")

    async def _start_upload(self, client: RegistryClient) -> URL:
        resp = await client.request("POST", f"/v2/{quote_path(self.ref.path)}/blobs/uploads/",
                                    expect=(202,))
        resp.release()
        return await self._location(client, resp.headers.get("Location"))

    async def _location(self, client: RegistryClient, location: str | None) -> URL:
        if not location:
            raise InvalidArgument(f"cannot push {self.ref.familiar()}: the registry started an "
                                  "upload without a Location")
        return (await client.base()).join(URL(location, encoded=True))

    async def _upload(self, client: RegistryClient, blob: PlannedBlob, id_: str | None,
                      location: str | None) -> None:
        session = {"url": await self._location(client, location) if location
                   else await self._start_upload(client)}
        chunked = bool(self.chunk_size and blob.descriptor.size > self.chunk_size)
        failures = 0
        while True:
            try:
                if chunked:
                    await self._upload_chunked(client, session, blob, id_, resume=failures > 0)
                else:
                    await self._upload_monolithic(client, session["url"], blob, id_)
                return
            except TransferError as e:
                failures += 1
                if failures >= client.backoff.attempts:
                    raise TransferError(f"failed to upload {blob.descriptor.digest} of "
                                        f"{self.ref.familiar()}: {e.message}") from None
                log.info("upload of %s broke off (%s); retrying", blob.descriptor.digest, e.message)
                if id_:
                    await self.progress.layer(id_, f"Retrying: {e.message}")
                await asyncio.sleep(client.backoff.delay(failures - 1))
                if not chunked:
                    session["url"] = await self._start_upload(client)

    def _body(self, path: str, offset: int, length: int, id_: str | None, total: int
              ) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            f = await asyncio.to_thread(open, path, "rb")
            try:
                await asyncio.to_thread(f.seek, offset)
                sent = 0
                while sent < length:
                    chunk = await asyncio.to_thread(f.read, min(UPLOAD_CHUNK, length - sent))
                    if not chunk:
                        raise BerthError(f"blob {path} is shorter than its descriptor")
                    sent += len(chunk)
                    if id_:
                        await self.progress.bar(id_, "Pushing", offset + sent, total,
                                                final=offset + sent == total)
                    yield chunk
            finally:
                f.close()
        return chunks()

    async def _send(self, client: RegistryClient, method: str, url: URL, data, headers,
                    expect: tuple[int, ...]) -> aiohttp.ClientResponse:
        try:
            return await client.request(method, url, headers=headers, data=data, expect=expect,
                                        retry=False)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise TransferError(connection_message(e)) from None

    async def _upload_monolithic(self, client: RegistryClient, url: URL, blob: PlannedBlob,
                                 id_: str | None) -> None:
        desc = blob.descriptor
        resp = await self._send(
            client, "PUT", url.extend_query(digest=desc.digest),
            self._body(blob.path, 0, desc.size, id_, desc.size),
            {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            (201, 204))
        self._check_digest(resp, desc)

    async def _upload_chunked(self, client: RegistryClient, session: dict[str, URL],
                              blob: PlannedBlob, id_: str | None, resume: bool) -> None:
        """PATCH chunk by chunk with Content-Range, then PUT ?digest=. After a
        broken chunk the upload's status says where to continue; a session
        the registry forgot is started again."""
        desc = blob.descriptor
        assert self.chunk_size
        offset = 0
        if resume:
            try:
                offset = await self._upload_offset(client, session["url"])
            except RegistryHTTPError as e:
                if e.http_status != 404:
                    raise
                session["url"] = await self._start_upload(client)
        while offset < desc.size:
            length = min(self.chunk_size, desc.size - offset)
            resp = await self._send(
                client, "PATCH", session["url"], self._body(blob.path, offset, length, id_, desc.size),
                {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                 "Content-Range": f"{offset}-{offset + length - 1}"}, (202, 204))
            resp.release()
            session["url"] = await self._location(client, resp.headers.get("Location")
                                                  or str(session["url"]))
            offset += length
        resp = await self._send(client, "PUT", session["url"].extend_query(digest=desc.digest), b"",
                                {"Content-Length": "0"}, (201, 204))
        self._check_digest(resp, desc)

    async def _upload_offset(self, client: RegistryClient, url: URL) -> int:
        """Bytes an upload session holds (its ``Range: 0-N``)."""
        resp = await client.request("GET", url, expect=(204, 200))
        resp.release()
        end = resp.headers.get("Range", "").partition("-")[2]
        # Registries answer "0-0" for an empty upload as well as for one byte;
        # chunks are larger than that, so 0-0 means nothing yet.
        return int(end) + 1 if end.isdigit() and int(end) > 0 else 0

    def _check_digest(self, resp: aiohttp.ClientResponse, desc: Descriptor) -> None:
        announced = resp.headers.get("Docker-Content-Digest", "")
        resp.release()
        if announced.startswith("sha256:") and announced != desc.digest:
            raise InvalidArgument(f"cannot push {self.ref.familiar()}: the registry stored blob "
                                  f"{desc.digest} as {announced}")


async def push_image(service: "RegistryService", http: aiohttp.ClientSession, ref: Reference,
                     image_id: str, auth: AuthConfig, progress: Progress,
                     compression: str | None = None, chunk_size: int | None = None) -> PushResult:
    if compression is not None and compression not in COMPRESSIONS:
        raise InvalidArgument(f"invalid compression {compression!r}: use gzip or zstd")
    pusher = Pusher(service, http, ref, image_id, auth, progress, compression, chunk_size)
    try:
        return await pusher.run()
    except BerthError as e:
        raise push_error(e, ref.familiar()) from None
    except OSError as e:  # the local side: a blob unreadable, no room to recompress
        raise SystemError_(f"cannot push {ref.familiar()}: {e.strerror or e}"
                           + (f": {e.filename}" if e.filename else "")) from None
