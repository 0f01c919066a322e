"""Pulling an image: resolve the reference to a manifest (choosing a
platform from an index), fetch the config, then download the layers in
parallel, each unpacked while it downloads, and register the image.

What can go wrong is named with the image and the cause; nothing half-done
is left registered: new blobs and snapshots are held by a lease until the
image is registered, and the lease's cleanup removes them if it never is. A
layer download that breaks off is retried from where it stopped (HTTP
Range); if it still fails its ingest is kept, so the next pull resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from berth.content import Writer, digest_bytes
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, SystemError_
from berth.images import LayerBlob, mediatypes as mt
from berth.images.manifest import (Descriptor, Manifest, parse_config, parse_index, parse_json,
                                   parse_manifest, platform_matches, platform_string)
from berth.images.reference import Reference
from berth.registry.auth import AuthConfig, repository_scope
from berth.registry.client import Backoff, RegistryClient, connection_message, quote_path
from berth.registry.errors import TransferError, pull_error
from berth.registry.progress import Progress, short_id
from berth.registry.sink import BlobSink, make_pipe, start_unpack
from berth.registry.tasks import run_all
from berth.snapshots import chain_ids

if TYPE_CHECKING:
    from berth.registry.service import RegistryService

log = logging.getLogger("berth.registry")

MANIFEST_ACCEPT = ", ".join([mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST,
                             mt.DOCKER_MANIFEST])
MAX_MANIFEST_SIZE = 4 << 20   # Docker's limit on a manifest body
MAX_CONFIG_SIZE = 16 << 20
NETWORK_CHUNK = 1 << 20
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")


class Interrupted(Exception):
    """A transfer broke off; the bytes received so far are kept."""


class _ShortBlob(Exception):
    """The registry answered a resume with 416: it has no more bytes."""


@dataclass(frozen=True)
class PullResult:
    image_id: str
    reference: str          # what was pulled, familiar: busybox:latest, x@sha256:...
    digest: str             # the manifest (or index) digest the reference resolved to
    updated: bool           # False: "Image is up to date"


@dataclass(frozen=True)
class Resolved:
    client: RegistryClient
    digest: str             # of what the reference names (index or manifest)
    manifest: bytes         # the platform's image manifest
    media_type: str
    parsed: Manifest


async def read_limited(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """A whole (small) body, refusing more than ``limit`` bytes."""
    length = resp.content_length
    if length is not None and length > limit:
        raise InvalidArgument(f"{what} is too large ({length} bytes, limit {limit})")
    body = bytearray()
    while True:
        chunk = await resp.content.read(1 << 16)
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            raise InvalidArgument(f"{what} is too large (more than {limit} bytes)")
    return bytes(body)


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def manifest_media_type(header: str | None, body: bytes, what: str) -> str:
    """The media type of a fetched manifest: the header when it names a
    manifest type, else the body's ``mediaType``, else the shape of the body."""
    declared = _base_type(header)
    if declared in mt.MANIFESTS or declared in mt.INDEXES:
        return declared
    if declared in DOCKER_SCHEMA1:
        raise InvalidArgument(f"{what}: Docker schema 1 manifests are not supported "
                              "(push the image again with a current client)")
    doc = parse_json(body, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    body_type = doc.get("mediaType")
    if isinstance(body_type, str) and body_type:
        if body_type in mt.MANIFESTS or body_type in mt.INDEXES:
            return body_type
        raise InvalidArgument(f"{what}: unsupported manifest media type {body_type!r}")
    if doc.get("schemaVersion") == 1:
        raise InvalidArgument(f"{what}: Docker schema 1 manifests are not supported")
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    raise InvalidArgument(f"{what}: unsupported manifest media type {declared or '(none)'!r}")


class Puller:
    def __init__(self, service: "RegistryService", http: aiohttp.ClientSession, ref: Reference,
                 auth: AuthConfig, platform: dict[str, str], explicit_platform: bool,
                 progress: Progress):
        self.service = service
        self.images = service.images
        self.http = http
        self.ref = ref
        self.auth = auth
        self.platform = platform
        self.explicit_platform = explicit_platform
        self.progress = progress
        self.image = ref.familiar()
        self.lease = None

    # -- resolving --------------------------------------------------------
    def _client(self, endpoint) -> RegistryClient:
        return self.service.client(self.http, endpoint, self.auth,
                                   [repository_scope(self.ref.path, "pull")])

    async def resolve(self) -> Resolved:
        """Find the manifest on the first endpoint that has it (mirrors
        before the registry itself)."""
        endpoints = self.service.options.endpoints(self.ref.domain, pull=True)
        last_error: BerthError | None = None
        for endpoint in endpoints:
            client = self._client(endpoint)
            try:
                return await self._resolve_on(client)
            except BerthError as e:
                if not endpoint.mirror:
                    raise
                log.info("mirror %s cannot serve %s (%s); trying the next endpoint",
                         endpoint.host, self.image, e.message)
                last_error = e
        assert last_error is not None
        raise last_error

    async def _fetch_manifest(self, client: RegistryClient, reference: str, what: str
                              ) -> tuple[bytes, str, str]:
        """(body, media type, digest), verified against the digest asked for
        or the one the registry announces."""
        path = f"/v2/{quote_path(self.ref.path)}/manifests/{reference}"
        for attempt in range(client.backoff.attempts):
            resp = await client.request("GET", path, headers={"Accept": MANIFEST_ACCEPT})
            try:
                body = await read_limited(resp, MAX_MANIFEST_SIZE, what)
                break
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    asyncio.TimeoutError) as e:
                if attempt + 1 >= client.backoff.attempts:
                    raise TransferError(f"{what}: {connection_message(e)}") from None
                await asyncio.sleep(client.backoff.delay(attempt))
            finally:
                resp.release()
        digest = digest_bytes(body)
        expected = reference if ":" in reference else resp.headers.get("Docker-Content-Digest", "")
        if expected.startswith("sha256:") and expected != digest:
            raise InvalidArgument(f"{what}: digest mismatch: the registry announced {expected}, "
                                  f"the content has {digest}")
        return body, manifest_media_type(resp.headers.get("Content-Type"), body, what), digest

    async def _resolve_on(self, client: RegistryClient) -> Resolved:
        reference = self.ref.digest or self.ref.tag or "latest"
        what = f"manifest for {self.image}"
        body, media_type, digest = await self._fetch_manifest(client, reference, what)
        top_digest = digest
        if media_type in mt.INDEXES:
            index = parse_index(body, media_type, f"manifest list of {self.image}")
            chosen = self._choose(index.manifests)
            body, media_type, digest = await self._fetch_manifest(
                client, chosen.digest, f"manifest {chosen.digest} of {self.image}")
            if media_type not in mt.MANIFESTS:
                raise InvalidArgument(f"manifest {chosen.digest} of {self.image}: expected an image "
                                      f"manifest, got {media_type}")
        parsed = parse_manifest(body, media_type, f"manifest of {self.image}")
        return Resolved(client, top_digest, body, media_type, parsed)

    def _choose(self, entries: tuple[Descriptor, ...]) -> Descriptor:
        candidates = [d for d in entries if d.media_type in mt.MANIFESTS
                      and platform_matches(d.platform, self.platform)]
        # An exact variant beats an entry that has none.
        candidates.sort(key=lambda d: (d.platform or {}).get("variant", "") != self.platform.get("variant", ""))
        if not candidates:
            raise NotFound(f"no matching manifest for {platform_string(self.platform)} in the "
                           f"manifest list entries of {self.image}")
        return candidates[0]

    # -- pulling ----------------------------------------------------------
    async def run(self) -> PullResult:
        resolved = await self.resolve()
        # Only now: an error before the first message is an HTTP error for the client.
        await self.progress.status(f"Pulling from {self.ref.path}", self.ref.tag or self.ref.digest)
        client = resolved.client
        manifest = resolved.parsed
        config_bytes = await self._config(client, manifest.config)
        config = parse_config(config_bytes, f"config of {self.image}")
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"{self.image}: the manifest has {len(manifest.layers)} layers but the config "
                f"lists {len(config.diff_ids)} diff IDs")
        if self.explicit_platform:
            got = {"os": config.raw.get("os", ""), "architecture": config.raw.get("architecture", "")}
            if config.raw.get("variant"):
                got["variant"] = config.raw["variant"]
            if not platform_matches(got, self.platform):
                raise NotFound(f"image with reference {self.image} was found but does not match "
                               f"the specified platform: wanted {platform_string(self.platform)}, "
                               f"actual: {platform_string(got)}")
        before = await asyncio.to_thread(self._current, self.ref)
        chains = chain_ids(config.diff_ids)
        self.lease = self.images.lease()
        try:
            jobs = []
            for i, (desc, diff_id) in enumerate(zip(manifest.layers, config.diff_ids)):
                if await self._wanted(desc, chains[i]):
                    jobs.append((desc, diff_id, chains[i - 1] if i else None, chains[i]))
            # Biggest first: with more layers than slots, the long ones must
            # not be the ones that start last.
            jobs.sort(key=lambda job: job[0].size, reverse=True)
            await run_all(self._layer(client, *job) for job in jobs)
            layers = [LayerBlob(d.digest, d.media_type, d.size, diff)
                      for d, diff in zip(manifest.layers, config.diff_ids)]
            tags = [str(self.ref)] if self.ref.tag and not self.ref.digest else []
            repo_digest = f"{self.ref.name}@{resolved.digest}"
            image_id = await asyncio.to_thread(
                self.images.register_image, config_bytes, layers,
                config_media_type=manifest.config.media_type, manifest=resolved.manifest,
                manifest_media_type=resolved.media_type, tags=tags, repo_digests=[repo_digest])
        finally:
            lease, self.lease = self.lease, None
            await asyncio.to_thread(lease.release)
        await asyncio.to_thread(
            self.service.sources.add, [manifest.config.digest, *(d.digest for d in manifest.layers)],
            self.ref.domain, self.ref.path)
        self.service.events.publish("image", "pull", self.image,
                                    {"name": self.ref.familiar_name})
        await self.progress.status(f"Digest: {resolved.digest}")
        return PullResult(image_id, self.image, resolved.digest, updated=before != image_id)

    def _current(self, ref: Reference) -> str | None:
        try:
            return self.images.resolve(str(ref))
        except NotFound:
            return None

    async def _config(self, client: RegistryClient, desc: Descriptor) -> bytes:
        if await asyncio.to_thread(self.images.content.exists, desc.digest):
            return await asyncio.to_thread(self.images.content.read, desc.digest, MAX_CONFIG_SIZE)
        what = f"config {desc.digest} of {self.image}"
        if desc.size > MAX_CONFIG_SIZE:
            raise InvalidArgument(f"{what} is too large ({desc.size} bytes, limit {MAX_CONFIG_SIZE})")
        path = f"/v2/{quote_path(self.ref.path)}/blobs/{desc.digest}"
        for attempt in range(client.backoff.attempts):
            resp = await client.request("GET", path)
            try:
                data = await read_limited(resp, MAX_CONFIG_SIZE, what)
                break
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    asyncio.TimeoutError) as e:
                if attempt + 1 >= client.backoff.attempts:
                    raise TransferError(f"{what}: {connection_message(e)}") from None
                await asyncio.sleep(client.backoff.delay(attempt))
            finally:
                resp.release()
        actual = digest_bytes(data)
        if actual != desc.digest or len(data) != desc.size:
            raise InvalidArgument(f"{what} failed verification: got {len(data)} bytes "
                                  f"with digest {actual}")
        return data

    async def _wanted(self, desc: Descriptor, chain: str) -> bool:
        """Whether a layer must be fetched; announces it either way, in
        manifest order as Docker does."""
        assert self.lease is not None
        # Leased before looking, so a concurrent prune cannot take them in between.
        self.lease.add_blob(desc.digest)
        self.lease.add_snapshot(chain)
        content, snapshots = self.images.content, self.images.snapshots
        present = await asyncio.to_thread(
            lambda: content.exists(desc.digest) and snapshots.exists(chain))
        await self.progress.layer(short_id(desc.digest), "Already exists" if present
                                  else "Pulling fs layer")
        return not present

    async def _layer(self, client: RegistryClient, desc: Descriptor, diff_id: str,
                     parent: str | None, chain: str) -> None:
        assert self.lease is not None
        id_ = short_id(desc.digest)
        content, snapshots = self.images.content, self.images.snapshots
        async with self.service.blob_lock(desc.digest):
            have_blob = await asyncio.to_thread(content.exists, desc.digest)
            if not have_blob and self.service.download_slots.locked():
                await self.progress.layer(id_, "Waiting")
            async with self.service.download_slots:
                if not have_blob:
                    unpack = (self.service.unpack_while_downloading
                              and not await asyncio.to_thread(snapshots.exists, chain))
                    await self._download(client, desc, diff_id, parent, id_, unpack)
                elif not await asyncio.to_thread(snapshots.exists, chain):
                    await self.progress.layer(id_, "Extracting")
                    await asyncio.to_thread(
                        snapshots.prepare, content.path(desc.digest), diff_id=diff_id,
                        parent=parent, name=f"{self.image}: layer {desc.digest}",
                        on_commit=self.lease.add_snapshot)
        await self.progress.layer(id_, "Pull complete")

    async def _download(self, client: RegistryClient, desc: Descriptor, diff_id: str,
                        parent: str | None, id_: str, unpack: bool) -> None:
        """Download (and unpack) one layer; a resumed ingest that turns out
        corrupt is discarded and the layer fetched once more from scratch."""
        resumed = await self._attempt(client, desc, diff_id, parent, id_, unpack, resume=True)
        if resumed is not None:
            log.warning("%s: resumed download of %s did not verify (%s); starting over",
                        self.image, desc.digest, resumed.message)
            again = await self._attempt(client, desc, diff_id, parent, id_, unpack, resume=False)
            if again is not None:
                raise again

    async def _attempt(self, client: RegistryClient, desc: Descriptor, diff_id: str,
                       parent: str | None, id_: str, unpack: bool, resume: bool
                       ) -> InvalidArgument | None:
        """One go at a layer. Returns the verification error of a resumed
        ingest (the caller starts over); raises everything else."""
        assert self.lease is not None
        ref = f"pull-{desc.digest.replace(':', '-')}"
        try:
            writer: Writer = await asyncio.to_thread(
                self.images.content.writer, ref, desc.digest, desc.size, resume)
        except Conflict:
            raise Conflict(f"{self.image}: layer {desc.digest} is being downloaded by another "
                           "process using this data root") from None
        if writer.offset > desc.size:
            # Longer than the blob: not a prefix of it. Start over.
            writer.abort()
            writer = await asyncio.to_thread(self.images.content.writer, ref, desc.digest,
                                             desc.size, False)
        resumed_from = writer.offset
        keep = False
        unpacking: asyncio.Future | None = None
        sink = None
        try:
            pipe_read = pipe_write = None
            if unpack:
                pipe_read, pipe_write = make_pipe()
                layer_name = f"{self.image}: layer {desc.digest}"
                lease = self.lease

                def prepare(fd: int):
                    return self.images.snapshots.prepare(fd, diff_id=diff_id, parent=parent,
                                                         name=layer_name,
                                                         on_commit=lease.add_snapshot)
                try:
                    unpacking = start_unpack(prepare, pipe_read, id_)
                except BaseException:
                    os_close(pipe_read)
                    os_close(pipe_write)
                    raise
            sink = BlobSink(writer, pipe_write, id_)
            try:
                await self._transfer(client, desc, sink, resumed_from, id_, unpacking)
            except Interrupted as e:
                keep = True
                raise TransferError(f"failed to download layer {desc.digest} of {self.image}: "
                                    f"{e}") from None
            await sink.finish()
            if writer.offset != desc.size or writer.digest() != desc.digest:
                error = InvalidArgument(
                    f"{self.image}: layer {desc.digest} failed verification: got "
                    f"{writer.offset} bytes with digest {writer.digest()}")
                if unpacking is not None:
                    await _settle_quietly(unpacking)
                if resumed_from:
                    return error
                raise error
            await self.progress.layer(id_, "Verifying Checksum")
            await self.progress.layer(id_, "Download complete")
            if unpacking is not None:
                await self.progress.bar(id_, "Extracting", desc.size, desc.size, final=True)
                await unpacking
            await asyncio.to_thread(writer.commit)
            return None
        finally:
            if sink is not None:
                await sink.abort()
            if unpacking is not None and not unpacking.done():
                await _settle_quietly(unpacking)
            if not writer.closed:
                if keep:
                    writer.keep = True
                writer.__exit__(None, None, None)

    async def _transfer(self, client: RegistryClient, desc: Descriptor, sink: BlobSink,
                        offset: int, id_: str, unpacking: asyncio.Future | None) -> None:
        """Stream the blob into the sink from ``offset``, resuming with Range
        after a broken connection. Raises Interrupted when retries run out."""
        path = f"/v2/{quote_path(self.ref.path)}/blobs/{desc.digest}"
        backoff: Backoff = client.backoff
        received = offset
        failures = 0
        while True:
            if unpacking is not None and unpacking.done() and unpacking.exception() is not None:
                raise unpacking.exception()  # the layer is bad: no point downloading the rest
            headers = {"Range": f"bytes={received}-"} if received else None
            try:
                resp = await client.request("GET", path, headers=headers,
                                            expect=(200, 206, 416) if received else (200,))
            except TransferError as e:
                raise Interrupted(e.message) from None
            progressed = False
            try:
                skip = 0
                if resp.status == 416:
                    # The registry has no bytes past what we hold: the blob is short.
                    raise _ShortBlob()
                if received and resp.status == 200:
                    skip = received  # the server ignored Range: drop what we have
                elif resp.status == 206:
                    start = _range_start(resp.headers.get("Content-Range"))
                    if start != received:
                        raise InvalidArgument(f"layer {desc.digest}: the registry answered range "
                                              f"{resp.headers.get('Content-Range')!r} for "
                                              f"bytes={received}-")
                async for chunk in resp.content.iter_chunked(NETWORK_CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    if received + len(chunk) > desc.size:
                        raise InvalidArgument(
                            f"{self.image}: layer {desc.digest} is larger than the {desc.size} "
                            "bytes its descriptor says")
                    await sink.write(chunk)
                    received += len(chunk)
                    progressed = True
                    await self.progress.bar(id_, "Downloading", received, desc.size)
                    if unpacking is not None and unpacking.done() and unpacking.exception():
                        raise unpacking.exception()
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    asyncio.TimeoutError) as e:
                cause = connection_message(e)
            except _ShortBlob:
                cause = f"unexpected end of blob after {received} of {desc.size} bytes"
            else:
                if received >= desc.size:
                    await self.progress.bar(id_, "Downloading", received, desc.size, final=True)
                    return
                cause = f"unexpected end of blob after {received} of {desc.size} bytes"
            finally:
                resp.release()
            failures = 0 if progressed else failures + 1
            if failures >= backoff.attempts:
                raise Interrupted(cause)
            delay = backoff.delay(failures)
            log.info("%s: layer %s: %s; resuming at byte %d", self.image, desc.digest, cause, received)
            await self.progress.layer(id_, f"Retrying: {cause}")
            await asyncio.sleep(delay)


def _range_start(content_range: str | None) -> int | None:
    if not content_range:
        return None
    unit, _, rest = content_range.strip().partition(" ")
    if unit != "bytes":
        return None
    start = rest.partition("-")[0]
    return int(start) if start.isdigit() else None


def os_close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


async def _settle_quietly(future: asyncio.Future) -> None:
    try:
        await future
    except BaseException:  # noqa: BLE001 - only waiting for the thread to end
        pass


async def list_tags(client: RegistryClient, repo_path: str, image: str) -> list[str]:
    """Every tag of a repository, following ``Link`` pagination."""
    tags: list[str] = []
    path: str | None = f"/v2/{quote_path(repo_path)}/tags/list?n=1000"
    seen = set()
    while path and path not in seen:
        seen.add(path)
        resp = await client.request("GET", path)
        try:
            body = await read_limited(resp, 16 << 20, f"tag list of {image}")
            link = resp.headers.get("Link", "")
        finally:
            resp.release()
        data = parse_json(body, f"tag list of {image}")
        page = data.get("tags") if isinstance(data, dict) else None
        if page is None:
            page = []
        if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
            raise InvalidArgument(f"tag list of {image}: tags is not a list of strings")
        tags.extend(page)
        path = _next_link(link)
    return sorted(dict.fromkeys(tags))


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if start != -1 and end > start:
                return part[start + 1:end]
    return None


async def pull_image(service: "RegistryService", http: aiohttp.ClientSession, ref: Reference,
                     auth: AuthConfig, platform: dict[str, str], explicit_platform: bool,
                     progress: Progress) -> PullResult:
    puller = Puller(service, http, ref, auth, platform, explicit_platform, progress)
    try:
        return await puller.run()
    except BerthError as e:
        raise pull_error(e, ref.familiar(), ref.familiar_name) from None
    except OSError as e:  # the local side: a full disk, a broken data root
        raise SystemError_(f"cannot pull {ref.familiar()}: {e.strerror or e}"
                           + (f": {e.filename}" if e.filename else "")) from None


def describe_result(result: PullResult, ref_display: str) -> str:
    verb = "Downloaded newer image" if result.updated else "Image is up to date"
    return f"Status: {verb} for {ref_display}"

