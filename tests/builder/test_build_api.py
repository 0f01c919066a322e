"""The build endpoints over raw HTTP: Docker's stream shapes and status codes,
berth's in-place endpoint, prune."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tarfile
import urllib.parse


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _post(daemon, path: str, params: list[tuple[str, str]] = (), body: bytes = b"",
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    query = urllib.parse.urlencode(list(params))
    target = f"/v1.41{path}" + (f"?{query}" if query else "")
    head = [f"POST {target} HTTP/1.1", "Host: berth", f"Content-Length: {len(body)}",
            "Connection: close"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(daemon.socket))
    s.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    lines = head_raw.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        rest = out
    return status, hdrs, rest


def _messages(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_build_stream_shapes(bdaemon):
    body = gzip.compress(_tar({"Dockerfile": b"FROM busybox\nRUN echo api\n"}))
    status, headers, raw = _post(bdaemon, "/build", [("t", "api:1"), ("t", "api:2")], body,
                                 {"Content-Type": "application/x-tar"})
    assert status == 200 and headers["content-type"] == "application/json"
    messages = _messages(raw)
    assert messages[0] == {"stream": "Step 1/2 : FROM busybox\n"}
    assert {"stream": "api\n"} in messages
    aux = [m for m in messages if "aux" in m]
    assert len(aux) == 1 and aux[0]["aux"]["ID"].startswith("sha256:")
    assert messages[-2:] == [{"stream": "Successfully tagged api:1\n"},
                             {"stream": "Successfully tagged api:2\n"}]


def test_quiet_and_errors_in_the_stream(bdaemon):
    ok = _tar({"Dockerfile": b"FROM busybox\nRUN echo hidden\n"})
    status, _, raw = _post(bdaemon, "/build", [("q", "1")], ok)
    messages = _messages(raw)
    assert status == 200 and len(messages) == 1
    assert messages[0]["stream"].startswith("sha256:") and messages[0]["stream"].endswith("\n")
    failing = _tar({"Dockerfile": b"FROM busybox\nRUN exit 3\n"})
    status, _, raw = _post(bdaemon, "/build", [], failing)
    last = _messages(raw)[-1]
    assert status == 200
    message = "The command '/bin/sh -c exit 3' returned a non-zero code: 3 (Dockerfile line 2)"
    assert last == {"errorDetail": {"message": message, "code": 3}, "error": message}


def test_request_errors_are_http_errors(bdaemon):
    ok = _tar({"Dockerfile": b"FROM busybox\n"})
    cases = [
        ([("buildargs", "{not json")], ok, "error reading build args"),
        ([("labels", "[1]")], ok, "error reading labels"),
        ([("remote", "https://example.com/ctx.tar")], ok, "remote build contexts are not supported"),
        ([("version", "2")], ok, "BuildKit"),
        ([("t", "Upper")], ok, 'invalid tag "Upper"'),
        ([("nocache", "maybe")], ok, "'nocache'"),
        ([], _tar({"Dockerfile": b"FROM busybox\nBAD\n"}), "unknown instruction: BAD"),
        ([("target", "x")], ok, 'target stage "x" could not be found'),
        ([], b"this is not a tar archive at all" * 20, "invalid build context"),
    ]
    for params, body, message in cases:
        status, _, raw = _post(bdaemon, "/build", params, body)
        assert status == 400, (params, raw)
        assert message in json.loads(raw)["message"]
    assert os.listdir(bdaemon.root / "builder" / "tmp") == []


def test_berth_build_in_place(bdaemon, workdir):
    ctx = workdir / "inplace"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\n")
    (ctx / "f").write_text("in place\n")
    st = os.stat(ctx)
    status, _, raw = _post(bdaemon, "/berth/build", [("context", str(ctx)), ("t", "ip"),
                                                     ("context_id", f"{st.st_dev}:{st.st_ino}")])
    assert status == 200 and {"stream": "Successfully tagged ip:latest\n"} in _messages(raw)
    status, _, raw = _post(bdaemon, "/berth/build", [("context", str(ctx)),
                                                     ("context_id", "1:2")])
    assert status == 412 and "is not the client's directory" in json.loads(raw)["message"]
    status, _, raw = _post(bdaemon, "/berth/build", [("context", "relative/dir")])
    assert status == 400
    status, _, raw = _post(bdaemon, "/berth/build", [("context", str(ctx)), ("dockerfile", "-")],
                           b"FROM busybox\nRUN cat /etc/hostname >/dev/null\n")
    assert status == 200 and any("aux" in m for m in _messages(raw))


def test_prune_endpoint(bdaemon):
    _post(bdaemon, "/build", [], _tar({"Dockerfile": b"FROM busybox\nRUN echo x > /x\n"}))
    status, _, raw = _post(bdaemon, "/build/prune", [("all", "1")])
    report = json.loads(raw)
    assert status == 200 and report["CachesDeleted"] and isinstance(report["SpaceReclaimed"], int)
    status, _, raw = _post(bdaemon, "/build/prune", [])
    assert json.loads(raw) == {"CachesDeleted": None, "SpaceReclaimed": 0}
    status, _, raw = _post(bdaemon, "/build/prune", [("filters", json.dumps({"bogus": ["1"]}))])
    assert status == 400 and "invalid filter 'bogus'" in json.loads(raw)["message"]
