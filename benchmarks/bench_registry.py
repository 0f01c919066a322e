#!/usr/bin/env python3
"""Registry pull and push: berth against stock Docker, side by side.

One run builds a multi-layer image from files already on the machine
(several layers, hundreds of MB unpacked, thousands of files), puts it in a
local registry (Debian's docker-registry on 127.0.0.1), and starts a private
berthd and a private dockerd (benchmarks/engines.py). Then, interleaved:

- pull: each engine pulls the image from that registry into an empty store
  (the image and its layers are removed before every run);
- push: each engine pushes it to an empty registry of its own (a fresh
  docker-registry per run, so every layer is really uploaded).

Prints berth, docker and berth/docker of the medians; ``--json PATH``
writes the rows in the shape of ``summarise()`` in benchmarks/run.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engines import Berth, Docker, Engine  # noqa: E402
from run import finish, print_row, suite_args, summarise, timed  # noqa: E402

# Directories copied into layers, one layer each (skipped when missing).
LAYER_SOURCES = [
    ["usr/include"],
    ["usr/lib/gcc"],
    ["usr/lib/python3", "usr/share/perl"],
    ["usr/share/i18n", "usr/share/man"],
]
MIN_UNPACKED = 200 << 20
REPO = "bench/big"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the image ----------------------------------------------------------------------

def build_image(scratch: Path) -> tuple[Path, dict]:
    """An OCI layout with one gzip layer per LAYER_SOURCES entry. Layers are
    packed by berth's Rust packer from hard-linked copies (same filesystem),
    so paths stay /usr/..."""
    from berth import _native

    layout = scratch / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers, diff_ids = [], []
    unpacked = files = 0
    for i, sources in enumerate(LAYER_SOURCES):
        stage = scratch / f"stage{i}"
        present = [s for s in sources if os.path.isdir(f"/{s}")]
        if not present:
            continue
        for source in present:
            target = stage / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if subprocess.run(["cp", "-al", f"/{source}", str(target)]).returncode != 0:
                subprocess.run(["cp", "-a", f"/{source}", str(target)], check=True)
        for dirpath, _, names in os.walk(stage):
            for name in names:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    unpacked += os.path.getsize(path)
                    files += 1
        out = scratch / f"layer{i}.tar.gz"
        result = _native.pack_layer(str(stage), str(out), compression="gzip")
        shutil.rmtree(stage)
        digest = result["digest"]
        os.rename(out, blobs / digest.split(":")[1])
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": digest, "size": result["size"]})
        diff_ids.append(result["diff_id"])
    if unpacked < MIN_UNPACKED:
        raise RuntimeError(f"only {unpacked >> 20} MiB of files found for the image; need "
                           f"{MIN_UNPACKED >> 20} MiB")
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                    for i in range(len(layers))]}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    (blobs / config_digest.split(":")[1]).write_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": layers}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest.split(":")[1]).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    facts = {"layers": len(layers), "files": files, "unpacked_mib": unpacked >> 20,
             "compressed_mib": sum(layer["size"] for layer in layers) >> 20}
    return layout, facts


# -- registries -----------------------------------------------------------------------

class Registry:
    """Debian's docker-registry with a root and port of its own."""

    def __init__(self, scratch: Path, name: str):
        self.dir = scratch / name
        self.dir.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n")
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited; see {self.dir / 'log'}")
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not answer")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- workloads ------------------------------------------------------------------------


def empty_store(engine: Engine, refs: list[str]) -> None:
    engine.run("rmi", "-f", *refs, check=False)
    if engine.name == "docker":
        engine.run("image", "prune", "-af", check=False)
    listed = engine.run("images", "-q").stdout.split()
    if listed:
        raise RuntimeError(f"{engine.name}: images left before a pull: {listed}")


def measure(engines: list[Engine], seed: Registry, scratch: Path, repeat: int) -> list[dict]:
    source = f"{seed.address}/{REPO}:v1"
    pull: dict[str, list[float]] = {e.name: [] for e in engines}
    push: dict[str, list[float]] = {e.name: [] for e in engines}
    errors: dict[str, str | None] = {"pull": None, "push": None}
    for rep in range(repeat):
        for engine in engines:
            try:
                empty_store(engine, [source])
                pull[engine.name].append(timed(lambda: engine.run("pull", "-q", source)))
                log(f"pull {engine.name} #{rep + 1}: {pull[engine.name][-1]:.2f}s")
            except Exception as exc:  # reported as failed, never dropped
                errors["pull"] = f"{engine.name}: {exc}"
                traceback.print_exc()
                continue
            target = Registry(scratch, f"push-{engine.name}-{rep}")
            try:
                dest = f"{target.address}/{REPO}:v1"
                engine.run("tag", source, dest)
                push[engine.name].append(timed(lambda: engine.run("push", "-q", dest)))
                log(f"push {engine.name} #{rep + 1}: {push[engine.name][-1]:.2f}s")
                engine.run("rmi", dest, check=False)
            except Exception as exc:
                errors["push"] = f"{engine.name}: {exc}"
                traceback.print_exc()
            finally:
                target.stop()
    return [summarise("registry: pull multi-layer image", "s", True, pull, errors["pull"]),
            summarise("registry: push multi-layer image", "s", True, push, errors["push"])]


def pipeline(seed: Registry, scratch: Path, repeat: int) -> dict:
    """berth's own choice, measured in process: each layer unpacked while it
    downloads (network -> pipe -> Rust) against downloading every layer to
    the store first and unpacking them afterwards (in parallel)."""
    import asyncio

    from berth.config import Config
    from berth.events import EventBus
    from berth.images import ImageService
    from berth.registry.service import RegistryService

    samples: dict[str, list[float]] = {"berth": [], "download-then-unpack": []}
    roots = []
    try:
        for rep in range(repeat):
            for name, streamed in (("berth", True), ("download-then-unpack", False)):
                root = scratch / f"pipeline-{name}-{rep}"
                roots.append(root)
                images = ImageService(Config(root=str(root)), EventBus())
                service = RegistryService(images, images.events, unpack_while_downloading=streamed)
                try:
                    samples[name].append(timed(lambda: asyncio.run(
                        service.pull(f"{seed.address}/{REPO}:v1"))))
                    log(f"pipeline {name} #{rep + 1}: {samples[name][-1]:.2f}s")
                finally:
                    images.close()
    finally:
        # Deleted only now: on ext4 without a journal (this VM's root) inodes
        # freed in the last minutes slow down creating files where they were,
        # which would tax whichever variant runs next.
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    return summarise("registry: berth pull, streamed unpack", "s", True, samples,
                     reference="download-then-unpack")


def main() -> int:
    args = suite_args(__doc__, repeat=3)
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/bin/{tool}"):
            print(f"{tool} is not installed (make deps installs it)", file=sys.stderr)
            return 2
    scratch = Path(tempfile.mkdtemp(prefix="berth-bench-registry-"))
    engines: list[Engine] = [Berth(scratch)] + ([] if args.berth_only else [Docker(scratch)])
    seed = None
    rows: list[dict] = []
    try:
        log("building the image...")
        layout, facts = build_image(scratch)
        log(f"image: {facts['layers']} layers, {facts['files']} files, {facts['unpacked_mib']} MiB "
            f"unpacked, {facts['compressed_mib']} MiB compressed")
        seed = Registry(scratch, "seed")
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                        f"docker://{seed.address}/{REPO}:v1"], check=True, capture_output=True)
        shutil.rmtree(layout)
        for engine in engines:
            engine.start()
        print(f"{'workload':<34} {'berth':>14} {'reference':>14} {'ratio':>8}")
        rows = measure(engines, seed, scratch, args.repeat)
        for engine in engines:
            engine.stop()  # the in-process comparison runs on a quiet machine
        rows.append(pipeline(seed, scratch, args.repeat))
        for row in rows:
            row["image"] = facts
            print_row(row)
    except Exception:
        traceback.print_exc()
        rows.append({"workload": "registry benchmark setup", "failed": traceback.format_exc(limit=1)})
    finally:
        for engine in engines:
            engine.stop()
        if seed is not None:
            seed.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return finish(rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
