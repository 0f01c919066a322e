#!/usr/bin/env python3
"""Networking on the path of ``run``: berth against stock Docker, side by side.

Starts a private berthd and a private dockerd (benchmarks/engines.py; each
with its own root, socket and default bridge: berth's name and subnet derive
from its root, Docker's is docker0), imports the same busybox rootfs into
both, and measures, interleaved (berth, docker, berth, ...):

- ``run --rm IMG true`` on each engine's default bridge (the issue's goal:
  berth at most 0.15x Docker);
- the same on a user-defined bridge network (embedded DNS, its own bridge);
- the same with a published port (-p 0:80: a host port, DNAT rules);
- 24 such runs, 8 at a time, on the default bridge (wall time);
- ``network create`` + ``network rm`` of a user-defined network.

Prints berth, docker and berth/docker of the medians; ``--json PATH``
writes the rows in the shape of ``summarise()`` in benchmarks/run.py.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from engines import Berth, Docker, Engine  # noqa: E402
from run import finish, print_row, suite_args, summarise, timed  # noqa: E402

ROOTFS = REPO / "examples" / "busybox" / "rootfs.tar"
IMAGE = "berth-bench/netbox:latest"
NETWORK = "benchnet"



def run_true(*extra: str):
    return lambda e: timed(lambda: e.run("run", "--rm", *extra, IMAGE, "true"))


def parallel_runs(engine: Engine, total: int = 24, concurrency: int = 8) -> float:
    def one(_):
        engine.run("run", "--rm", IMAGE, "true")
    with ThreadPoolExecutor(concurrency) as pool:
        return timed(lambda: list(pool.map(one, range(total))))


def create_remove(engine: Engine) -> float:
    def cycle():
        engine.run("network", "create", "benchtmp")
        engine.run("network", "rm", "benchtmp")
    return timed(cycle)


WORKLOADS = [
    ("network: run --rm true, default bridge", run_true()),
    ("network: run --rm true, user network", run_true("--network", NETWORK)),
    ("network: run --rm -p 0:80 true", run_true("-p", "0:80")),
    ("network: 24 runs 8 at a time, bridge", parallel_runs),
    ("network: network create + rm", create_remove),
]


def measure(engines: list[Engine], repeat: int) -> list[dict]:
    rows = []
    for name, fn in WORKLOADS:
        samples: dict[str, list[float]] = {e.name: [] for e in engines}
        error = None
        try:
            for engine in engines:
                fn(engine)  # warm-up: first bridge, caches, pools
            for _ in range(repeat):
                for engine in engines:
                    samples[engine.name].append(fn(engine))
        except Exception as exc:  # reported as failed, never dropped
            error = f"{type(exc).__name__}: {exc}"
        rows.append(summarise(name, "s", True, samples, error))
        print_row(rows[-1])
    return rows


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    args = suite_args(__doc__, repeat=15)
    if not ROOTFS.exists():
        print(f"{ROOTFS} is missing (make builds it)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="berth-bench-net-"))
    engines: list[Engine] = [Berth(scratch)] + ([] if args.berth_only else [Docker(scratch)])
    rows: list[dict] = []
    try:
        for engine in engines:
            engine.start()
            engine.run("import", str(ROOTFS), IMAGE)
            engine.run("network", "create", NETWORK)
        print(f"{'workload':<34} {'berth':>14} {'reference':>14} {'ratio':>8}")
        rows = measure(engines, args.repeat)
    except Exception:
        traceback.print_exc()
        rows.append({"workload": "network benchmark setup", "failed": traceback.format_exc(limit=1)})
    finally:
        for engine in engines:
            try:
                if engine.proc is not None:
                    ids = engine.run("ps", "-aq", check=False).stdout.split()
                    if ids:
                        engine.run("rm", "-f", *[i.decode() for i in ids], check=False)
                    engine.run("network", "rm", NETWORK, check=False)
            finally:
                engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return finish(rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
