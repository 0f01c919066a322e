#!/usr/bin/env python3
"""Dockerfile builds: berth against stock Docker's classic builder, side by side.

One run makes a realistic context from files already on the machine (three
directories, about 280 MB and more than ten thousand files), starts a private
berthd and a private dockerd (benchmarks/engines.py), gives both the busybox
example image, then measures, interleaved (berth, docker, berth, ...), the
build of this Dockerfile::

    FROM busybox
    ENV APP_HOME=/app
    WORKDIR /app
    COPY part1 /app/part1      # three COPY layers of the context's files
    COPY part2 /app/part2
    COPY part3 /app/part3
    RUN find /app -type f | wc -l > /app/count
    RUN echo built-N > /app/stamp

- cold: nothing cached (the built images and the build cache are removed first);
- no-op: the same build again;
- partial: the last RUN changed (N increases), the rest from the cache.

berth is driven through its CLI (which has the daemon read the context in
place), Docker through ``DOCKER_BUILDKIT=0 docker build`` (which tars and
uploads the context). Prints berth, docker and berth/docker of the medians;
``--json PATH`` writes the rows in the shape of ``summarise()`` in
benchmarks/run.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from engines import Berth, Docker, Engine  # noqa: E402
from run import finish, print_row, suite_args, summarise  # noqa: E402

ROOTFS = REPO / "examples" / "busybox" / "rootfs.tar"
# Directories copied into the context, one COPY layer each (the first that exists).
PARTS = [
    ["/usr/include", "/usr/lib/gcc"],
    ["/usr/lib/python3.11", "/usr/lib/python3"],
    ["/usr/share/doc", "/usr/share/man"],
]
TAG = "bench/app:latest"
DOCKERFILE = """\
FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY part1 /app/part1
COPY part2 /app/part2
COPY part3 /app/part3
RUN find /app -type f | wc -l > /app/count
RUN echo built-{n} > /app/stamp
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_context(scratch: Path) -> tuple[Path, dict]:
    ctx = scratch / "context"
    ctx.mkdir()
    files = size = 0
    for i, candidates in enumerate(PARTS, 1):
        source = next((c for c in candidates if os.path.isdir(c)), None)
        if source is None:
            raise RuntimeError(f"none of {candidates} exists on this machine")
        # cp -a: a private copy both engines read, with its owners and modes
        subprocess.run(["cp", "-a", source, str(ctx / f"part{i}")], check=True)
    for root, _dirs, names in os.walk(ctx):
        for name in names:
            st = os.lstat(os.path.join(root, name))
            files += 1
            size += st.st_size
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(n=0))
    return ctx, {"files": files, "mib": round(size / (1 << 20))}


class Build:
    """One engine's builds of the context."""

    def __init__(self, engine: Engine, ctx: Path):
        self.engine = engine
        self.ctx = ctx

    def env(self) -> dict[str, str]:
        env = self.engine.env()
        env["DOCKER_BUILDKIT"] = "0"
        env["BERTH_NO_AUTOSTART"] = "1"
        return env

    def build(self) -> float:
        argv = [*self.engine.cli(), "build", "-t", TAG, str(self.ctx)]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env(), capture_output=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{self.engine.name} build failed ({proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace')[-2000:]}")
        return elapsed

    def forget(self) -> None:
        """Nothing cached: the built image (and its untagged parents), the build cache."""
        self.engine.run("rmi", "-f", TAG, check=False)
        self.engine.run("builder", "prune", "-af", check=False)
        if self.engine.name == "docker":
            # the classic builder's cache is its intermediate images
            out = self.engine.run("images", "-aq", "--filter", "dangling=true", check=False)
            ids = out.stdout.decode().split()
            if ids:
                self.engine.run("rmi", "-f", *ids, check=False)


def seed_busybox(engine: Engine, scratch: Path) -> None:
    ctx = scratch / f"busybox-{engine.name}"
    ctx.mkdir()
    shutil.copy(REPO / "examples" / "busybox" / "Dockerfile", ctx / "Dockerfile")
    shutil.copy(ROOTFS, ctx / "rootfs.tar")
    env = engine.env()
    env["DOCKER_BUILDKIT"] = "0"
    subprocess.run([*engine.cli(), "build", "-q", "-t", "busybox:latest", str(ctx)], env=env,
                   check=True, capture_output=True)


def measure(builds: list[Build], repeat: int) -> list[dict]:
    ctx = builds[0].ctx
    counter = [0]

    def set_stamp() -> None:
        counter[0] += 1
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(n=counter[0]))

    samples = {name: {b.engine.name: [] for b in builds} for name in ("cold", "noop", "partial")}
    errors: dict[str, str | None] = {"cold": None, "noop": None, "partial": None}
    for rep in range(repeat):
        for phase in ("cold", "noop", "partial"):
            if errors[phase]:
                continue
            try:
                if phase == "partial":
                    set_stamp()  # the same change for every engine of this round
                for b in builds:
                    if phase == "cold":
                        b.forget()
                    elif phase == "noop":
                        b.build()  # warm: make sure this round's context is cached
                    dt = b.build()
                    samples[phase][b.engine.name].append(dt)
                    log(f"{phase} {b.engine.name} #{rep + 1}: {dt:.3f}s")
            except Exception as exc:  # reported as failed, never dropped
                errors[phase] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
    titles = {"cold": "build: cold (3 COPY layers, 2 RUN)", "noop": "build: no-op rebuild",
              "partial": "build: last RUN changed"}
    return [summarise(titles[p], "s", True, samples[p], errors[p]) for p in ("cold", "noop", "partial")]


def main() -> int:
    args = suite_args(__doc__, repeat=3)
    if not ROOTFS.exists():
        subprocess.run(["sh", str(REPO / "examples/busybox/make-rootfs.sh"), str(ROOTFS)], check=True)
    scratch = Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    engines: list[Engine] = [Berth(scratch)] + ([] if args.berth_only else [Docker(scratch)])
    rows: list[dict] = []
    try:
        log("making the context...")
        ctx, facts = make_context(scratch)
        log(f"context: {facts['files']} files, {facts['mib']} MiB")
        for engine in engines:
            engine.start()
            seed_busybox(engine, scratch)
        print(f"{'workload':<34} {'berth':>14} {'reference':>14} {'ratio':>8}")
        rows = measure([Build(e, ctx) for e in engines], args.repeat)
        for row in rows:
            row["context"] = facts
            print_row(row)
    except Exception:
        traceback.print_exc()
        rows.append({"workload": "build benchmark setup", "failed": traceback.format_exc(limit=1)})
    finally:
        for engine in engines:
            engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return finish(rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
