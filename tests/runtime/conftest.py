"""Fixtures for the runtime tests: a busybox layer extracted once, and a `box`
factory that makes bundles (own upper/work dirs under the test's workdir),
creates containers through berth.runtime and kills whatever is left at the end."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth import runtime as rt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture(scope="session")
def busybox_layer(busybox_rootfs):
    """The busybox rootfs unpacked into a directory used as a (read-only) lowerdir."""
    d = Path(tempfile.mkdtemp(prefix="berth-rt-layer-"))
    subprocess.run(["tar", "-xf", str(busybox_rootfs), "-C", str(d)], check=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@dataclass
class Result:
    stdout: bytes
    stderr: bytes
    exit: dict
    bundle: Path

    @property
    def code(self) -> int:
        return self.exit["exitCode"]

    @property
    def out(self) -> str:
        return self.stdout.decode()

    def log_records(self) -> list[dict]:
        import json
        return [json.loads(line) for line in (self.bundle / "container.log").read_text().splitlines()]


class Boxes:
    def __init__(self, workdir: Path, layer: Path):
        self.workdir = workdir
        self.layer = layer
        self.dirs: list[Path] = []
        self.count = 0

    def spec(self, args: list[str], *, process: dict | None = None, **top) -> tuple[Path, dict]:
        """A new bundle dir and a spec for it; `process` keys and top-level keys
        override the defaults (a `root` dict is merged)."""
        self.count += 1
        base = self.workdir / f"c{self.count}"
        for sub in ("upper", "work", "bundle"):
            (base / sub).mkdir(parents=True)
        bundle = base / "bundle"
        spec = {
            "process": {"args": args, "env": ["PATH=" + rt.DEFAULT_PATH], "cwd": "/"},
            "root": {"lowerdirs": [str(self.layer)], "upperdir": str(base / "upper"),
                     "workdir": str(base / "work"), "mountpoint": str(bundle / "rootfs")},
            "hostname": f"box{self.count}",
            "logPath": str(bundle / "container.log"),
        }
        spec["process"].update(process or {})
        root = top.pop("root", None)
        if root:
            spec["root"].update(root)
        spec.update(top)
        self.dirs.append(bundle)
        return bundle, copy.deepcopy(spec)

    def create(self, args: list[str], **kw) -> Path:
        bundle, spec = self.spec(args, **kw)
        rt.write_spec(bundle, spec)
        rt.spawn_monitor(bundle)
        return bundle

    def run(self, args: list[str], stdin: bytes | None = None, **kw) -> Result:
        """create, attach, start, collect output until the exit record."""
        if stdin is not None:
            kw.setdefault("process", {}).update(openStdin=True, stdinOnce=True)
        bundle = self.create(args, **kw)
        with rt.attach(bundle, stdin=stdin is not None) as a:
            rt.start(bundle)
            if stdin is not None:
                a.write_stdin(stdin)
                a.close_stdin()
            out, err, exit_ = a.collect()
        return Result(out, err, exit_, bundle)

    @staticmethod
    def wait_monitor_gone(bundle, timeout: float = 10.0) -> None:
        """The monitor finishes its files (state.json) after telling clients the exit."""
        pid = int((bundle / "monitor.pid").read_text())
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.005)

    def cleanup(self) -> None:
        for d in self.dirs:
            for directory in [d, *sorted((d / "execs").glob("*"))] if (d / "execs").exists() else [d]:
                try:
                    st = rt.state(directory)
                except Exception:
                    continue
                if st.get("status") in ("created", "running") and not st.get("monitorDied"):
                    try:
                        rt.kill(directory, 9)
                        rt.wait_exit_sync(directory, timeout=20)
                    except Exception:
                        pass
                elif st.get("monitorDied") and st.get("status") == "running":
                    try:
                        os.kill(st["pid"], 9)
                    except OSError:
                        pass


@pytest.fixture
def boxes(workdir, busybox_layer):
    b = Boxes(workdir, busybox_layer)
    yield b
    b.cleanup()


def host_mounts_under(path: Path) -> list[str]:
    """Lines of the host's mountinfo that mention `path`."""
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


@pytest.fixture
def memory_cgroup():
    base = "/sys/fs/cgroup/memory"
    if not os.path.exists(os.path.join(base, "cgroup.procs")):
        pytest.skip("no cgroup v1 memory controller")
    path = os.path.join(base, f"berth-rt-test-{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(path)
    yield path
    deadline = time.monotonic() + 10
    while True:
        try:
            os.rmdir(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
