"""`berth stats`: containers' resource usage, docker's columns and arithmetic
(CPU % from the delta to the previous sample, memory without the page cache)."""

from __future__ import annotations

import time

from ..args import Command, Flag
from ..errors import CLIError
from ..formatting import Row, bytes_size, human_size, render_rows, truncate_id
from .common import FORMAT_HELP, format_flag

DEFAULT_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
                 "{{.BlockIO}}\t{{.PIDs}}")
REFRESH = 0.5   # seconds between redraws, as docker
RELIST = 2.0    # seconds between looks for new containers when none were named


def stats_entry(s: dict) -> dict:
    """The numbers docker shows from one /stats sample."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage") or 0) - \
        ((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    cpu_percent = cpu_delta / system_delta * online * 100.0 if system_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage") or 0
    extra = mem.get("stats") or {}
    if "total_inactive_file" in extra and extra["total_inactive_file"] < usage:   # cgroup v1
        used = usage - extra["total_inactive_file"]
    elif (extra.get("inactive_file") or 0) < usage:
        used = usage - (extra.get("inactive_file") or 0)
    else:
        used = usage
    limit = mem.get("limit") or 0
    rx = tx = 0
    for net in (s.get("networks") or {}).values():
        rx += net.get("rx_bytes") or 0
        tx += net.get("tx_bytes") or 0
    read = write = 0
    for entry in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = (entry.get("op") or "")[:1].lower()
        if op == "r":
            read += entry.get("value") or 0
        elif op == "w":
            write += entry.get("value") or 0
    return {"Name": s.get("name") or "", "ID": s.get("id") or "", "CPUPercentage": cpu_percent,
            "Memory": float(used), "MemoryLimit": float(limit),
            "MemoryPercentage": used / limit * 100.0 if limit else 0.0,
            "NetworkRx": float(rx), "NetworkTx": float(tx), "BlockRead": float(read),
            "BlockWrite": float(write), "PidsCurrent": (s.get("pids_stats") or {}).get("current") or 0}


class StatsRow(Row):
    """One line of `berth stats` (docker's statsContext)."""

    type_name = "*container.statsContext"
    fields = ("Container", "Name", "ID", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
    headers = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
               "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
               "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}

    def __init__(self, container: str, entry: dict | None, trunc: bool):
        self.container, self.e, self.trunc = container, entry, trunc

    def Container(self):
        return self.container

    def Name(self):
        name = ((self.e or {}).get("Name") or "").lstrip("/")
        return name or "--"

    def ID(self):
        cid = (self.e or {}).get("ID") or ""
        return truncate_id(cid) if self.trunc else cid

    def CPUPerc(self):
        return "--" if self.e is None else f"{self.e['CPUPercentage']:.2f}%"

    def MemUsage(self):
        if self.e is None:
            return "-- / --"
        return f"{bytes_size(self.e['Memory'])} / {bytes_size(self.e['MemoryLimit'])}"

    def MemPerc(self):
        return "--" if self.e is None else f"{self.e['MemoryPercentage']:.2f}%"

    def NetIO(self):
        if self.e is None:
            return "--"
        return f"{human_size(self.e['NetworkRx'], 3)} / {human_size(self.e['NetworkTx'], 3)}"

    def BlockIO(self):
        if self.e is None:
            return "--"
        return f"{human_size(self.e['BlockRead'], 3)} / {human_size(self.e['BlockWrite'], 3)}"

    def PIDs(self):
        return "--" if self.e is None else str(self.e["PidsCurrent"])


def _one_sample(host: str, container: str) -> tuple[dict | None, CLIError | None]:
    from ..client import APIClient
    client = APIClient(host)
    try:
        resp = client.container_stats(container, stream=False)
        try:
            return stats_entry(resp.json() or {}), None
        finally:
            resp.close()
    except CLIError as e:
        return None, e
    except ValueError:
        return None, CLIError(f"malformed stats for {container}")
    finally:
        client.close()


def run_stats(cli, opts, args) -> None:
    fmt = opts.format or "table"
    if fmt == "table":
        fmt = DEFAULT_TABLE
    trunc = not opts.no_trunc
    if opts.no_stream:
        names = list(args) or [c.get("Id") or "" for c in cli.client.containers(all=opts.all)]
        if not names:
            if fmt.startswith("table"):
                cli.out.write(render_rows(fmt, [], StatsRow.headers))
            return
        from concurrent.futures import ThreadPoolExecutor
        host = cli.client.host
        with ThreadPoolExecutor(min(16, len(names))) as pool:
            samples = list(pool.map(lambda name: _one_sample(host, name), names))
        errors = [e.message for _, e in samples if e is not None]
        if errors and args:
            raise CLIError("\n".join(errors))
        rows = [StatsRow(name, entry, trunc) for name, (entry, _) in zip(names, samples)]
        cli.out.write(render_rows(fmt, rows, StatsRow.headers))
        return
    _stream(cli, opts, list(args), fmt, trunc)


class _Collector:
    """A thread reading one container's stats stream into the latest entry."""

    def __init__(self, host: str, container: str):
        import threading
        self.container = container
        self.entry: dict | None = None
        self.error: CLIError | None = None
        self.done = False
        self.first = threading.Event()
        self._host = host
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from ..client import APIClient
        client = APIClient(self._host)
        try:
            resp = client.container_stats(self.container, stream=True)
            for sample in resp.iter_json():
                if isinstance(sample, dict):
                    self.entry = stats_entry(sample)
                    self.first.set()
        except CLIError as e:
            self.error = e
        except (OSError, ValueError) as e:
            self.error = CLIError(str(e))
        finally:
            self.done = True
            self.first.set()
            client.close()


def _stream(cli, opts, names: list[str], fmt: str, trunc: bool) -> None:
    host = cli.client.host
    show_all = not names
    collectors: dict[str, _Collector] = {}

    def refresh_list() -> None:
        wanted = names or [c.get("Id") or "" for c in cli.client.containers(all=opts.all)]
        for name in wanted:
            if name not in collectors:
                collectors[name] = _Collector(host, name)
        if show_all:
            for name in list(collectors):
                if name not in wanted:
                    del collectors[name]

    refresh_list()
    for collector in list(collectors.values()):
        collector.first.wait(2.0)
    if names:
        errors = [c.error.message for c in collectors.values() if c.error is not None]
        if errors:
            raise CLIError("\n".join(errors))
    last_list = time.monotonic()
    while True:
        if show_all and time.monotonic() - last_list >= RELIST:
            refresh_list()
            last_list = time.monotonic()
        live = [c for c in collectors.values() if not (c.done and c.error is None and not names)]
        rows = [StatsRow(c.container, None if c.error else c.entry, trunc) for c in live]
        text = render_rows(fmt, rows, StatsRow.headers)
        frame = "\033[H" + "".join(line + "\033[K\n" for line in text.rstrip("\n").split("\n")) + "\033[J"
        cli.out.write(frame)
        cli.out.flush()
        if not show_all and all(c.done for c in collectors.values()):
            return
        time.sleep(REFRESH)


STATS = Command("stats", "[OPTIONS] [CONTAINER...]",
                "Display a live stream of container(s) resource usage statistics",
                flags=[Flag("all", "a", help="Show all containers (default shows just running)"),
                       format_flag(FORMAT_HELP),
                       Flag("no-stream", None, help="Disable streaming stats and only pull the first result"),
                       Flag("no-trunc", None, help="Do not truncate output")],
                args=(0, None), run=run_stats, see_also=("berth container stats", "berth stats"))
