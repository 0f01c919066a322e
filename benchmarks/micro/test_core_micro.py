"""pytest-benchmark micro benchmarks of the Rust core against the reference
tools, each pair in one group so pytest-benchmark prints them side by side:

    .venv/bin/python -m pytest benchmarks/micro --benchmark-only

`make bench` runs them through benchmarks/run.py (--benchmark-json), which
turns each group into a berth/reference row. Data comes from files on this
machine (/usr/include), packed once per session with GNU tar + gzip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from berth import _native

SOURCE = "/usr/include"
BLOCK = os.urandom(1 << 20) * 64  # 64 MiB


@pytest.fixture(scope="session")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="berth-micro-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def layer(scratch) -> Path:
    path = scratch / "include.tar.gz"
    subprocess.run(["tar", "-C", SOURCE, "-czf", str(path), "."], check=True)
    return path


def _fresh(scratch: Path) -> str:
    return tempfile.mkdtemp(dir=scratch)


@pytest.mark.benchmark(group="sha256 64 MiB")
def test_sha256_berth(benchmark):
    benchmark(lambda: _native.Sha256(BLOCK).hexdigest())


@pytest.mark.benchmark(group="sha256 64 MiB")
def test_sha256_reference_hashlib(benchmark):
    benchmark(lambda: hashlib.sha256(BLOCK).hexdigest())


@pytest.mark.benchmark(group="unpack /usr/include layer")
def test_unpack_berth(benchmark, layer, scratch):
    benchmark.pedantic(lambda d: _native.unpack_layer(str(layer), d),
                       setup=lambda: ((_fresh(scratch),), {}), rounds=5)


@pytest.mark.benchmark(group="unpack /usr/include layer")
def test_unpack_reference_gnu_tar(benchmark, layer, scratch):
    benchmark.pedantic(lambda d: subprocess.run(["tar", "-C", d, "-xzf", str(layer)], check=True),
                       setup=lambda: ((_fresh(scratch),), {}), rounds=5)


@pytest.mark.benchmark(group="pack /usr/include gzip")
def test_pack_berth(benchmark, scratch):
    out = scratch / "packed.tar.gz"
    benchmark.pedantic(lambda: _native.pack_layer(SOURCE, str(out), compression="gzip"), rounds=5)


@pytest.mark.benchmark(group="pack /usr/include gzip")
def test_pack_reference_tar_gzip(benchmark, scratch):
    out = scratch / "packed-ref.tar.gz"
    benchmark.pedantic(lambda: subprocess.run(
        f"tar -C {SOURCE} -cf - . | gzip > {out}", shell=True, check=True), rounds=5)
