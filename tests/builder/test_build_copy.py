"""COPY and ADD: Docker's directory semantics, wildcards, owners and modes,
--from, --link, heredocs, tar extraction, URLs with --checksum, .dockerignore."""

from __future__ import annotations

import bz2
import hashlib
import http.server
import io
import lzma
import tarfile
import threading

import pytest


def _tar(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid = info.gid = 1234
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ls(builds, image: str, *paths: str) -> str:
    return builds.output(image, "sh", "-c", "stat -c '%n %a %u:%g %F' " + " ".join(paths))


def test_directory_and_file_destinations(builds):
    ctx = builds.context({
        "Dockerfile": """\
FROM busybox
COPY src /dst
COPY src/ /dst2/
COPY file.txt /existing-dir
COPY file.txt /newname
COPY file.txt /newdir/
WORKDIR /work
COPY file.txt .
COPY file.txt rel/
""",
        "src/a": "a", "src/sub/b": "b", "file.txt": "f",
    })
    ctx.joinpath("Dockerfile").write_text(ctx.joinpath("Dockerfile").read_text().replace(
        "COPY file.txt /existing-dir", "COPY file.txt /tmp"))
    builds.build(ctx, "-t", "cp")
    out = builds.output("cp", "sh", "-c", "find /dst /dst2 /tmp/file.txt /newname /newdir "
                                          "/work -type f | sort")
    assert out.split() == ["/dst/a", "/dst/sub/b", "/dst2/a", "/dst2/sub/b", "/newdir/file.txt",
                           "/newname", "/tmp/file.txt", "/work/file.txt", "/work/rel/file.txt"]
    builds.assert_clean()


def test_wildcards_and_multiple_sources(builds):
    ctx = builds.context({
        "Dockerfile": "FROM busybox\nCOPY *.txt conf/[ab].cfg /out/\n",
        "one.txt": "1", "two.txt": "2", "three.log": "3",
        "conf/a.cfg": "a", "conf/b.cfg": "b", "conf/c.cfg": "c",
    })
    builds.build(ctx, "-t", "wild")
    assert builds.output("wild", "ls", "/out").split() == ["a.cfg", "b.cfg", "one.txt", "two.txt"]
    bad = builds.context({"Dockerfile": "FROM busybox\nCOPY a b /out\n", "a": "", "b": ""})
    result = builds.build(bad, check=False)
    assert result.returncode != 0
    assert ("When using COPY with more than one source file, the destination must be a "
            "directory and end with a /") in result.stderr
    builds.assert_clean()


def test_owners_modes_and_links(builds):
    ctx = builds.context({
        "Dockerfile": """\
FROM busybox
COPY tree /plain/
COPY --chown=1000:1001 tree /numeric/
COPY --chown=nobody:nogroup tree /named/
COPY --chown=daemon tree /user-only/
COPY --chmod=0750 tree /chmod/
""",
        "tree/file": "x", "tree/script": "#!/bin/sh\n",
    })
    (ctx / "tree" / "script").chmod(0o755)
    (ctx / "tree" / "file").chmod(0o640)
    (ctx / "tree" / "link").symlink_to("file")
    (ctx / "tree" / "hard").hardlink_to(ctx / "tree" / "file")
    builds.build(ctx, "-t", "own")
    lines = _ls(builds, "own", "/plain/file", "/plain/script", "/numeric/file", "/named/file",
                "/user-only/file", "/chmod/file").splitlines()
    assert lines == ["/plain/file 640 0:0 regular file", "/plain/script 755 0:0 regular file",
                     "/numeric/file 640 1000:1001 regular file",
                     "/named/file 640 65534:65534 regular file",
                     "/user-only/file 640 1:1 regular file",
                     "/chmod/file 750 0:0 regular file"]
    assert builds.output("own", "readlink", "/plain/link") == "file\n"
    inodes = builds.output("own", "stat", "-c", "%i", "/plain/file", "/plain/hard").split()
    assert inodes[0] == inodes[1]


def test_chown_unknown_user_is_an_error(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nCOPY --chown=nosuchuser f /f\n", "f": ""})
    result = builds.build(ctx, check=False)
    assert result.returncode == 1
    assert "can't find uid for user nosuchuser: no such user: nosuchuser" in result.stderr
    builds.assert_clean()


def test_copy_from_stage_image_and_index(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox AS build
RUN mkdir -p /out && echo built > /out/artifact && chown 1234:1234 /out/artifact
FROM busybox
COPY --from=build /out/artifact /from-name
COPY --from=0 /out/ /from-index/
COPY --from=busybox /bin/busybox /busybox-from-image
COPY --from=build --chown=5:5 /out/artifact /chowned
"""})
    builds.build(ctx, "-t", "from")
    assert builds.output("from", "cat", "/from-name", "/from-index/artifact") == "built\nbuilt\n"
    # --from keeps owners unless --chown is given
    assert _ls(builds, "from", "/from-name", "/chowned").splitlines() == [
        "/from-name 644 1234:1234 regular file", "/chowned 644 5:5 regular file"]
    assert builds.output("from", "/busybox-from-image", "echo", "ok") == "ok\n"
    builds.assert_clean()


def test_copy_link(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nCOPY --link data /opt/data/\n",
                          "data/x": "linked\n"})
    builds.build(ctx, "-t", "link1")
    assert builds.output("link1", "cat", "/opt/data/x") == "linked\n"
    # the same COPY --link on another base reuses the layer as is
    other = builds.context({"Dockerfile": "FROM busybox\nRUN echo base-changed\n"
                                          "COPY --link data /opt/data/\n", "data/x": "linked\n"})
    builds.build(other, "-t", "link2")
    layers1 = builds.inspect("link1")["RootFS"]["Layers"]
    layers2 = builds.inspect("link2")["RootFS"]["Layers"]
    assert layers1[-1] == layers2[-1]
    assert builds.output("link2", "cat", "/opt/data/x") == "linked\n"


def test_heredoc_sources(builds):
    ctx = builds.context({"Dockerfile": """\
FROM busybox
ARG NAME=world
COPY <<EOF /hello.txt
hello $NAME
EOF
COPY <<-'RAW' /raw.txt
\tno $NAME expansion
\tRAW
"""})
    builds.build(ctx, "-t", "hd")
    assert builds.output("hd", "cat", "/hello.txt", "/raw.txt") == "hello world\nno $NAME expansion\n"


def test_add_extracts_local_archives(builds):
    files = {"a.txt": b"A\n", "dir/b.txt": b"B\n"}
    ctx = builds.context({
        "Dockerfile": "FROM busybox\nADD plain.tar /plain/\nADD z.tar.gz /gz/\nADD b.tar.bz2 /bz/\n"
                      "ADD x.tar.xz /xz\nCOPY z.tar.gz /copied/\nADD notatar.gz /raw/\n",
        "plain.tar": _tar(files), "z.tar.gz": _tar(files, "w:gz"),
        "b.tar.bz2": bz2.compress(_tar(files)), "x.tar.xz": lzma.compress(_tar(files)),
        "notatar.gz": b"just bytes",
    })
    builds.build(ctx, "-t", "add")
    out = builds.output("add", "sh", "-c", "cat /plain/a.txt /gz/dir/b.txt /bz/a.txt /xz/dir/b.txt;"
                                          " ls /copied; ls /raw")
    assert out == "A\nB\nA\nB\nz.tar.gz\nnotatar.gz\n"
    # archive owners and modes are kept
    assert _ls(builds, "add", "/gz/a.txt") == "/gz/a.txt 640 1234:1234 regular file\n"


class _Server(http.server.ThreadingHTTPServer):
    pass


@pytest.fixture
def http_files():
    """An HTTP server on 127.0.0.1 serving given bytes by path."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = files.get(self.path)
            if data is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_add_url_with_checksum(builds, http_files):
    files, base = http_files
    files["/pkg/tool.tar.gz"] = payload = _tar({"inside": b"x"}, "w:gz")
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    ctx = builds.context({"Dockerfile": f"FROM busybox\nADD --checksum={digest} {base}/pkg/tool.tar.gz /dl/\n"
                                        f"ADD {base}/pkg/tool.tar.gz /named\n"})
    builds.build(ctx, "-t", "url")
    # URLs are not extracted; the file is 0600 and keeps Last-Modified
    assert _ls(builds, "url", "/dl/tool.tar.gz", "/named").splitlines() == [
        "/dl/tool.tar.gz 600 0:0 regular file", "/named 600 0:0 regular file"]
    assert builds.output("url", "stat", "-c", "%Y", "/named") == "1445412480\n"
    bad = builds.context({"Dockerfile": f"FROM busybox\nADD --checksum=sha256:{'0' * 64} "
                                        f"{base}/pkg/tool.tar.gz /dl/\n"})
    result = builds.build(bad, check=False)
    assert result.returncode == 1 and "digest mismatch" in result.stderr
    missing = builds.context({"Dockerfile": f"FROM busybox\nADD {base}/nope /x\n"})
    result = builds.build(missing, check=False)
    assert result.returncode == 1 and "404" in result.stderr
    builds.assert_clean(allow_dangling=set())


def test_dockerignore_and_per_dockerfile_ignore(builds):
    ctx = builds.context({
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        "app.Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        "app.Dockerfile.dockerignore": "*.md\n",
        ".dockerignore": "secrets\n**/*.log\nbuild\n!build/keep\nDockerfile\n",
        "README.md": "r", "secrets/key": "k", "a.log": "", "sub/b.log": "", "build/x": "",
        "build/keep": "kept", "src/main.c": "c",
    })
    builds.build(ctx, "-t", "ign")
    listing = builds.output("ign", "sh", "-c", "cd /ctx && find . -type f | sort").split()
    assert listing == ["./.dockerignore", "./README.md", "./app.Dockerfile",
                       "./app.Dockerfile.dockerignore", "./build/keep", "./src/main.c"]
    builds.build(ctx, "-f", str(ctx / "app.Dockerfile"), "-t", "ign2")
    listing = builds.output("ign2", "sh", "-c", "cd /ctx && find . -type f | sort").split()
    assert "./README.md" not in listing and "./secrets/key" in listing and "./a.log" in listing


def test_symlinked_sources_and_destinations(builds):
    ctx = builds.context({"Dockerfile": "FROM busybox\nRUN mkdir /real && ln -s /real /alias\n"
                                        "COPY target /alias/\nCOPY link /via-link\n",
                          "target": "t\n"})
    (ctx / "link").symlink_to("target")
    builds.build(ctx, "-t", "sym")
    assert builds.output("sym", "cat", "/real/target", "/via-link") == "t\nt\n"
    assert builds.output("sym", "readlink", "/alias") == "/real\n"
