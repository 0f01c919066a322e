"""Per-container cgroups on cgroup v1 and v2.

One cgroup per container under a parent derived from the daemon's
configuration (``berth`` for the default data root, ``berth-<hash>`` for
others), so that several daemons never share a cgroup. The daemon creates and
configures the cgroup; the container's monitor only writes the container's pid
into the paths returned by :meth:`CgroupManager.create`.

A hybrid machine (v1 controllers plus a controller-less unified hierarchy) is
driven as v1: that is where the controllers are.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, fields

from ..errors import Conflict, InvalidArgument, SystemError_

MOUNT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "blkio", "devices")
MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum for --memory
CFS_PERIOD = 100_000  # microseconds, Docker's default for --cpus


@dataclass
class Resources:
    """Docker's HostConfig resource fields (0 / None means "not set")."""

    memory: int = 0              # Memory (bytes)
    memory_swap: int = 0         # MemorySwap: memory + swap; -1 = unlimited
    memory_reservation: int = 0  # MemoryReservation (soft limit)
    nano_cpus: int = 0           # NanoCpus (--cpus * 1e9)
    cpu_shares: int = 0          # CpuShares (relative weight, 2..262144)
    cpu_period: int = 0          # CpuPeriod (us)
    cpu_quota: int = 0           # CpuQuota (us)
    cpuset_cpus: str = ""        # CpusetCpus ("0-1", "0,1")
    cpuset_mems: str = ""        # CpusetMems
    pids_limit: int = 0          # PidsLimit; <= 0 = unlimited

    @classmethod
    def from_host_config(cls, hc: dict) -> "Resources":
        def num(key: str) -> int:
            value = hc.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument(f"invalid {key}: {value!r} is not an integer")
            return value
        return cls(memory=num("Memory"), memory_swap=num("MemorySwap"),
                   memory_reservation=num("MemoryReservation"), nano_cpus=num("NanoCpus"),
                   cpu_shares=num("CpuShares"), cpu_period=num("CpuPeriod"),
                   cpu_quota=num("CpuQuota"), cpuset_cpus=hc.get("CpusetCpus") or "",
                   cpuset_mems=hc.get("CpusetMems") or "", pids_limit=num("PidsLimit"))

    def merged(self, update: "Resources") -> "Resources":
        """This set with every field that `update` sets replacing ours."""
        values = {f.name: getattr(update, f.name) or getattr(self, f.name) for f in fields(self)}
        return Resources(**values)

    def validate(self) -> None:
        """Docker's checks, with Docker's messages."""
        if self.memory and self.memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if self.memory_swap > 0:
            if not self.memory:
                raise InvalidArgument(
                    "You should always set the Memory limit when using Memoryswap limit")
            if self.memory_swap < self.memory:
                raise InvalidArgument("Minimum memoryswap limit should be larger than memory "
                                      "limit, see usage")
        if self.memory and self.memory_reservation and self.memory < self.memory_reservation:
            raise InvalidArgument("Minimum memory limit can not be less than memory "
                                  "reservation limit, see usage")
        if self.nano_cpus and (self.cpu_period or self.cpu_quota):
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both "
                                  "be set")
        ncpu = os.cpu_count() or 1
        if self.nano_cpus < 0 or self.nano_cpus > ncpu * 10**9:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                                  f"{ncpu} CPUs available")
        if self.cpu_shares < 0:
            raise InvalidArgument("invalid CPU shares: must not be negative")
        if self.cpu_period and not 1000 <= self.cpu_period <= 1_000_000:
            raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or "
                                  "larger than 1s (i.e. 1000000)")
        if self.cpu_quota and self.cpu_quota != -1 and self.cpu_quota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        for name, spec in (("cpus", self.cpuset_cpus), ("mems", self.cpuset_mems)):
            if spec and not _valid_cpuset(spec):
                raise InvalidArgument(f"Invalid value {spec} for cpuset {name}")
        if self.cpuset_cpus and not set(_parse_cpuset(self.cpuset_cpus)) <= set(
                range(ncpu)):
            raise InvalidArgument(f"Requested CPUs are not available - requested "
                                  f"{self.cpuset_cpus}, available: 0-{ncpu - 1}")

    def cfs_quota(self) -> tuple[int, int]:
        """(quota, period) in microseconds; quota -1 = unlimited."""
        period = self.cpu_period or CFS_PERIOD
        if self.nano_cpus:
            return self.nano_cpus * period // 10**9, period
        return (self.cpu_quota or -1), period


def _parse_cpuset(spec: str) -> list[int]:
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _valid_cpuset(spec: str) -> bool:
    try:
        return bool(_parse_cpuset(spec))
    except ValueError:
        return False


def detect_version(mount: str = MOUNT) -> int:
    """2 on a pure unified hierarchy, else 1 (v1 or hybrid)."""
    return 2 if os.path.exists(os.path.join(mount, "cgroup.controllers")) else 1


def parent_name(root: str, default_root: str = "/var/lib/berth") -> str:
    """The cgroup parent of a daemon: ``berth``, or ``berth-<hash>`` for other roots."""
    if os.path.abspath(root) == default_root:
        return "berth"
    import hashlib
    return "berth-" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:10]


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        name = os.path.basename(path)
        if exc.errno == errno.EBUSY and name.startswith("memory"):
            raise Conflict(f"cannot set {name} to {value}: the container already uses more "
                           "memory than that") from None
        raise SystemError_(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _read_int(path: str, default: int = 0) -> int:
    value = _read(path)
    try:
        return int(value)
    except ValueError:
        return default


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


class CgroupManager:
    """Creates, configures, reads and removes container cgroups under one parent."""

    def __init__(self, parent: str, mount: str = MOUNT, version: int | None = None):
        self.parent = parent.strip("/")
        self.mount = mount
        self.version = version or detect_version(mount)
        self._v1_bases: list[str] | None = None  # "<mount>/<controller>/<parent>/"
        if self.version == 1:
            self.controllers = [c for c in V1_CONTROLLERS
                                if os.path.isdir(os.path.join(mount, c))]

    # --- paths -----------------------------------------------------------------

    def path(self, container_id: str, controller: str = "") -> str:
        if self.version == 2:
            return os.path.join(self.mount, self.parent, container_id)
        return os.path.join(self.mount, controller, self.parent, container_id)

    def paths(self, container_id: str) -> list[str]:
        """Every directory the container's pid must be written into."""
        if self.version == 2:
            return [self.path(container_id)]
        bases = self._v1_bases
        if bases is None:
            bases = self._v1_bases = [self.path("", c) for c in self.controllers]
        return [base + container_id for base in bases]

    # --- lifecycle -------------------------------------------------------------

    def create(self, container_id: str, resources: Resources) -> list[str]:
        """Create the container's cgroup(s) with `resources` applied; returns the
        paths to join. On failure nothing is left behind."""
        resources.validate()
        try:
            try:
                self._make_dirs(container_id)
            except FileNotFoundError:  # the parent first (once per daemon, usually)
                self._ensure_parent()
                self._make_dirs(container_id)
            self.apply(container_id, resources)
        except BaseException:
            self.remove(container_id)
            raise
        return self.paths(container_id)

    def _make_dirs(self, container_id: str) -> None:
        for path in self.paths(container_id):
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            if self.version == 1 and "/cpuset/" in path:
                self._inherit_cpuset(path)

    def _ensure_parent(self) -> None:
        if self.version == 2:
            parent = os.path.join(self.mount, self.parent)
            os.makedirs(parent, exist_ok=True)
            # Delegate the controllers we use down to the containers' level.
            wanted = set(_read(os.path.join(self.mount, "cgroup.controllers")).split())
            wanted &= {"cpu", "cpuset", "memory", "pids", "io"}
            for directory in (self.mount, parent):
                enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
                missing = wanted - enabled
                if missing:
                    _write(os.path.join(directory, "cgroup.subtree_control"),
                           " ".join("+" + c for c in sorted(missing)))
            return
        for controller in self.controllers:
            parent = os.path.join(self.mount, controller, self.parent)
            os.makedirs(parent, exist_ok=True)
            if controller == "cpuset":
                self._inherit_cpuset(parent)

    @staticmethod
    def _inherit_cpuset(path: str) -> None:
        # A v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until set.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not _read(os.path.join(path, name)):
                _write(os.path.join(path, name), _read(os.path.join(os.path.dirname(path), name)))

    def apply(self, container_id: str, r: Resources) -> None:
        """Write the resource limits (also used by `update`)."""
        quota, period = r.cfs_quota()
        if self.version == 2:
            base = self.path(container_id)
            if r.memory:
                _write(f"{base}/memory.max", str(r.memory))
                if r.memory_swap:
                    swap = "max" if r.memory_swap < 0 else str(r.memory_swap - r.memory)
                    _write(f"{base}/memory.swap.max", swap)
            if r.memory_reservation:
                _write(f"{base}/memory.low", str(r.memory_reservation))
            if r.cpu_shares:
                # The kernel's documented shares -> weight mapping (as runc does).
                _write(f"{base}/cpu.weight", str(1 + ((r.cpu_shares - 2) * 9999) // 262142))
            if quota > 0 or r.cpu_period:
                _write(f"{base}/cpu.max", f"{'max' if quota <= 0 else quota} {period}")
            if r.cpuset_cpus:
                _write(f"{base}/cpuset.cpus", r.cpuset_cpus)
            if r.cpuset_mems:
                _write(f"{base}/cpuset.mems", r.cpuset_mems)
            if r.pids_limit:
                _write(f"{base}/pids.max", "max" if r.pids_limit < 0 else str(r.pids_limit))
            return
        mem = self.path(container_id, "memory")
        if r.memory:
            # memsw must stay >= memory: raise it first when growing, after when shrinking.
            memsw = -1 if r.memory_swap < 0 else (r.memory_swap or 2 * r.memory)
            current = _read_int(f"{mem}/memory.limit_in_bytes")
            order = [("memory.limit_in_bytes", r.memory), ("memory.memsw.limit_in_bytes", memsw)]
            if r.memory > current or memsw == -1:
                order.reverse()
            for name, value in order:
                if name.startswith("memory.memsw") and not os.path.exists(f"{mem}/{name}"):
                    continue  # swap accounting disabled in this kernel
                _write(f"{mem}/{name}", str(value))
        if r.memory_reservation:
            _write(f"{mem}/memory.soft_limit_in_bytes", str(r.memory_reservation))
        cpu = self.path(container_id, "cpu")
        if r.cpu_shares:
            _write(f"{cpu}/cpu.shares", str(r.cpu_shares))
        if quota > 0 or r.cpu_period:
            _write(f"{cpu}/cpu.cfs_period_us", str(period))
            _write(f"{cpu}/cpu.cfs_quota_us", str(quota))
        cpuset = self.path(container_id, "cpuset")
        if r.cpuset_cpus:
            _write(f"{cpuset}/cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems:
            _write(f"{cpuset}/cpuset.mems", r.cpuset_mems)
        if r.pids_limit:
            _write(f"{self.path(container_id, 'pids')}/pids.max",
                   "max" if r.pids_limit < 0 else str(r.pids_limit))

    def remove(self, container_id: str, timeout: float = 5.0) -> None:
        """Remove the container's cgroups (its processes must be gone). A cgroup
        that is still busy after `timeout` is left and reported."""
        deadline = time.monotonic() + timeout
        for path in self.paths(container_id):
            while True:
                try:
                    os.rmdir(path)
                    break
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        break
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise SystemError_(f"cannot remove cgroup {path}: {exc.strerror}") from None
                    time.sleep(0.01)

    # --- state -----------------------------------------------------------------

    def pids(self, container_id: str) -> list[int]:
        controller = "" if self.version == 2 else ("pids" if "pids" in self.controllers
                                                   else self.controllers[0])
        text = _read(os.path.join(self.path(container_id, controller), "cgroup.procs"))
        return [int(p) for p in text.split()]

    def freeze(self, container_id: str, frozen: bool = True) -> None:
        if self.version == 2:
            _write(os.path.join(self.path(container_id), "cgroup.freeze"), "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            events = os.path.join(self.path(container_id), "cgroup.events")
            check = lambda: want in _read(events)  # noqa: E731
        else:
            state = os.path.join(self.path(container_id, "freezer"), "freezer.state")
            _write(state, "FROZEN" if frozen else "THAWED")
            check = lambda: _read(state) == ("FROZEN" if frozen else "THAWED")  # noqa: E731
        deadline = time.monotonic() + 5
        while not check():
            if time.monotonic() > deadline:
                raise SystemError_(f"container {container_id[:12]} did not "
                                   f"{'freeze' if frozen else 'thaw'} in time")
            time.sleep(0.002)

    def oom_killed(self, container_id: str) -> bool:
        if self.version == 2:
            return _read_kv(os.path.join(self.path(container_id), "memory.events")).get(
                "oom_kill", 0) > 0
        control = _read_kv(os.path.join(self.path(container_id, "memory"), "memory.oom_control"))
        return control.get("oom_kill", 0) > 0

    def stats(self, container_id: str) -> dict:
        """Docker's stats fields: pids_stats, cpu_stats, memory_stats."""
        ncpu = os.cpu_count() or 1
        system = _system_cpu_ns()
        if self.version == 2:
            base = self.path(container_id)
            cpu = _read_kv(f"{base}/cpu.stat")
            mem = _read_kv(f"{base}/memory.stat")
            limit = _read(f"{base}/memory.max", "max")
            pids_max = _read(f"{base}/pids.max", "max")
            return {
                "pids_stats": {"current": _read_int(f"{base}/pids.current"),
                               **({} if pids_max == "max" else {"limit": int(pids_max)})},
                "cpu_stats": {"cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000,
                                            "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                                            "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
                              "system_cpu_usage": system, "online_cpus": ncpu,
                              "throttling_data": {"periods": cpu.get("nr_periods", 0),
                                                  "throttled_periods": cpu.get("nr_throttled", 0),
                                                  "throttled_time": cpu.get("throttled_usec", 0) * 1000}},
                "memory_stats": {"usage": _read_int(f"{base}/memory.current"), "stats": mem,
                                 "limit": _memtotal() if limit == "max" else int(limit)},
            }
        acct = self.path(container_id, "cpuacct")
        cpu_stat = _read_kv(os.path.join(self.path(container_id, "cpu"), "cpu.stat"))
        ticks = _read_kv(f"{acct}/cpuacct.stat")
        hz_ns = 10**9 // os.sysconf("SC_CLK_TCK")
        mem = self.path(container_id, "memory")
        limit = _read_int(f"{mem}/memory.limit_in_bytes")
        pids = self.path(container_id, "pids")
        pids_max = _read(f"{pids}/pids.max", "max")
        return {
            "pids_stats": {"current": _read_int(f"{pids}/pids.current"),
                           **({} if pids_max == "max" else {"limit": int(pids_max)})},
            "cpu_stats": {"cpu_usage": {"total_usage": _read_int(f"{acct}/cpuacct.usage"),
                                        "percpu_usage": [int(v) for v in _read(
                                            f"{acct}/cpuacct.usage_percpu").split()],
                                        "usage_in_kernelmode": ticks.get("system", 0) * hz_ns,
                                        "usage_in_usermode": ticks.get("user", 0) * hz_ns},
                          "system_cpu_usage": system, "online_cpus": ncpu,
                          "throttling_data": {"periods": cpu_stat.get("nr_periods", 0),
                                              "throttled_periods": cpu_stat.get("nr_throttled", 0),
                                              "throttled_time": cpu_stat.get("throttled_time", 0)}},
            "memory_stats": {"usage": _read_int(f"{mem}/memory.usage_in_bytes"),
                             "max_usage": _read_int(f"{mem}/memory.max_usage_in_bytes"),
                             "failcnt": _read_int(f"{mem}/memory.failcnt"),
                             "stats": _read_kv(f"{mem}/memory.stat"),
                             "limit": min(limit, _memtotal()) if limit else _memtotal()},
        }


def _system_cpu_ns() -> int:
    """Host CPU time in ns, from /proc/stat's first line (as Docker computes it)."""
    first = _read("/proc/stat").split("\n", 1)[0].split()[1:8]
    return sum(int(v) for v in first) * (10**9 // os.sysconf("SC_CLK_TCK"))


def _memtotal() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0
