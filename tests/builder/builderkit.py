"""Helpers for builder tests: contexts on disk, builds through the CLIs, and
the checks that a build left nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create files (parents included); a value ending a path with "/" is a directory."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


class Builds:
    """Builds against one daemon, each in a fresh context directory."""

    def __init__(self, daemon, workdir: Path):
        self.daemon = daemon
        self.workdir = workdir
        self._n = 0

    def context(self, files: dict[str, str | bytes], name: str | None = None) -> Path:
        self._n += 1
        return write_tree(self.workdir / (name or f"ctx{self._n}"), files)

    def build(self, ctx: Path, *args: str, check: bool = True, input=None
              ) -> subprocess.CompletedProcess:
        return self.daemon.berth("build", *args, str(ctx), check=check, input=input, timeout=300)

    def docker_build(self, ctx: Path, *args: str, check: bool = True, input=None
                     ) -> subprocess.CompletedProcess:
        env_args = ("build", *args, str(ctx))
        return self.daemon.docker(*env_args, check=check, input=input, timeout=300)

    def save(self, *refs: str) -> bytes:
        """``berth save`` output (an image archive)."""
        proc = subprocess.run([str(Path(self.daemon.env["PATH"].split(":")[0]) / "berth"), "save",
                               *refs], env=self.daemon.env, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    def inspect(self, ref: str) -> dict:
        return json.loads(self.daemon.berth("image", "inspect", ref).stdout)[0]

    def config(self, ref: str) -> dict:
        return self.inspect(ref)["Config"]

    def history(self, ref: str) -> list[dict]:
        out = self.daemon.berth("history", "--no-trunc", "--format", "{{json .}}", ref).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def run(self, image: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.daemon.berth("run", "--rm", image, *cmd, check=check)

    def output(self, image: str, *cmd: str) -> str:
        return self.run(image, *cmd).stdout

    def image_ids(self, all_: bool = True) -> set[str]:
        args = ["images", "-q", "--no-trunc"] + (["-a"] if all_ else [])
        return {line for line in self.daemon.berth(*args).stdout.split() if line}

    def dangling(self) -> list[str]:
        out = self.daemon.berth("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout
        return [line for line in out.split() if line]

    def assert_clean(self, allow_dangling: set[str] = frozenset()) -> None:
        """No dangling image, container, mount or build directory left."""
        assert set(self.dangling()) <= set(allow_dangling), self.daemon.berth("images", "-a").stdout
        assert self.daemon.berth("ps", "-aq").stdout.strip() == ""
        root = str(self.daemon.root)
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if root in line]
        assert mounts == []
        for sub in ("run", "tmp"):
            leftovers = os.listdir(self.daemon.root / "builder" / sub)
            assert leftovers == [], f"builder/{sub}: {leftovers}"
        with open("/proc/self/mountinfo") as f:
            assert not [line for line in f if "/builder/run/" in line and root in line]


def steps(output: str) -> list[str]:
    """The ``Step N/M : ...`` lines of a build's output."""
    return [line for line in output.splitlines() if line.startswith("Step ")]


def cache_hits(output: str) -> list[str]:
    """The steps that were taken from the cache."""
    hits = []
    current = None
    for line in output.splitlines():
        if line.startswith("Step "):
            current = line.split(" : ", 1)[1]
        elif line.strip() == "---> Using cache" and current is not None:
            hits.append(current)
    return hits
