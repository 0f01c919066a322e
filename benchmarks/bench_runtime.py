"""Runtime figures: time from spawn_monitor to the exit record for `true`, the
same for 50 containers 8 at a time, and the monitor's resident memory.

Usage (as root): .venv/bin/python benchmarks/bench_runtime.py [--runs N]
Prints one line per figure; needs no daemon (drives berth.runtime directly).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pycore"))

from berth import runtime as rt  # noqa: E402

ROOTFS = REPO / "examples" / "busybox" / "rootfs.tar"


def make_layer(work: Path) -> Path:
    if not ROOTFS.exists():
        subprocess.run(["sh", str(REPO / "examples/busybox/make-rootfs.sh"), str(ROOTFS)], check=True)
    layer = work / "layer"
    layer.mkdir()
    subprocess.run(["tar", "-xf", str(ROOTFS), "-C", str(layer)], check=True)
    return layer


def bundle_for(work: Path, layer: Path, name: str, args: list[str]) -> Path:
    base = work / name
    for sub in ("upper", "work", "bundle"):
        (base / sub).mkdir(parents=True)
    b = base / "bundle"
    rt.write_spec(b, {
        "process": {"args": args, "env": ["PATH=" + rt.DEFAULT_PATH]},
        "root": {"lowerdirs": [str(layer)], "upperdir": str(base / "upper"),
                 "workdir": str(base / "work"), "mountpoint": str(b / "rootfs")},
        "hostname": name, "logPath": str(b / "container.log"),
    })
    return b


def run_once(work: Path, layer: Path, name: str, args: list[str]) -> float:
    b = bundle_for(work, layer, name, args)
    t0 = time.perf_counter()
    rt.spawn_monitor(b)
    rt.start(b)
    exit_ = rt.wait_exit_sync(b, timeout=60)
    dt = time.perf_counter() - t0
    assert exit_["exitCode"] == 0, exit_
    return dt


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, and its private part RssAnon (file pages are libc and the binary,
    shared by every monitor)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-rt-"))
    try:
        layer = make_layer(work)
        run_once(work, layer, "warm", ["true"])
        times = [run_once(work, layer, f"s{i}", ["true"]) for i in range(opts.runs)]
        times.sort()
        print(f"runtime: spawn_monitor -> exit of `true`: median {statistics.median(times) * 1000:.1f} ms, "
              f"p90 {times[int(len(times) * 0.9) - 1] * 1000:.1f} ms, min {times[0] * 1000:.1f} ms "
              f"({opts.runs} runs)")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(opts.concurrency) as pool:
            list(pool.map(lambda i: run_once(work, layer, f"p{i}", ["true"]), range(opts.parallel)))
        wall = time.perf_counter() - t0
        print(f"runtime: {opts.parallel} containers, {opts.concurrency} at a time: {wall:.2f} s "
              f"({opts.parallel / wall:.1f} containers/s)")

        b = bundle_for(work, layer, "rss", ["sleep", "1000"])
        h = rt.spawn_monitor(b)
        rt.start(b)
        with rt.attach(b) as _a:
            mem = memory_kib(h.monitor_pid)
        rt.kill(b, "KILL")
        rt.wait_exit_sync(b, timeout=60)
        size = os.path.getsize(rt.monitor_binary())
        print(f"runtime: monitor memory while a container runs (one client attached): VmRSS {mem['VmRSS']} KiB "
              f"(RssAnon {mem['RssAnon']} KiB private, RssFile {mem['RssFile']} KiB shared); "
              f"binary {size / 1024:.0f} KiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
