"""cgroups: real v1 controllers on this machine, v2 file semantics on a fake tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from berth.cgroups import CgroupManager, Resources, detect_version, parent_name
from berth.errors import InvalidArgument

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def manager():
    parent = f"berth-test-{uuid.uuid4().hex[:8]}"
    mgr = CgroupManager(parent)
    yield mgr
    # Remove the test's parent cgroups even if a test failed half-way.
    for controller in (getattr(mgr, "controllers", None) or [""]):
        base = os.path.join(mgr.mount, controller, parent)
        if os.path.isdir(base):
            for child in os.listdir(base):
                if os.path.isdir(os.path.join(base, child)):
                    os.rmdir(os.path.join(base, child))
            os.rmdir(base)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"])


def _join(mgr: CgroupManager, cid: str, pid: int) -> None:
    for path in mgr.paths(cid):
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def test_parent_names_differ_per_root():
    assert parent_name("/var/lib/berth") == "berth"
    a, b = parent_name("/tmp/a"), parent_name("/tmp/b")
    assert a != b and a.startswith("berth-")


@pytest.mark.skipif(detect_version() != 1, reason="this machine drives cgroup v1")
def test_v1_limits_are_written(manager):
    cid = uuid.uuid4().hex
    res = Resources(memory=64 << 20, memory_swap=128 << 20, nano_cpus=500_000_000,
                    cpu_shares=512, cpuset_cpus="0", pids_limit=50)
    paths = manager.create(cid, res)
    assert all(os.path.isdir(p) for p in paths)
    mem = manager.path(cid, "memory")
    assert open(f"{mem}/memory.limit_in_bytes").read().strip() == str(64 << 20)
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        assert open(f"{mem}/memory.memsw.limit_in_bytes").read().strip() == str(128 << 20)
    cpu = manager.path(cid, "cpu")
    assert open(f"{cpu}/cpu.cfs_quota_us").read().strip() == "50000"
    assert open(f"{cpu}/cpu.shares").read().strip() == "512"
    assert open(f"{manager.path(cid, 'cpuset')}/cpuset.cpus").read().strip() == "0"
    assert open(f"{manager.path(cid, 'pids')}/pids.max").read().strip() == "50"
    manager.remove(cid)
    assert not any(os.path.exists(p) for p in paths)


@pytest.mark.skipif(detect_version() != 1, reason="this machine drives cgroup v1")
def test_v1_processes_stats_freeze_and_update(manager):
    cid = uuid.uuid4().hex
    manager.create(cid, Resources(memory=64 << 20, pids_limit=20))
    proc = _sleeper()
    try:
        _join(manager, cid, proc.pid)
        assert manager.pids(cid) == [proc.pid]
        stats = manager.stats(cid)
        assert stats["pids_stats"] == {"current": 1, "limit": 20}
        assert stats["memory_stats"]["limit"] == 64 << 20
        assert stats["cpu_stats"]["online_cpus"] == os.cpu_count()
        manager.freeze(cid)
        assert open(f"/proc/{proc.pid}/status").read().count("State:\tD") or \
            open(os.path.join(manager.path(cid, "freezer"), "freezer.state")).read().strip() == "FROZEN"
        manager.freeze(cid, False)
        manager.apply(cid, Resources(memory=32 << 20))
        assert manager.stats(cid)["memory_stats"]["limit"] == 32 << 20
    finally:
        proc.kill()
        proc.wait()
    manager.remove(cid)


@pytest.mark.skipif(detect_version() != 1, reason="this machine drives cgroup v1")
def test_v1_oom_kill_is_detected(manager):
    cid = uuid.uuid4().hex
    manager.create(cid, Resources(memory=24 << 20, memory_swap=24 << 20))
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; sys.stdin.read(1); b = bytearray(200 << 20)"],
                            stdin=subprocess.PIPE)
    try:
        _join(manager, cid, proc.pid)
        proc.stdin.write(b"x")
        proc.stdin.close()
        assert proc.wait(30) == -signal.SIGKILL
        assert manager.oom_killed(cid)
    finally:
        proc.kill()
        proc.wait()
    manager.remove(cid)


def test_failed_create_leaves_nothing(manager):
    cid = uuid.uuid4().hex
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        manager.create(cid, Resources(memory=1 << 20))
    with pytest.raises(InvalidArgument, match="Requested CPUs are not available"):
        manager.create(cid, Resources(cpuset_cpus="0-63"))
    assert not any(os.path.exists(p) for p in manager.paths(cid))


@pytest.mark.parametrize("res, message", [
    (Resources(memory_swap=100 << 20), "always set the Memory limit"),
    (Resources(memory=64 << 20, memory_swap=32 << 20), "memoryswap limit should be larger"),
    (Resources(nano_cpus=10**9, cpu_quota=5000), "Conflicting options"),
    (Resources(nano_cpus=1000 * 10**9), "Range of CPUs"),
    (Resources(cpuset_cpus="a-b"), "Invalid value a-b for cpuset cpus"),
])
def test_docker_validation_messages(res, message):
    with pytest.raises(InvalidArgument, match=message):
        res.validate()


def test_v2_files_on_a_fake_tree(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    mgr = CgroupManager("berth-x", mount=str(tmp_path))
    assert mgr.version == 2
    res = Resources(memory=64 << 20, memory_swap=96 << 20, cpu_shares=1024,
                    nano_cpus=1_500_000_000, pids_limit=-1, cpuset_cpus="0")
    [path] = mgr.create("c1", res)
    read = lambda name: open(os.path.join(path, name)).read()  # noqa: E731
    assert read("memory.max") == str(64 << 20)
    assert read("memory.swap.max") == str(32 << 20)
    assert read("cpu.max") == "150000 100000"
    assert read("cpu.weight") == str(1 + (1022 * 9999) // 262142)
    assert read("pids.max") == "max"
    assert read("cpuset.cpus") == "0"
    enabled = (tmp_path / "cgroup.subtree_control").read_text().split()
    assert {"+cpu", "+memory", "+pids", "+cpuset", "+io"} <= set(enabled)
