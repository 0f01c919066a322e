"""`berth cp` against the scripted archive API: docker's path rules in both
directions, tar streams through "-", and hostile archives that must not write
outside the destination."""

import base64
import io
import json
import os
import tarfile

import pytest
from fakeengine import Reply

GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27


def stat_header(name: str, mode: int, size: int = 0, link: str = "") -> dict:
    stat = {"name": name, "size": size, "mode": mode, "mtime": "2024-01-02T03:04:05Z", "linkTarget": link}
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(stat).encode()).decode()}


def make_tar(entries) -> bytes:
    """entries: (name, content bytes | None for a directory | ("link", target) | ("hard", target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1704164645
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "link" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o640
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def serve(engine, path: str, stat: dict, tar: bytes, container: str = "ctr"):
    """GET/HEAD /containers/ctr/archive?path=... answers for one path."""
    def handler(req):
        if req.param("path") != path:
            return Reply(404, {"message": f"Could not find the file {req.param('path')} in container {container}"})
        return Reply(200, body=b"" if req.method == "HEAD" else tar, headers=stat, content_type="application/x-tar")
    engine.route("GET", f"/containers/{container}/archive", handler)
    engine.route("HEAD", f"/containers/{container}/archive", handler)


def tree(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            out[rel] = None if os.path.isdir(full) else open(full, "rb").read()
    return out


# -- from a container ---------------------------------------------------------------------

def test_file_to_new_name_and_into_a_directory(berth, engine, workdir):
    serve(engine, "/etc/hostname", stat_header("hostname", 0o644, 4), make_tar([("hostname", b"box\n")]))
    assert berth("cp", "ctr:/etc/hostname", str(workdir / "copy")).code == 0
    assert (workdir / "copy").read_bytes() == b"box\n"
    assert oct((workdir / "copy").stat().st_mode & 0o777) == "0o640"  # the archive's mode
    (workdir / "into").mkdir()
    r = berth("cp", "ctr:/etc/hostname", str(workdir / "into"))
    assert (r.code, r.out, r.err) == (0, "", "")
    assert (workdir / "into" / "hostname").read_bytes() == b"box\n"
    r = berth("cp", "ctr:/etc/hostname", str(workdir / "nodir") + "/")
    assert (r.code, r.err) == (1, "no such directory\n")
    r = berth("cp", "ctr:/etc/hostname", str(workdir / "missing" / "deeper" / "x"))
    assert r.code == 1 and r.err == f'invalid output path: directory "{workdir}/missing/deeper" does not exist\n'


def test_directory_copies(berth, engine, workdir):
    tar = make_tar([("src", None), ("src/a", b"A"), ("src/sub", None), ("src/sub/b", b"B")])
    serve(engine, "/data/src", stat_header("src", GO_DIR | 0o755), tar)
    assert berth("cp", "ctr:/data/src", str(workdir / "new")).code == 0
    assert tree(workdir / "new") == {"a": b"A", "sub": None, "sub/b": b"B"}
    (workdir / "existing").mkdir()
    assert berth("cp", "ctr:/data/src", str(workdir / "existing")).code == 0
    assert tree(workdir / "existing") == {"src": None, "src/a": b"A", "src/sub": None, "src/sub/b": b"B"}
    (workdir / "afile").write_bytes(b"x")
    r = berth("cp", "ctr:/data/src", str(workdir / "afile"))
    assert (r.code, r.err) == (1, "cannot copy directory\n")
    # "dir/." copies the content only; the daemon names the root "."
    serve(engine, "/data/src/.", stat_header(".", GO_DIR | 0o755),
          make_tar([(".", None), ("./a", b"A2"), ("./sub", None), ("./sub/b", b"B2")]))
    (workdir / "content").mkdir()
    assert berth("cp", "ctr:/data/src/.", str(workdir / "content")).code == 0
    assert tree(workdir / "content") == {"a": b"A2", "sub": None, "sub/b": b"B2"}


def test_to_stdout_and_directory_over_file_refused(berth, engine, workdir):
    tar = make_tar([("f", b"data")])
    serve(engine, "/f", stat_header("f", 0o644, 4), tar)
    r = berth("cp", "ctr:/f", "-")
    assert (r.code, r.out_bytes) == (0, tar)
    (workdir / "d").mkdir()
    (workdir / "d" / "f").mkdir()
    r = berth("cp", "ctr:/f", str(workdir / "d"))
    assert r.code == 1 and "cannot overwrite directory" in r.err and "with non-directory 'f'" in r.err


@pytest.mark.parametrize("entries", [
    [("../escape", b"x")],
    [("f", ("link", "/")), ("f/escape", b"x")],
    [("f", ("link", "..")), ("f/escape", b"x")],
    [("f", ("hard", "../../escape"))],
])
def test_hostile_archives_stay_inside(berth, engine, workdir, entries):
    (workdir / "dest").mkdir()
    serve(engine, "/f", stat_header("f", 0o644, 1), make_tar(entries))
    r = berth("cp", "ctr:/f", str(workdir / "dest"))
    assert r.code == 1 and "outside" in r.err
    assert not (workdir / "escape").exists() and not os.path.exists("/escape")


def test_follow_link_keeps_the_name_typed(berth, engine, workdir):
    def handler(req):
        path = req.param("path")
        if path == "/etc/link":
            return Reply(200, headers=stat_header("link", GO_SYMLINK | 0o777, link="real"))
        if path == "/etc/real":
            return Reply(200, body=b"" if req.method == "HEAD" else make_tar([("real", b"target")]),
                         headers=stat_header("real", 0o644, 6))
        return Reply(404, {"message": "nope"})
    engine.route("HEAD", "/containers/ctr/archive", handler)
    engine.route("GET", "/containers/ctr/archive", handler)
    (workdir / "out").mkdir()
    assert berth("cp", "-L", "ctr:/etc/link", str(workdir / "out")).code == 0
    assert tree(workdir / "out") == {"link": b"target"}


# -- to a container -----------------------------------------------------------------------

def put_route(engine, dest_stats: dict, container: str = "ctr") -> list:
    puts = []

    def stat(req):
        st = dest_stats.get(req.param("path"))
        if st is None:
            return Reply(404, {"message": "Could not find the file"})
        return Reply(200, headers=st)

    def put(req):
        puts.append((req.param("path"), req.body, {k: v[0] for k, v in req.query.items()}))
        return Reply(200)
    engine.route("HEAD", f"/containers/{container}/archive", stat)
    engine.route("PUT", f"/containers/{container}/archive", put)
    return puts


def names(tar_bytes: bytes) -> list[tuple[str, bytes | None]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar:
            out.append((m.name, tar.extractfile(m).read() if m.isreg() else None))
    return out


def test_copy_to_container_path_rules(berth, engine, workdir):
    src = workdir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"A")
    (src / "sub" / "b").write_bytes(b"B")
    puts = put_route(engine, {"/tmp": stat_header("tmp", GO_DIR | 0o1777),
                              "/etc/hostname": stat_header("hostname", 0o644, 4)})
    assert berth("cp", str(src / "a"), "ctr:/tmp").code == 0
    path, body, query = puts[-1]
    assert (path, names(body)) == ("/tmp", [("a", b"A")])
    assert query == {"path": "/tmp", "noOverwriteDirNonDir": "1"}
    assert berth("cp", "-a", str(src / "a"), "ctr:/etc/hostname").code == 0
    path, body, query = puts[-1]
    assert (path, names(body), query.get("copyUIDGID")) == ("/etc", [("hostname", b"A")], "1")
    assert berth("cp", str(src), "ctr:/newdir").code == 0
    path, body, _ = puts[-1]
    assert (path, names(body)) == ("/", [("newdir", None), ("newdir/a", b"A"), ("newdir/sub", None),
                                         ("newdir/sub/b", b"B")])
    assert berth("cp", str(src), "ctr:/tmp").code == 0
    assert names(puts[-1][1])[0] == ("src", None)
    assert berth("cp", str(src) + "/.", "ctr:/tmp").code == 0
    assert names(puts[-1][1]) == [("a", b"A"), ("sub", None), ("sub/b", b"B")]
    r = berth("cp", str(src), "ctr:/etc/hostname")
    assert (r.code, r.err) == (1, "cannot copy directory\n")
    r = berth("cp", str(src / "a"), "ctr:/nodir/")
    assert (r.code, r.err) == (1, "no such directory\n")
    r = berth("cp", str(workdir / "nope"), "ctr:/tmp")
    assert (r.code, r.err) == (1, f"lstat {workdir}/nope: no such file or directory\n")


def test_tar_from_stdin(berth, engine, workdir):
    puts = put_route(engine, {"/tmp": stat_header("tmp", GO_DIR | 0o755),
                              "/etc/hostname": stat_header("hostname", 0o644, 4)})
    tar = make_tar([("x", b"1")])
    assert berth("cp", "-", "ctr:/tmp", stdin=tar).code == 0
    assert puts[-1][:2] == ("/tmp", tar)
    r = berth("cp", "-", "ctr:/etc/hostname", stdin=tar)
    assert (r.code, r.err) == (1, 'destination "ctr:/etc/hostname" must be a directory\n')


def test_argument_errors(berth):
    assert berth("cp", "a:/x", "b:/y").err == "copying between containers is not supported\n"
    assert berth("cp", "/x", "./y").err == "must specify at least one container source\n"
    assert berth("cp", "", "c:/y").err == "source can not be empty\n"
    r = berth("cp", "only-one")
    assert r.code == 1 and r.err.startswith("berth: 'berth cp' requires 2 arguments")
