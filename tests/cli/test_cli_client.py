"""The hand-written HTTP/1.1 client: framings, streamed bodies, errors, auto-start hook."""

import json
import os
import socket
import threading

import pytest
from cli_fakeapi import FakeAPI, Reply

from berth_cli.client import APIClient, encode_filters
from berth_cli.errors import APIError, ConnectionFailed
from berth_cli.transport import Connection, ProtocolError, quote, urlencode


@pytest.fixture
def client(fake_api):
    return APIClient(fake_api.host)


@pytest.mark.parametrize("reply", [
    Reply(json_body={"k": "v" * 5000}),
    Reply(chunks=[b'{"k": "', b"v" * 5000, b'"}'], content_type="application/json"),
    Reply(body=json.dumps({"k": "v" * 5000}).encode(), close_delimited=True),
], ids=["content-length", "chunked", "close-delimited"])
def test_every_body_framing(fake_api, client, reply):
    fake_api.route("GET", "/info", reply)
    assert client.info() == {"k": "v" * 5000}


def test_json_stream_split_anywhere(fake_api, client):
    messages = [{"status": "Pulling", "id": "é" * 3}, {"stream": "line\n"}, {"aux": {"ID": "sha256:x"}}]
    data = "".join(json.dumps(m, ensure_ascii=False) + "\r\n" for m in messages).encode()
    # every cut point, including inside the two-byte "é"
    for cut in range(1, len(data)):
        fake_api.route("GET", "/events", Reply(chunks=[data[:cut], data[cut:]]))
        with client.events() as resp:
            assert list(resp.iter_json()) == messages


def test_concatenated_json_without_newlines(fake_api, client):
    fake_api.route("GET", "/events", Reply(chunks=[b'{"a":1}{"b"', b":2} [3]"]))
    with client.events() as resp:
        assert list(resp.iter_json()) == [{"a": 1}, {"b": 2}, [3]]


def test_garbage_in_a_json_stream_is_an_error(fake_api, client):
    fake_api.route("GET", "/events", Reply(chunks=[b'{"a":1}\n{"b": nope}\n']))
    with client.events() as resp:
        it = resp.iter_json()
        assert next(it) == {"a": 1}
        with pytest.raises(ProtocolError, match="malformed JSON message"):
            next(it)


def test_request_bodies(fake_api, client, workdir):
    seen = {}

    def record(req):
        seen["body"], seen["headers"] = req.body, req.headers
        return Reply(chunks=[b'{"stream":"ok"}'])

    fake_api.route("POST", "/images/load", record)
    payload = os.urandom(3 << 20)
    path = workdir / "img.tar"
    path.write_bytes(payload)
    with open(path, "rb") as f:
        f.read(1000)  # a partly read file: only the rest is sent
        client.image_load(f).close()
    assert seen["body"] == payload[1000:]
    assert seen["headers"]["Content-Length"] == str(len(payload) - 1000)
    assert "Transfer-Encoding" not in seen["headers"]

    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, payload[:70000]), os.close(w)), daemon=True).start()
    with os.fdopen(r, "rb") as pipe:
        client.image_load(pipe).close()
    assert seen["body"] == payload[:70000]
    assert seen["headers"]["Transfer-Encoding"] == "chunked"

    client.image_load(iter([b"a", b"", b"bc"])).close()
    assert seen["body"] == b"abc"


def test_daemon_error_bodies(fake_api, client):
    fake_api.route("GET", "/info", Reply(409, {"message": "conflict: in use\n"}))
    with pytest.raises(APIError) as e:
        client.info()
    assert (e.value.status, e.value.message) == (409, "Error response from daemon: conflict: in use")
    fake_api.route("GET", "/info", Reply(502, body=b""))
    with pytest.raises(APIError) as e:
        client.info()
    assert e.value.message == ("Error response from daemon: request returned 502 Bad Gateway for API route "
                               "and version /v1.41/info, check if the server supports the requested API version")


def test_an_early_answer_beats_the_broken_pipe(workdir):
    """The daemon may refuse an upload before reading it; its message is what the user needs."""
    path = str(workdir / "early.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.recv(4096)
        body = b'{"message":"invalid tar header"}'
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(APIError) as e:
        APIClient(f"unix://{path}").image_load(iter([b"x" * (1 << 20)] * 64))
    assert e.value.message == "Error response from daemon: invalid tar header"
    server.close()


def test_truncated_chunked_body_is_an_error(workdir):
    path = str(workdir / "trunc.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly-part")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    conn = Connection(path)
    resp = conn.request("GET", "/images/get", {}, None)
    with pytest.raises(ProtocolError):
        resp.read()
    server.close()


def test_autostart_hook_runs_once_then_connects(workdir):
    path = str(workdir / "late.sock")
    started = []

    def start():
        started.append(FakeAPI(path))

    client = APIClient(f"unix://{path}", autostart=start)
    assert client.ping()["api-version"] == "1.41"
    client.ping()
    assert len(started) == 1
    started[0].close()


def test_no_autostart_means_a_clear_error(workdir):
    with pytest.raises(ConnectionFailed) as e:
        APIClient(f"unix://{workdir}/none.sock").info()
    assert e.value.message == (f"Cannot connect to the berth daemon at unix://{workdir}/none.sock. "
                               "Is the berth daemon running?")
    (workdir / "plain").write_text("")
    with pytest.raises(ConnectionFailed):
        APIClient(f"unix://{workdir}/plain").info()


def test_query_encoding():
    assert urlencode({"a": True, "b": False, "c": None, "d": ["x y", "é/&="], "e": 3}) == \
        "a=1&b=0&d=x%20y&d=%C3%A9%2F%26%3D&e=3"
    assert quote("localhost:5000/app:v1", "/:@") == "localhost:5000/app:v1"
    assert json.loads(encode_filters({"label": ["a=b", "c"], "dangling": ["true"]})) == \
        {"label": {"a=b": True, "c": True}, "dangling": {"true": True}}
    assert encode_filters({}) is None


def test_hijacked_stream_with_multiplexed_frames(workdir):
    """attach/exec: 101 UPGRADED, then raw frames out and raw bytes in."""
    path = str(workdir / "attach.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    received = []

    def frame(stream, data):
        return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data

    def answer():
        conn, _ = server.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        received.append(head)
        # the first frame rides in the same packet as the headers
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + frame(1, b"hello "))
        stdin = b""
        while True:
            data = conn.recv(4096)
            if not data:
                break
            stdin += data
        conn.sendall(frame(2, b"err") + frame(1, stdin.upper()) + frame(1, b""))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    stream = APIClient(f"unix://{path}").hijack("POST", "/containers/c1/attach",
                                                {"stream": True, "stdin": True, "stdout": True})
    stream.sendall(b"typed input")
    stream.close_write()
    assert list(stream.frames()) == [(1, b"hello "), (2, b"err"), (1, b"TYPED INPUT"), (1, b"")]
    stream.close()
    head = received[0].decode()
    assert head.startswith("POST /v1.41/containers/c1/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n")
    assert "Upgrade: tcp\r\n" in head and "Connection: Upgrade\r\n" in head
    server.close()


def test_a_stream_cut_short_is_reported(run_cli, workdir):
    """The daemon dies while `berth events` follows it: the events so far, then an error."""
    path = str(workdir / "dying.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.recv(4096)
        event = json.dumps({"Type": "image", "Action": "tag", "Actor": {"ID": "x", "Attributes": {}},
                            "time": 1704164645, "timeNano": 1704164645000000000}).encode() + b"\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(event), event) + b"40\r\n{\"Type\"")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    r = run_cli("events", host=f"unix://{path}")
    assert r.code == 1
    assert r.out == "2024-01-02T03:04:05.000000000Z image tag x\n"
    assert r.err == ("error reading the daemon's response: connection closed in the middle of a chunk\n")
    server.close()


@pytest.mark.parametrize("value", [
    [], {}, [{}], [[]], None, True, 0, -5, 1.5, 1e300, 2.5e-7, float("nan"), "", "é\n\"\\\t\u2028<&>",
    [{"Id": "sha256:x", "RepoTags": ["a:1", "b:2"], "Config": {"Cmd": None, "Env": [], "Labels": {}},
      "Size": 1982444, "Nested": [[1, [2, {"k": [None, False]}]]], "ünï": "cödé"}],
])
def test_inspect_indenter_matches_json_dumps(value):
    from berth_cli.jsonio import dumps_indented, loads
    assert dumps_indented(value) == json.dumps(value, indent=4, ensure_ascii=False)
    if value == value:  # NaN aside, it reads back
        assert loads(dumps_indented(value)) == value
