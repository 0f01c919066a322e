"""Test kit for the registry tests: images built in memory (layers, config,
manifest, index, OCI layouts for skopeo), a scriptable registry that can
misbehave on purpose (FakeRegistry), and helpers to run real registries
(berth's server, Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

VENV_BIN = Path(sys.executable).parent

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for name in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_700_000_000
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Image:
    """An image as a registry holds it."""

    manifest: bytes
    manifest_type: str
    config: bytes
    layers: list[bytes]                 # blobs as stored (gzip)
    diff_ids: list[str]
    layer_files: list[dict[str, bytes]]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(b) for b in self.layers]

    @property
    def blobs(self) -> dict[str, bytes]:
        out = {sha256(b): b for b in self.layers}
        out[self.config_digest] = self.config
        return out


def make_image(layer_files: list[dict[str, bytes]], *, arch: str = "amd64", variant: str = "",
               docker: bool = False, cmd: list[str] | None = None,
               layer_media_type: str | None = None, compress: bool = True) -> Image:
    tars = [layer_tar(files) for files in layer_files]
    blobs = [gzip.compress(t, 6, mtime=0) if compress else t for t in tars]
    diff_ids = [sha256(t) for t in tars]
    config_doc: dict[str, Any] = {
        "architecture": arch, "os": "linux", "created": "2024-05-06T07:08:09Z",
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-05-06T07:08:09Z", "created_by": f"layer {i}"}
                    for i in range(len(tars))]}
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc).encode()
    manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    layer_type = layer_media_type or (DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP)
    if not compress and layer_media_type is None:
        layer_type = OCI_LAYER
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(b), "size": len(b)} for b in blobs],
    }).encode()
    return Image(manifest, manifest_type, config, blobs, diff_ids, layer_files)


def make_index(images: list[Image], platforms: list[dict[str, str]], docker: bool = False) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [{"mediaType": img.manifest_type, "digest": img.digest,
                       "size": len(img.manifest), "platform": plat}
                      for img, plat in zip(images, platforms)],
    }).encode()


def write_oci_layout(path: Path, image: Image, tag: str) -> Path:
    """An OCI image layout skopeo can copy from (``oci:PATH:TAG``)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in [*image.layers, image.config, image.manifest]:
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": image.manifest_type, "digest": image.digest, "size": len(image.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 with auth on)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def x_registry_auth(user: str = "", password: str = "", server: str = "") -> str:
    return base64.urlsafe_b64encode(json.dumps(
        {"username": user, "password": password, "serveraddress": server}).encode()).decode()


# -- real registries ----------------------------------------------------------------

@dataclass
class RunningRegistry:
    proc: subprocess.Popen
    port: int
    root: Path
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_berth_registry(workdir: Path, htpasswd: Path | None = None) -> RunningRegistry:
    """``berth registry serve --addr 127.0.0.1:0``; the port comes from its first line."""
    root = workdir / "berth-registry"
    log = workdir / "berth-registry.log"
    argv = [str(VENV_BIN / "berth"), "registry", "serve", "--addr", "127.0.0.1:0", "--root", str(root)]
    if htpasswd is not None:
        argv += ["--htpasswd", str(htpasswd)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log, "ab"),
                            start_new_session=True, text=True)
    line = proc.stdout.readline()
    if "serving http://" not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"berth registry serve did not start: {line!r}\n{log.read_text()}")
    port = int(line.split("serving http://", 1)[1].split()[0].rsplit(":", 1)[1])
    return RunningRegistry(proc, port, root, log)


def start_distribution(workdir: Path, htpasswd: Path | None = None) -> RunningRegistry:
    """Debian's docker-registry (distribution 2.8) with a config of its own."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        import pytest
        pytest.skip("docker-registry is not installed")
    root = workdir / "distribution"
    root.mkdir(exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {htpasswd}\n"
    config = workdir / "distribution.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + auth)
    log = workdir / "distribution.log"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    registry = RunningRegistry(proc, port, root, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
    except BaseException:
        registry.stop()
        raise
    return registry


def skopeo_copy(source: str, dest: str, *extra: str) -> None:
    proc = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                           *extra, source, dest], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"skopeo copy {source} {dest} failed:\n{proc.stderr}")


# -- a registry that misbehaves on purpose --------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]


Hook = Callable[[web.Request], Any]


@dataclass
class FakeRegistry:
    """A minimal registry (manifests and blobs, pull and push) with knobs for
    faults. Runs on its own loop in a thread, on 127.0.0.1 and a free port."""

    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)      # may return a response (or a coroutine)
    ranges: bool = True
    auth: str | None = None          # None | "basic" | "token"
    user: str = "alice"
    password: str = "s3cret"
    token_lifetime: int = 3600
    tokens_issued: list[dict[str, Any]] = field(default_factory=list)
    blob_redirect: str | None = None  # base URL the blobs redirect to (another origin)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    port: int = 0

    # -- content ------------------------------------------------------------
    def add_image(self, repo: str, tag: str | None, image: Image) -> None:
        for digest, data in image.blobs.items():
            self.blobs[digest] = data
        self.manifests[(repo, image.digest)] = (image.manifest, image.manifest_type)
        if tag:
            self.manifests[(repo, tag)] = (image.manifest, image.manifest_type)

    def add_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> None:
        self.manifests[(repo, reference)] = (body, media_type)
        self.manifests[(repo, sha256(body))] = (body, media_type)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self, method: str | None = None, contains: str = "") -> list[Seen]:
        return [s for s in self.seen if (method is None or s.method == method) and contains in s.path]

    # -- serving ----------------------------------------------------------------
    def start(self) -> "FakeRegistry":
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application()
            app.router.add_route("*", "/token", self._token)
            app.router.add_route("*", "/v2/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake registry did not start")
        return self

    def stop(self) -> None:
        async def down() -> None:
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
        return web.Response(status=status, headers={"Content-Type": "application/json", **(headers or {})},
                            body=json.dumps({"errors": [{"code": code, "message": message}]}).encode())

    async def _token(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, "/token", request.query_string, dict(request.headers)))
        if request.method == "POST":
            form = await request.post()
            if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "refresh-1":
                return self._issue(" ".join(form.getall("scope", [])))
            return web.json_response({"details": "bad refresh token"}, status=401)
        if request.headers.get("Authorization") != basic(self.user, self.password):
            return web.json_response({"details": "incorrect username or password"}, status=401)
        return self._issue(" ".join(request.query.getall("scope", [])),
                           refresh=request.query.get("offline_token") == "true")

    def _issue(self, scope: str, refresh: bool = False) -> web.Response:
        token = f"token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append({"token": token, "scope": scope, "at": time.monotonic()})
        body: dict[str, Any] = {"token": token, "expires_in": self.token_lifetime}
        if refresh:
            body["refresh_token"] = "refresh-1"
        return web.json_response(body)

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if header == basic(self.user, self.password):
                return None
            return self._error(401, "UNAUTHORIZED", "authentication required",
                               {"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "token":
            valid = {t["token"] for t in self.tokens_issued
                     if time.monotonic() - t["at"] < self.token_lifetime}
            if header.startswith("Bearer ") and header[7:] in valid:
                return None
            return self._error(401, "UNAUTHORIZED", "authentication required", {
                "WWW-Authenticate": f'Bearer realm="http://{self.address}/token",'
                                    f'service="fake-registry",scope="repository:x:pull"'})
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, request.query_string, dict(request.headers)))
        for hook in list(self.hooks):
            answer = hook(request)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer is not None:
                return answer
        denied = self._authorized(request)
        if denied is not None:
            return denied
        tail = request.match_info["tail"]
        if tail == "":
            return web.json_response({})
        if "/manifests/" in tail:
            repo, _, reference = tail.rpartition("/manifests/")
            return await self._manifest(request, repo, reference)
        if "/blobs/uploads" in tail:
            repo, _, rest = tail.partition("/blobs/uploads")
            return await self._upload(request, repo, rest.strip("/"))
        if "/blobs/" in tail:
            repo, _, digest = tail.rpartition("/blobs/")
            return await self._blob(request, repo, digest)
        if tail.endswith("/tags/list"):
            repo = tail[:-len("/tags/list")]
            tags = sorted(ref for (r, ref) in self.manifests if r == repo and ":" not in ref)
            if not tags:
                return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
            return web.json_response({"name": repo, "tags": tags})
        return self._error(404, "NOT_FOUND", "no route")

    async def _manifest(self, request: web.Request, repo: str, reference: str) -> web.StreamResponse:
        if request.method == "PUT":
            body = await request.read()
            self.add_manifest(repo, reference, body, request.headers.get("Content-Type", ""))
            return web.Response(status=201, headers={"Docker-Content-Digest": sha256(body)})
        found = self.manifests.get((repo, reference))
        if found is None:
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        body, media_type = found
        headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256(body)}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(body))})
        return web.Response(body=body, headers=headers)

    async def _blob(self, request: web.Request, repo: str, digest: str) -> web.StreamResponse:
        data = self.blobs.get(digest)
        if data is None:
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest})
        if self.blob_redirect:
            return web.Response(status=307, headers={
                "Location": f"{self.blob_redirect}/store/{digest}?sig=abc"})
        start = 0
        rng = request.headers.get("Range")
        if rng and self.ranges:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            return web.Response(status=206, body=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return web.Response(body=data)

    async def _upload(self, request: web.Request, repo: str, upload_id: str) -> web.StreamResponse:
        if request.method == "POST":
            mount = request.query.get("mount")
            if mount and mount in self.blobs and request.query.get("from"):
                return web.Response(status=201, headers={"Location": f"/v2/{repo}/blobs/{mount}",
                                                         "Docker-Content-Digest": mount})
            new_id = f"u{len(self.uploads) + 1}"
            self.uploads[new_id] = bytearray()
            return web.Response(status=202, headers={"Location": f"/v2/{repo}/blobs/uploads/{new_id}",
                                                     "Range": "0-0"})
        if upload_id not in self.uploads:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
        buf = self.uploads[upload_id]
        if request.method == "GET":
            return web.Response(status=204, headers={"Range": f"0-{max(len(buf) - 1, 0)}",
                                                     "Location": f"/v2/{repo}/blobs/uploads/{upload_id}"})
        buf += await request.read()
        if request.method == "PATCH":
            return web.Response(status=202, headers={"Range": f"0-{len(buf) - 1}",
                                                     "Location": f"/v2/{repo}/blobs/uploads/{upload_id}"})
        digest = request.query.get("digest", "")
        if sha256(bytes(buf)) != digest:
            return self._error(400, "DIGEST_INVALID", "digest did not match")
        self.blobs[digest] = bytes(buf)
        del self.uploads[upload_id]
        return web.Response(status=201, headers={"Docker-Content-Digest": digest,
                                                 "Location": f"/v2/{repo}/blobs/{digest}"})


class BlobStore:
    """A second origin that blob GETs are redirected to; records what it was sent."""

    def __init__(self, registry: FakeRegistry):
        self.registry = registry
        self.seen: list[Seen] = []
        self.inner = FakeRegistry()

    def start(self) -> "BlobStore":
        store = self

        def hook(request: web.Request):
            if request.path.startswith("/v2/store/"):
                store.seen.append(Seen(request.method, request.path, request.query_string,
                                       dict(request.headers)))
                digest = request.path.rsplit("/", 1)[1]
                return web.Response(body=store.registry.blobs[digest])
            return None
        self.inner.hooks.append(hook)
        self.inner.start()
        return self

    @property
    def url(self) -> str:
        # "localhost" and "127.0.0.1" are different origins to the client.
        return f"http://localhost:{self.inner.port}/v2"

    def stop(self) -> None:
        self.inner.stop()
