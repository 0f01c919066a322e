"""Content store: verified ingest, atomic commit, concurrency, crash leftovers."""

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from berth.content import ContentStore
from berth.errors import Conflict, InvalidArgument, NotFound

from imagekit import sha256


@pytest.fixture
def store(workdir: Path) -> ContentStore:
    return ContentStore(str(workdir / "content"))


def blobs_dir(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.blobs_dir))


def test_ingest_then_read_back(store):
    data = b"hello layer" * 1000
    info = store.ingest(io.BytesIO(data), expected=sha256(data), size=len(data))
    assert info.digest == sha256(data) and info.size == len(data)
    assert store.exists(sha256(data))
    with store.open(sha256(data)) as f:
        assert f.read() == data
    assert store.info(sha256(data)).size == len(data)
    assert Path(store.path(sha256(data))).read_bytes() == data
    # Blobs are immutable on disk.
    assert os.stat(store.path(sha256(data))).st_mode & 0o777 == 0o444
    assert [b.digest for b in store.walk()] == [sha256(data)]
    assert os.listdir(store.ingest_dir) == []


def test_ingest_without_expected_digest_computes_it(store):
    info = store.ingest(b"abc")
    assert info.digest == sha256(b"abc")


def test_digest_mismatch_names_both_digests_and_leaves_nothing(store):
    claimed = sha256(b"something else")
    with pytest.raises(InvalidArgument) as err:
        store.ingest(io.BytesIO(b"actual bytes"), expected=claimed)
    assert err.value.message == (
        f"content digest mismatch: expected {claimed}, got {sha256(b'actual bytes')}")
    assert blobs_dir(store) == [] and os.listdir(store.ingest_dir) == []
    assert not store.exists(claimed)


def test_size_mismatch_is_refused(store):
    data = b"12345"
    with pytest.raises(InvalidArgument, match="expected 6 bytes, got 5"):
        store.ingest(io.BytesIO(data), expected=sha256(data), size=6)
    assert blobs_dir(store) == [] and os.listdir(store.ingest_dir) == []


def test_missing_blob_and_bad_digests(store):
    missing = sha256(b"nope")
    assert not store.exists(missing)
    with pytest.raises(NotFound, match=f"content {missing}: blob not found"):
        store.open(missing)
    with pytest.raises(NotFound):
        store.info(missing)
    assert store.delete(missing) == 0
    with pytest.raises(InvalidArgument, match="only sha256"):
        store.path("md5:abcd")
    with pytest.raises(InvalidArgument, match="invalid digest"):
        store.path("sha256:../../etc/passwd")


def test_delete_frees_the_blob(store):
    info = store.ingest(b"x" * 100)
    assert store.delete(info.digest) == 100
    assert not store.exists(info.digest)


def test_concurrent_writers_of_the_same_blob(store):
    data = os.urandom(3 << 20)
    digest = sha256(data)
    errors = []
    barrier = threading.Barrier(8)

    def write():
        try:
            barrier.wait()
            with store.writer(expected=digest) as w:
                for i in range(0, len(data), 64 << 10):
                    w.write(data[i:i + (64 << 10)])
                w.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert blobs_dir(store) == [digest.split(":")[1]]
    assert Path(store.path(digest)).read_bytes() == data
    assert os.listdir(store.ingest_dir) == []


def test_concurrent_writers_in_separate_processes(store, workdir):
    data_path = workdir / "data"
    data_path.write_bytes(os.urandom(2 << 20))
    digest = sha256(data_path.read_bytes())
    script = (
        "import sys; from berth.content import ContentStore\n"
        "s = ContentStore(sys.argv[1])\n"
        "with open(sys.argv[2], 'rb') as f: s.ingest(f, expected=sys.argv[3])\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, store.root, str(data_path), digest])
             for _ in range(4)]
    assert [p.wait() for p in procs] == [0] * 4
    assert [b.digest for b in store.walk()] == [digest]
    assert os.listdir(store.ingest_dir) == []


def test_same_ref_cannot_have_two_writers(store):
    with store.writer(ref="pull-layer-1") as w:
        w.write(b"abc")
        with pytest.raises(Conflict, match="locked by another writer"):
            store.writer(ref="pull-layer-1")
        w.keep = True
    assert [s.ref for s in store.ingests()] == ["pull-layer-1"]


def test_resume_an_interrupted_ingest(store):
    data = b"0123456789" * 1000
    w = store.writer(ref="resumable")
    w.write(data[:4000])
    w.keep = True
    w.__exit__(None, None, None)
    # Not a blob yet, and listed as an inactive ingest.
    assert list(store.walk()) == []
    [status] = store.ingests()
    assert (status.ref, status.offset, status.active) == ("resumable", 4000, False)
    with store.writer(ref="resumable", resume=True) as w2:
        assert w2.offset == 4000
        w2.write(data[4000:])
        info = w2.commit(expected=sha256(data))
    assert info.size == len(data)
    assert Path(store.path(sha256(data))).read_bytes() == data


def test_crash_leftovers_in_ingest_are_invisible_and_collected(store):
    # A writer killed mid-write leaves a partial file in ingest/.
    script = (
        "import os, sys; from berth.content import ContentStore\n"
        "w = ContentStore(sys.argv[1]).writer(ref='crashed')\n"
        "w.write(b'partial' * 100)\n"
        "os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", script, store.root])
    assert proc.returncode == 9
    assert os.listdir(store.ingest_dir) == ["crashed"]
    assert list(store.walk()) == []
    assert not store.exists(sha256(b"partial" * 100))
    # A live writer's ingest is never removed, however old.
    live = store.writer(ref="live")
    live.write(b"x")
    assert store.remove_stale_ingests(max_age_s=3600) == 0   # both too recent
    assert store.remove_stale_ingests(max_age_s=0) == 700
    assert os.listdir(store.ingest_dir) == ["live"]
    live.abort()
    assert os.listdir(store.ingest_dir) == []


def test_finished_writer_commits_without_an_open_file(store):
    w = store.writer()
    w.write(b"spooled")
    w.finish()
    with pytest.raises(ValueError):
        w.write(b"more")
    # Still protected while this process holds it.
    assert store.remove_stale_ingests(max_age_s=0) == 0
    info = w.commit(expected=sha256(b"spooled"))
    assert Path(store.path(info.digest)).read_bytes() == b"spooled"


def test_invalid_ingest_ref(store):
    with pytest.raises(InvalidArgument, match="invalid ingest reference"):
        store.writer(ref="../escape")
