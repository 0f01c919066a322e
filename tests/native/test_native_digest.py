"""Sha256, sha256_file and xxh3 against the reference implementations."""

from __future__ import annotations

import array
import hashlib
import os
import random

import pytest
import xxhash

from berth import _native


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 2047, 2048, 1 << 20, (8 << 20) + 13])
def test_sha256_matches_hashlib(size):
    data = os.urandom(size)
    assert _native.Sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert _native.Sha256(data).digest() == hashlib.sha256(data).digest()


def test_sha256_streaming_in_random_chunks():
    rng = random.Random(7)
    data = os.urandom(3 << 20)
    h, ref = _native.Sha256(), hashlib.sha256()
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 64, 1000, 65536, 300_001])
        h.update(data[pos:pos + n])
        ref.update(data[pos:pos + n])
        pos += n
        if rng.random() < 0.1:
            assert h.hexdigest() == ref.hexdigest()  # digest does not end the stream
    assert h.hexdigest() == ref.hexdigest()


def test_sha256_accepts_buffers_and_copies():
    data = os.urandom(10_000)
    for buf in (bytearray(data), memoryview(data), memoryview(data)[100:], array.array("I", data[:8000])):
        assert _native.Sha256(buf).hexdigest() == hashlib.sha256(buf).hexdigest()
    h = _native.Sha256(b"prefix")
    c = h.copy()
    c.update(b"more")
    assert h.hexdigest() == hashlib.sha256(b"prefix").hexdigest()
    assert c.hexdigest() == hashlib.sha256(b"prefixmore").hexdigest()
    assert (h.name, h.digest_size, h.block_size) == ("sha256", 32, 64)


def test_sha256_rejects_text_and_non_contiguous():
    with pytest.raises(TypeError):
        _native.Sha256("text")
    with pytest.raises((TypeError, BufferError, ValueError)):
        _native.Sha256(memoryview(b"abcdef")[::2])


def test_sha256_file(workdir):
    p = workdir / "f"
    data = os.urandom((5 << 20) + 3)
    p.write_bytes(data)
    assert _native.sha256_file(str(p)) == hashlib.sha256(data).hexdigest()
    assert _native.sha256_file(p) == hashlib.sha256(data).hexdigest()  # os.PathLike
    (workdir / "empty").write_bytes(b"")
    assert _native.sha256_file(str(workdir / "empty")) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError):
        _native.sha256_file(str(workdir / "missing"))
    with pytest.raises(IsADirectoryError):
        _native.sha256_file(str(workdir))


@pytest.mark.parametrize("size", [0, 3, 16, 17, 128, 129, 240, 241, 1000, 100_000])
def test_xxh3_matches_the_xxhash_package(size):
    data = os.urandom(size)
    assert _native.xxh3_64(data) == xxhash.xxh3_64_intdigest(data)
    assert _native.xxh3_64(data, seed=12345) == xxhash.xxh3_64_intdigest(data, seed=12345)
    assert _native.xxh3_128_hex(data) == xxhash.xxh3_128_hexdigest(data)


def test_sha256_shared_between_threads():
    import threading
    h = _native.Sha256()
    block = os.urandom(1 << 20)

    def feed():
        for _ in range(8):
            h.update(block)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every update landed whole: the same blocks in any order hash the same here.
    assert h.hexdigest() == hashlib.sha256(block * 32).hexdigest()
