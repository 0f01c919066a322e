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

SETTLE = 0.5  # seconds of quiet before each sample

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


@workload("run --rm --network none IMG true")
def run_none(engine: Engine) -> float:
    return timed(lambda: engine.run("run", "--rm", "--network", "none", IMAGE, "true"))


@workload("50 runs, 8 at a time (wall)")
def run_parallel(engine: Engine) -> float:
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        engine.run("run", "--rm", "--network", "none", IMAGE, "true")
    with ThreadPoolExecutor(8) as pool:
        return timed(lambda: list(pool.map(one, range(50))))


@workload("exec into a running container")
def exec_latency(engine: Engine) -> float:
    return timed(lambda: engine.run("exec", LONG_RUNNING, "true"))


LONG_RUNNING = "berth-bench-sleeper"


def start_sleeper(engine: Engine) -> None:
    engine.run("run", "-d", "--name", LONG_RUNNING, "--network", "none", IMAGE, "sleep", "3600")


def monitor_rss(engines: list[Engine]) -> dict:
    """RSS of the per-container process: berth's monitor against containerd-shim."""
    samples: dict[str, list[float]] = {}
    for engine in engines:
        pid = int(engine.run("inspect", "-f", "{{.State.Pid}}", LONG_RUNNING).stdout)
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        samples[engine.name] = [rss_kib(ppid) / 1024]
    return summarise("per-container monitor RSS (monitor vs shim)", "MiB", True, samples)


def measure(engines: list[Engine], repeat: int) -> list[dict]:
    rows = []
    for name, unit, lower, fn in WORKLOADS:
        samples: dict[str, list[float]] = {e.name: [] for e in engines}
        error: str | None = None
        try:
            for _ in range(repeat):
                for engine in engines:  # interleaved, so drift hits both alike
                    # Each sample on a settled machine: not while the other engine
                    # still cleans up after its last one (dockerd's and
                    # containerd's work goes on after `docker run --rm` returns).
                    time.sleep(SETTLE)
                    samples[engine.name].append(fn(engine))
        except Exception as exc:  # reported as failed, never dropped
            error = f"{type(exc).__name__}: {exc}"
        rows.append(summarise(name, unit, lower, samples, error))
        print_row(rows[-1])
    return rows


def suite_args(doc: str, repeat: int) -> argparse.Namespace:
    """The command line every engine-against-engine suite script takes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", help="write the result rows to this file")
    parser.add_argument("--berth-only", action="store_true",
                        help="measure berth alone (no dockerd); no ratios")
    return parser.parse_args()


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


def finish(rows: list[dict], json_path: str | None) -> int:
    """End of a suite script: its rows to --json, and a failing exit status
    when any workload failed."""
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    return 1 if any("failed" in r for r in rows) else 0


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x"


def print_row(row: dict) -> None:
    if "failed" in row:
        print(f"{row['workload']:<34} FAILED: {row['failed']}", flush=True)
        return
    cells = [fmt(row[e]["median"], row["unit"]) if e in row else "-" for e in ("berth", "reference")]
    ratio = fmt_ratio(row["ratio"]) if "ratio" in row else "-"
    print(f"{row['workload']:<34} {cells[0]:>14} {cells[1]:>14} {ratio:>8}  "
          f"({row.get('reference_name', 'docker')})", flush=True)


def idle_rss(engines: list[Engine]) -> dict:
    samples = {e.name: [sum(rss_kib(p) for p in e.pids()) / 1024] for e in engines}
    return summarise("daemon idle RSS", "MiB", True, samples)


# Suites in their own scripts, each starting what it needs and writing rows
# in the shape of summarise() with --json.
SUITES = ["bench_network.py", "bench_registry.py", "bench_build.py", "bench_core.py"]


def micro_suite(scratch: Path) -> list[dict]:
    """pytest-benchmark micro benchmarks (benchmarks/micro): one row per group,
    berth's test against the group's `..._reference_<tool>` test."""
    out = scratch / "micro.json"
    print("\n== micro (pytest-benchmark)", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", str(HERE / "micro"), "--benchmark-only",
                           "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}"])
    if not out.exists():
        return [{"workload": "micro benchmarks", "failed": f"pytest exited {proc.returncode}"}]
    groups: dict[str, dict[str, list[float]]] = {}
    names: dict[str, str] = {}
    for bench in json.loads(out.read_text())["benchmarks"]:
        side = "berth" if "_berth" in bench["name"] else "reference"
        if side == "reference":
            names[bench["group"]] = bench["name"].split("_reference_", 1)[-1].replace("_", " ")
        groups.setdefault(bench["group"], {})[side] = bench["stats"]["data"]
    rows = [summarise(f"micro: {group}", "s", True, samples, reference=names.get(group, "reference"))
            for group, samples in groups.items()]
    if proc.returncode != 0:
        rows.append({"workload": "micro benchmarks", "failed": f"pytest exited {proc.returncode}"})
    return rows


def core_rows(figures: dict) -> list[dict]:
    """bench_core.py's figures as rows: throughput for sha256, times otherwise."""
    rows = []
    if "sha256" in figures:
        f = figures["sha256"]
        rows.append(summarise("sha256 (MB/s)", "MB/s", False,
                              {"berth": [f["berth_MBps"]], "ref": [f["hashlib_MBps"]]},
                              reference="hashlib"))
    if "unpack" in figures:
        f = figures["unpack"]
        what = f"unpack {f['layers']} gzip layers ({f['entries']} entries)"
        rows.append(summarise(what + ", one after another", "s", True,
                              {"berth": [f["berth_sequential_s"]], "ref": [f["gnu_tar_s"]]},
                              reference="tar -xzf"))
        rows.append(summarise(what + ", unpack_layers", "s", True,
                              {"berth": [f["berth_parallel_s"]], "ref": [f["gnu_tar_s"]]},
                              reference="tar -xzf one after another"))
    if "pack" in figures:
        f = figures["pack"]
        rows.append(summarise(f"pack {f['source']} gzip", "s", True,
                              {"berth": [f["gzip_berth_s"]], "ref": [f["gzip_ref_s"]]},
                              reference="tar | gzip"))
        if "zstd_ref_s" in f:
            rows.append(summarise(f"pack {f['source']} zstd", "s", True,
                                  {"berth": [f["zstd_berth_s"]], "ref": [f["zstd_ref_s"]]},
                                  reference="tar | zstd"))
    for row in rows:
        print_row(row)
    return rows


def render(rows: list[dict], machine: dict, out: Path, readme: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    chart(rows, out / "latest.png")
    table = markdown_table(rows, machine)
    print("\n" + table)
    if readme:
        update_readme(table)
    print(f"\nwrote {out / 'latest.json'} and {out / 'latest.png'}")


def suite(script_name: str, scratch: Path) -> list[dict]:
    script = HERE / script_name
    out = scratch / (script.stem + ".json")
    print(f"\n== {script_name}", flush=True)
    proc = subprocess.run([sys.executable, str(script), "--json", str(out)])
    rows = json.loads(out.read_text()) if out.exists() else []
    if isinstance(rows, dict):  # bench_core.py writes its figures, not rows
        rows = core_rows(rows)
    if proc.returncode != 0 and not any("failed" in r for r in rows):
        rows.append({"workload": script.stem, "failed": f"{script_name} exited {proc.returncode}"})
    return rows


def markdown_table(rows: list[dict], machine: dict) -> str:
    lines = [f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores), "
             f"Linux {machine['kernel']}.", "",
             "| workload | berth | reference | berth / reference |", "|---|---:|---:|---:|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['workload']} | failed | | {r['failed'].splitlines()[0][:80]} |")
            continue
        cells = [fmt(r[k]["median"], r["unit"]) if k in r else "-" for k in ("berth", "reference")]
        ratio = fmt_ratio(r["ratio"]) if "ratio" in r else "-"
        reference = r.get("reference_name", "docker").replace("|", "\\|")
        lines.append(f"| {r['workload']} | {cells[0]} | {cells[1]} ({reference}) | {ratio} |")
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench-table -->", "<!-- /bench-table -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        readme.write_text(f"{head}{start}\n{table}\n\n![benchmark chart](benchmarks/results/latest.png)\n{end}{tail}")


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
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--skip", action="append", default=[], choices=[*SUITES, "micro"],
                        help="skip one of the suite scripts (repeatable)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--update-readme", action="store_true",
                        help="put the table into README.md between the bench-table markers")
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
        for engine in engines:
            start_sleeper(engine)
        rows.append(monitor_rss(engines))
        print_row(rows[-1])
        rows += measure(engines, args.repeat)
    except Exception:
        traceback.print_exc()
        rows.append({"workload": "engine setup", "failed": traceback.format_exc(limit=1)})
    finally:
        for engine in engines:
            if engine.proc is not None:
                engine.run("rm", "-f", LONG_RUNNING, check=False)
            engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    suite_scratch = Path(tempfile.mkdtemp(prefix="berth-bench-suites-"))
    for script_name in SUITES:
        if script_name in args.skip:
            continue
        rows += suite(script_name, suite_scratch)
    if "micro" not in args.skip:
        rows += micro_suite(suite_scratch)
    shutil.rmtree(suite_scratch, ignore_errors=True)

    machine = {"cpu": _cpu_model(), "cores": _nproc(), "kernel": platform.release(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    render(rows, machine, Path(args.out), args.update_readme)
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
