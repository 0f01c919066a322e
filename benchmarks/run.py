#!/usr/bin/env python3
"""`make bench`: berth against stock Docker, side by side in one run.

Starts a private berthd and a private dockerd (own data roots and sockets under
a scratch dir; both stopped at the end), prepares the same busybox image in
both, then measures each workload interleaved (berth, docker, berth, ...) and
reports median and spread. Results: a table on stdout,
benchmarks/results/latest.json and benchmarks/results/latest.png.

A workload that fails in either engine is reported as failed, never dropped.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from engines import Berth, Docker, Engine, rss_kib  # noqa: E402

ROOTFS = REPO / "examples" / "busybox" / "rootfs.tar"
IMAGE = "berth-bench/busybox:latest"

# A workload: name, unit, lower-is-better, and fn(engine) -> one measurement.
WORKLOADS: list[tuple[str, str, bool, Callable[[Engine], float]]] = []


def workload(name: str, unit: str = "s", lower_is_better: bool = True):
    def register(fn):
        WORKLOADS.append((name, unit, lower_is_better, fn))
        return fn
    return register


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@workload("cli: images")
def images(engine: Engine) -> float:
    return timed(lambda: engine.run("images"))


@workload("cli: image inspect")
def image_inspect(engine: Engine) -> float:
    return timed(lambda: engine.run("image", "inspect", IMAGE))


@workload("import busybox rootfs")
def import_rootfs(engine: Engine) -> float:
    return timed(lambda: engine.run("import", str(ROOTFS), "berth-bench/imported:latest"))


@workload("save + load busybox")
def save_load(engine: Engine) -> float:
    def round_trip():
        archive = engine.run("save", IMAGE).stdout
        engine.run("load", input=archive)
    return timed(round_trip)


def measure(engines: list[Engine], repeat: int) -> list[dict]:
    rows = []
    for name, unit, lower, fn in WORKLOADS:
        samples: dict[str, list[float]] = {e.name: [] for e in engines}
        error: str | None = None
        try:
            for _ in range(repeat):
                for engine in engines:  # interleaved, so drift hits both alike
                    samples[engine.name].append(fn(engine))
        except Exception as exc:  # reported as failed, never dropped
            error = f"{type(exc).__name__}: {exc}"
        rows.append(summarise(name, unit, lower, samples, error))
        print_row(rows[-1])
    return rows


def summarise(name, unit, lower, samples, error=None, reference="docker") -> dict:
    """One result row: berth's figures, the reference's (Docker, hashlib, GNU
    tar...) and berth/reference of the medians."""
    row: dict = {"workload": name, "unit": unit, "lower_is_better": lower,
                 "reference_name": reference}
    for engine, values in samples.items():
        if values and not error:
            key = "berth" if engine == "berth" else "reference"
            row[key] = {"median": statistics.median(values), "min": min(values),
                        "max": max(values), "n": len(values)}
    if error:
        row["failed"] = error
    elif "berth" in row and "reference" in row and row["reference"]["median"]:
        row["ratio"] = row["berth"]["median"] / row["reference"]["median"]
    return row


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.1f} {unit}"


def print_row(row: dict) -> None:
    if "failed" in row:
        print(f"{row['workload']:<34} FAILED: {row['failed']}", flush=True)
        return
    cells = [fmt(row[e]["median"], row["unit"]) if e in row else "-" for e in ("berth", "reference")]
    ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
    print(f"{row['workload']:<34} {cells[0]:>14} {cells[1]:>14} {ratio:>8}  "
          f"({row.get('reference_name', 'docker')})", flush=True)


def idle_rss(engines: list[Engine]) -> dict:
    samples = {e.name: [sum(rss_kib(p) for p in e.pids()) / 1024] for e in engines}
    return summarise("daemon idle RSS", "MiB", True, samples)


def core_benchmarks(scratch: Path) -> list[dict]:
    """Rust core throughput against hashlib / GNU tar (benchmarks/bench_core.py)."""
    script = HERE / "bench_core.py"
    if not script.exists():
        return [{"workload": "rust core", "failed": "benchmarks/bench_core.py missing"}]
    out = scratch / "core.json"
    proc = subprocess.run([sys.executable, str(script), "--json", str(out)])
    if proc.returncode != 0 or not out.exists():
        return [{"workload": "rust core", "failed": f"bench_core.py exited {proc.returncode}"}]
    return json.loads(out.read_text())


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r for r in rows if "ratio" in r]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(good) + 1.5))
    names = [r["workload"] for r in good]
    # Time-like metrics: berth/docker; throughput metrics are inverted so that
    # "bar shorter than 1" always means berth is better.
    ratios = [r["ratio"] if r.get("lower_is_better", True) else 1 / r["ratio"] for r in good]
    bars = ax.barh(names, ratios, color=["#2a7" if v <= 1 else "#d54" for v in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    for bar, value in zip(bars, ratios):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.2f}x", va="center")
    ax.set_xlabel("berth cost relative to the reference (lower is better; 1 = same)")
    ax.invert_yaxis()
    ax.set_title("berth vs Docker / reference tools")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-core", action="store_true", help="skip Rust core micro benchmarks")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()

    if not ROOTFS.exists():
        subprocess.run(["sh", str(REPO / "examples/busybox/make-rootfs.sh"), str(ROOTFS)], check=True)
    scratch = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    engines: list[Engine] = [Berth(scratch), Docker(scratch)]
    rows: list[dict] = []
    try:
        for engine in engines:
            engine.start()
            engine.run("import", "-c", 'CMD ["sh"]', str(ROOTFS), IMAGE)
        time.sleep(1)
        rows.append(idle_rss(engines))
        print(f"{'workload':<34} {'berth':>14} {'reference':>14} {'ratio':>8}")
        print_row(rows[-1])
        rows += measure(engines, args.repeat)
    except Exception:
        traceback.print_exc()
        rows.append({"workload": "engine setup", "failed": traceback.format_exc(limit=1)})
    finally:
        for engine in engines:
            engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.skip_core:
        core = core_benchmarks(Path(tempfile.mkdtemp(prefix="berth-bench-core-")))
        for row in core:
            print_row(row) if "workload" in row and ("ratio" in row or "failed" in row) else None
        rows += core

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": _cpu_model(), "cores": _nproc(), "kernel": platform.release(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (out / "latest.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    chart(rows, out / "latest.png")
    print(f"\nwrote {out / 'latest.json'} and {out / 'latest.png'}")
    return 1 if any("failed" in r for r in rows) else 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _nproc() -> int:
    import os
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
