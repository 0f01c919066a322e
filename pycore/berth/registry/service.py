"""RegistryService: the daemon's registry client -- pull, push, login and
distribution inspect -- with what outlives one operation: the options
(mirrors, insecure registries), bearer tokens, the scheme each host speaks,
download/upload slots and per-blob locks (two pulls of one layer download it
once)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Awaitable, Callable

import aiohttp

from berth.errors import BerthError, InvalidArgument, NotFound, Unauthorized
from berth.images import ImageService
from berth.images import mediatypes as mt
from berth.images.manifest import parse_config, parse_index, parse_manifest, parse_platform
from berth.images.reference import Reference, parse_normalized
from berth.registry.auth import AuthConfig, TokenCache, repository_scope
from berth.registry.client import USER_AGENT, Backoff, RegistryClient
from berth.registry.errors import RegistryHTTPError, pull_error
from berth.registry.hosts import Endpoint, RegistryOptions, normalize_server_address
from berth.registry.progress import Progress
from berth.registry.pull import Puller, PullResult, describe_result, list_tags, pull_image
from berth.registry.push import PushResult, push_image
from berth.registry.sources import BlobSources

log = logging.getLogger("berth.registry")

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Docker's max-concurrent-downloads. A slot also unpacks (each layer is
# unpacked while it downloads). On the 2-core test VM a pull from a local
# registry is CPU-bound (inflate and sha256 are half of it): 4 slots measured
# no faster than 3. The biggest layers go first.
DEFAULT_DOWNLOADS = 3
DEFAULT_UPLOADS = 5     # Docker's max-concurrent-uploads


class RegistryService:
    def __init__(self, images: ImageService, events, options: RegistryOptions | None = None, *,
                 resolver: aiohttp.abc.AbstractResolver | None = None,
                 max_concurrent_downloads: int = DEFAULT_DOWNLOADS,
                 max_concurrent_uploads: int = DEFAULT_UPLOADS,
                 backoff: Backoff | None = None, unpack_while_downloading: bool = True):
        self.images = images
        self.events = events
        self.options = options or RegistryOptions()
        self.tokens = TokenCache()
        self.schemes: dict[str, str] = {}
        self.sources = BlobSources(images.db)
        self.backoff = backoff or Backoff()
        self._resolver = resolver
        # False: download every layer first, then unpack them from the store
        # (kept to measure the streamed pipeline against; see bench_registry.py).
        self.unpack_while_downloading = unpack_while_downloading
        self._downloads = max_concurrent_downloads
        self._uploads = max_concurrent_uploads
        self._slots: dict[asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, asyncio.Semaphore]] = {}
        self._blob_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()

    # -- shared pieces ----------------------------------------------------
    def _loop_slots(self) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = (asyncio.Semaphore(self._downloads), asyncio.Semaphore(self._uploads))
            self._slots = {loop: slots}  # one loop at a time: drop slots of a closed one
        return slots

    @property
    def download_slots(self) -> asyncio.Semaphore:
        return self._loop_slots()[0]

    @property
    def upload_slots(self) -> asyncio.Semaphore:
        return self._loop_slots()[1]

    def blob_lock(self, digest: str) -> asyncio.Lock:
        lock = self._blob_locks.get(digest)
        if lock is None:
            lock = asyncio.Lock()
            self._blob_locks[digest] = lock
        return lock

    def http_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=64, limit_per_host=16, resolver=self._resolver,
                                         enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     cookie_jar=aiohttp.DummyCookieJar(), read_bufsize=1 << 20,
                                     # Blobs are compressed already: never let a server
                                     # encode them again (we do not decode).
                                     headers={"User-Agent": USER_AGENT,
                                              "Accept-Encoding": "identity"})

    def client(self, http: aiohttp.ClientSession, endpoint: Endpoint, auth: AuthConfig,
               scopes: list[str]) -> RegistryClient:
        return RegistryClient(http, endpoint, auth, self.tokens, self.schemes, scopes,
                              allow_http=self.options.is_insecure, backoff=self.backoff)

    # -- pull ---------------------------------------------------------------
    async def pull(self, reference: str, auth: AuthConfig | None = None,
                   platform: str | None = None, send: Send | None = None,
                   all_tags: bool = False) -> list[PullResult]:
        """Pull ``reference``: a tag (``:latest`` when none is given), a
        digest, or with ``all_tags`` every tag of the repository. Progress
        goes to ``send`` as Docker's JSON messages, ending with the status
        line; errors are raised (the caller puts them in the stream)."""
        ref = parse_normalized(reference)
        want = parse_platform(platform)
        auth = auth or AuthConfig()
        progress = Progress(send)
        async with self.http_session() as http:
            if all_tags and ref.is_name_only:
                refs = await self._all_tags(http, ref, auth)
            else:
                refs = [ref.tag_name_only()]
            results = []
            for one in refs:
                result = await pull_image(self, http, one, auth, want, bool(platform), progress)
                results.append(result)
        display = ref.familiar() if all_tags and ref.is_name_only else refs[0].familiar()
        await progress.status(describe_result(_combined(results), display))
        return results

    async def _all_tags(self, http: aiohttp.ClientSession, ref: Reference,
                        auth: AuthConfig) -> list[Reference]:
        endpoint = self.options.endpoints(ref.domain, pull=True)[-1]
        client = self.client(http, endpoint, auth, [repository_scope(ref.path, "pull")])
        try:
            tags = await list_tags(client, ref.path, ref.familiar())
        except BerthError as e:
            raise pull_error(e, ref.familiar(), ref.familiar_name) from None
        if not tags:
            raise NotFound(f"no tags found for {ref.familiar()}")
        return [ref.with_tag(t) for t in tags]

    # -- push ---------------------------------------------------------------
    async def push(self, name: str, tag: str | None = None, auth: AuthConfig | None = None,
                   send: Send | None = None, compression: str | None = None,
                   chunk_size: int | None = None) -> list[PushResult]:
        """Push ``name``: one tag, a digest (``name@sha256:...``: the
        manifest untagged), or every local tag of the repository when
        neither is given."""
        ref = parse_normalized(name)
        if tag:
            if ref.digest is not None:
                raise InvalidArgument(f"cannot push {name} with tag {tag!r}: the reference has a digest")
            ref = ref.trim().with_tag(tag)
        auth = auth or AuthConfig()
        progress = Progress(send)
        targets = await asyncio.to_thread(self._push_targets, ref)
        results = []
        async with self.http_session() as http:
            for one, image_id in targets:
                results.append(await push_image(self, http, one, image_id, auth, progress,
                                                compression, chunk_size))
        return results

    def _push_targets(self, ref: Reference) -> list[tuple[Reference, str]]:
        if ref.digest is not None:
            return [(ref, self._image_by_manifest_digest(ref))]
        if ref.tag is not None:
            return [(ref, self._resolve_local(str(ref), ref.familiar()))]
        tags = []
        for image in self.images.list(all=True, filters={"reference": [ref.familiar_name]}):
            for text in image.get("RepoTags") or []:
                one = parse_normalized(text)
                if one.name == ref.name and one.tag:
                    tags.append((one, image["Id"]))
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        return sorted(tags, key=lambda t: t[0].tag or "")

    def _resolve_local(self, name: str, display: str) -> str:
        try:
            return self.images.resolve(name)
        except NotFound:
            raise NotFound(f"An image does not exist locally with the tag: {display}") from None

    def _image_by_manifest_digest(self, ref: Reference) -> str:
        try:
            return self.images.resolve(f"{ref.name}@{ref.digest}")
        except NotFound:
            pass
        from berth.content import digest_bytes
        for image in self.images.list(all=True):
            data, _ = self.images.manifest(image["Id"])
            if digest_bytes(data) == ref.digest:
                return image["Id"]
        raise NotFound(f"An image does not exist locally with the digest: {ref.familiar()}")

    # -- login --------------------------------------------------------------
    async def login(self, auth: AuthConfig) -> dict[str, str]:
        """``POST /auth``: check the credentials against the registry."""
        if not auth.username and not auth.identity_token:
            raise InvalidArgument("login: a username (or identity token) is required")
        domain = normalize_server_address(auth.server_address)
        endpoint = self.options.endpoint(domain)
        async with self.http_session() as http:
            client = self.client(http, endpoint, auth, [])
            try:
                await client.ping(offline_token=True)
            except RegistryHTTPError as e:
                base = await client.base()
                if e.http_status == 401:
                    raise Unauthorized(f"login attempt to {base}/v2/ failed with status: "
                                       f"401 Unauthorized") from None
                raise BerthError(f"login attempt to {base}/v2/ failed with status: "
                                 f"{e.http_status} {e.reason}") from None
        return {"Status": "Login Succeeded", "IdentityToken": client.identity_token}

    # -- distribution inspect -------------------------------------------------
    async def inspect_distribution(self, name: str, auth: AuthConfig | None = None) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the descriptor the reference
        resolves to and the platforms it offers."""
        ref = parse_normalized(name).tag_name_only()
        auth = auth or AuthConfig()
        async with self.http_session() as http:
            puller = Puller(self, http, ref, auth, parse_platform(None), False, Progress(None))
            try:
                return await self._inspect(puller, ref)
            except BerthError as e:
                raise pull_error(e, ref.familiar(), ref.familiar_name) from None

    async def _inspect(self, puller: Puller, ref: Reference) -> dict[str, Any]:
        endpoint = self.options.endpoints(ref.domain, pull=True)[-1]
        client = puller._client(endpoint)
        body, media_type, digest = await puller._fetch_manifest(
            client, ref.digest or ref.tag or "latest", f"manifest for {ref.familiar()}")
        platforms: list[dict[str, Any]] = []
        if media_type in mt.INDEXES:
            for entry in parse_index(body, media_type).manifests:
                if entry.platform and entry.platform.get("os") not in (None, "unknown"):
                    platforms.append(_platform_json(entry.platform))
        else:
            manifest = parse_manifest(body, media_type)
            config = await puller._config(client, manifest.config)
            raw = parse_config(config).raw
            platforms.append(_platform_json(raw))
        return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(body)},
                "Platforms": platforms}


def _platform_json(source: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"architecture": source.get("architecture", ""), "os": source.get("os", "")}
    if source.get("os.version"):
        out["os.version"] = source["os.version"]
    if source.get("os.features"):
        out["os.features"] = source["os.features"]
    if source.get("variant"):
        out["variant"] = source["variant"]
    return out


def _combined(results: list[PullResult]) -> PullResult:
    first = results[0]
    return PullResult(first.image_id, first.reference, first.digest,
                      updated=any(r.updated for r in results))

