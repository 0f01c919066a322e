"""`run`, `start -a`, `attach` and `exec` against the scripted engine: the calls in
docker's order, the streams as a user sees them, and the exit codes."""

import json
import os
import signal
import time

import pytest
from fakeengine import FakeContainer, Hijack, Reply, Streamed, frame

from berth_cli.commands.hijack import EscapeDetector, FrameDemuxer, detach_key_bytes, validate_detach_keys
from berth_cli.errors import CLIError
from berth_cli.transport import ProtocolError

CID = "c0ffee" + "0" * 58


def test_run_without_stdin_or_tty_is_one_request_to_berthd(berth, engine):
    box = FakeContainer(engine, CID, frames=[(1, b"hello\n"), (2, b"oops\n"), (1, b"bye\n")], exit_code=3)
    r = berth("run", "--rm", "--name", "web", "busybox", "sh", "-c", "x")
    assert (r.code, r.out, r.err) == (3, "hello\nbye\n", "oops\n")
    assert engine.calls() == [("POST", "/berth/containers/run")]
    req = engine.last("POST", "/berth/containers/run")
    assert (req.param("name"), req.param("stdout"), req.param("stderr")) == ("web", "1", "1")
    assert box.config["HostConfig"]["AutoRemove"] is True and box.config["Cmd"] == ["sh", "-c", "x"]
    assert engine.connections == 1


def test_run_attaches_and_waits_before_starting(berth, engine):
    # docker's sequence: with a daemon that has no /berth/containers/run (dockerd)
    box = FakeContainer(engine, CID, frames=[(1, b"hello\n"), (2, b"oops\n"), (1, b"bye\n")], exit_code=3,
                        one_request=False)
    r = berth("run", "--rm", "busybox", "sh", "-c", "x")
    assert (r.code, r.out, r.err) == (3, "hello\nbye\n", "oops\n")
    calls = engine.calls()
    assert calls.pop(0) == ("POST", "/berth/containers/run")  # 404: page not found
    assert calls[0] == ("POST", "/containers/create")
    assert set(calls[1:3]) == {("POST", f"/containers/{CID}/attach"), ("POST", f"/containers/{CID}/wait")}
    assert calls[3] == ("POST", f"/containers/{CID}/start")
    attach = engine.last("POST", f"/containers/{CID}/attach")
    assert attach.headers["upgrade"] == "tcp" and attach.headers["connection"] == "Upgrade"
    assert {k: v[0] for k, v in attach.query.items()} == {"stream": "1", "stdout": "1", "stderr": "1"}
    assert engine.last("POST", f"/containers/{CID}/wait").param("condition") == "removed"
    # create and start share one kept-alive connection; attach and wait have their own
    assert engine.connections == 3
    assert box.config["HostConfig"]["AutoRemove"] is True


def test_run_exit_zero_and_next_exit(berth, engine):
    FakeContainer(engine, CID, frames=[(1, b"hi\n")], one_request=False)
    r = berth("run", "busybox", "echo", "hi")
    assert (r.code, r.out, r.err) == (0, "hi\n", "")
    assert engine.last("POST", f"/containers/{CID}/wait").param("condition") == "next-exit"


def test_run_pipes_stdin_and_closes_it(berth, engine):
    box = FakeContainer(engine, CID, echo_stdin=True)
    r = berth("run", "-i", "busybox", "cat", stdin=b"line one\nline two\n")
    assert (r.code, r.out) == (0, "line one\nline two\n")
    assert box.stdin == b"line one\nline two\n"
    body = box.config
    assert (body["AttachStdin"], body["OpenStdin"], body["StdinOnce"]) == (True, True, True)
    assert engine.last("POST", f"/containers/{CID}/attach").param("stdin") == "1"


def test_run_tty_stream_is_raw(berth, engine):
    FakeContainer(engine, CID, tty=True, frames=[b"\x01raw bytes\r\n"])
    r = berth("run", "-t", "busybox")
    assert (r.code, r.out_bytes) == (0, b"\x01raw bytes\r\n")


def test_run_tty_with_stdin_needs_a_terminal(berth, engine):
    r = berth("run", "-it", "busybox")
    assert (r.code, r.err) == (1, "the input device is not a TTY\n")
    assert engine.requests == []


def test_run_detached_prints_the_id_and_does_not_attach(berth, engine):
    box = FakeContainer(engine, CID)
    r = berth("run", "-d", "busybox", "sleep", "9")
    assert (r.code, r.out, r.err) == (0, CID + "\n", "")
    assert engine.calls() == [("POST", "/containers/create"), ("POST", f"/containers/{CID}/start")]
    assert (box.config["AttachStdout"], box.config["AttachStderr"]) == (False, False)
    r = berth("run", "-d", "-a", "stdout", "busybox")
    assert (r.code, r.err) == (1, "conflicting options: cannot specify both --attach and --detach\n")


@pytest.mark.parametrize("message,code", [
    ('exec: "nosuch": executable file not found in $PATH', 127),
    ("open /x: no such file or directory", 127),
    ('exec: "/etc": permission denied', 126),
    ('exec: "/etc": is a directory', 126),
    ("cgroup: memory limit is below the minimum", 125),
])
def test_run_start_errors_map_to_docker_exit_codes(berth, engine, message, code):
    FakeContainer(engine, CID, start_error=(400, message))
    r = berth("run", "busybox", "x")
    assert r.code == code
    assert r.err == f"berth: Error response from daemon: {message}\n\nRun 'berth run --help' for more information\n"


def test_run_pulls_a_missing_image_then_retries(berth, engine):
    box = FakeContainer(engine, CID, frames=[(1, b"ran\n")])
    created = []

    def create(req):
        created.append(req)
        if len(created) == 1:
            return Reply(404, {"message": "No such image: busybox:latest"})
        return box._create(req)

    engine.route("POST", "/containers/create", create)
    engine.route("POST", "/images/create", Streamed(lambda: iter([
        b'{"status":"Pulling from library/busybox","id":"latest"}\n',
        b'{"status":"Status: Downloaded newer image for busybox:latest"}\n'])))
    r = berth("run", "busybox")
    assert (r.code, r.out) == (0, "ran\n")
    assert r.err == ("Unable to find image 'busybox:latest' locally\nlatest: Pulling from library/busybox\n"
                     "Status: Downloaded newer image for busybox:latest\n")
    pull = engine.last("POST", "/images/create")
    assert (pull.param("fromImage"), pull.param("tag")) == ("docker.io/library/busybox", "latest")
    assert "x-registry-auth" in pull.headers
    assert len(created) == 2


def test_run_missing_image_that_cannot_be_pulled(berth, engine):
    engine.route("POST", "/containers/create", Reply(404, {"message": "No such image: nosuch:1"}))
    engine.route("POST", "/images/create", Reply(404, {"message": "pull access denied for nosuch"}))
    r = berth("run", "nosuch:1")
    assert r.code == 125
    assert r.err == ("Unable to find image 'nosuch:1' locally\nberth: Error response from daemon: "
                     "pull access denied for nosuch\n\nRun 'berth run --help' for more information\n")
    r = berth("run", "--pull", "never", "nosuch:1")
    assert r.code == 125 and "No such image: nosuch:1" in r.err
    assert [c for c in engine.calls() if c[1] == "/images/create"] == [("POST", "/images/create")]


def test_run_name_in_use_and_invalid_reference(berth, engine):
    engine.route("POST", "/containers/create", Reply(409, {
        "message": 'Conflict. The container name "/web" is already in use by container "abc".'}))
    r = berth("run", "--name", "web", "busybox")
    assert r.code == 125
    assert r.err.startswith('berth: Error response from daemon: Conflict. The container name "/web" is already')
    r = berth("run", "BusyBox")
    assert r.code == 125
    assert r.err.startswith("berth: invalid reference format: repository name (library/BusyBox) must be lowercase")


@pytest.mark.parametrize("one_request", [True, False])
def test_run_forwards_signals_to_the_container(berth, engine, one_request):
    box = FakeContainer(engine, CID, one_request=one_request)

    def signal_the_cli():
        # The CLI forwards once it knows the ID (its relay is then in place).
        for _ in range(500):
            if signal.getsignal(signal.SIGTERM) is not previous:
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # what a supervisor would send the CLI
        for _ in range(500):
            if box.killed:
                break
            time.sleep(0.01)

    previous = signal.getsignal(signal.SIGTERM)
    if one_request:
        box.while_running = signal_the_cli
    else:
        def attach(sock, reader):
            box.started.wait(10)
            signal_the_cli()
            box._attach(sock, reader)
        engine.route("POST", f"/containers/{CID}/attach", lambda r: Hijack(attach))
    r = berth("run", "busybox", "sleep", "5")
    assert r.code == 0
    assert box.killed == ["TERM"]
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_run_without_sig_proxy_leaves_signals_alone(berth, engine):
    FakeContainer(engine, CID, one_request=False)
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *a: seen.append("cli"))
    try:
        def attach(sock, reader):
            box.started.wait(10)
            os.kill(os.getpid(), signal.SIGUSR1)
            box._attach.__func__(box, sock, reader)

        box = FakeContainer(engine, CID, one_request=False)
        engine.route("POST", f"/containers/{CID}/attach", lambda r: Hijack(attach))
        r = berth("run", "--sig-proxy=false", "busybox")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert r.code == 0 and box.killed == [] and seen == ["cli"]


def test_cidfile(berth, engine, workdir):
    FakeContainer(engine, CID)
    path = workdir / "cid"
    assert berth("run", "--cidfile", str(path), "busybox").code == 0
    assert path.read_text() == CID
    r = berth("run", "--cidfile", str(path), "busybox")
    assert r.code == 125 and "container ID file found, make sure the other container isn't running" in r.err
    engine.route("POST", "/containers/create", Reply(500, {"message": "boom"}))
    other = workdir / "cid2"
    assert berth("create", "--cidfile", str(other), "busybox").code == 1
    assert not other.exists()  # no ID, no file


def test_start_attach_and_plain(berth, engine):
    FakeContainer(engine, CID, frames=[(1, b"started\n")], exit_code=4)
    r = berth("start", "-a", CID)
    assert (r.code, r.out) == (4, "started\n")
    engine.route("POST", "/containers/a/start", Reply(204))
    engine.route("POST", "/containers/b/start", Reply(404, {"message": "No such container: b"}))
    r = berth("start", "a", "b")
    assert (r.code, r.out) == (1, "a\n")
    assert r.err == "Error response from daemon: No such container: b\nError: failed to start containers: b\n"
    r = berth("start", "-a", "a", "b")
    assert (r.code, r.err) == (1, "you cannot start and attach multiple containers at once\n")


def test_attach_checks_the_state_first(berth, engine):
    box = FakeContainer(engine, CID, frames=[(1, b"out\n"), (2, b"err\n")], exit_code=2)
    box.started.set()  # attach is for a running container
    r = berth("attach", CID)
    assert (r.code, r.out, r.err) == (2, "out\n", "err\n")
    # The wait goes out first, but on its own connection: the fake engine's
    # threads may record the two in either order.
    assert sorted(engine.calls()[:2]) == [("GET", f"/containers/{CID}/json"),
                                          ("POST", f"/containers/{CID}/wait")]
    assert ("POST", f"/containers/{CID}/start") not in engine.calls()
    engine.route("GET", f"/containers/{CID}/json", Reply(json_body={"Id": CID, "State": {"Running": False}}))
    r = berth("attach", CID)
    assert (r.code, r.err) == (1, "You cannot attach to a stopped container, start it first\n")


# -- exec --------------------------------------------------------------------------------------

def test_exec_streams_and_returns_the_exit_code(berth, engine):
    engine.route("GET", "/containers/web/json", Reply(json_body={"Id": CID, "State": {"Running": True}}))
    engine.route("POST", "/containers/web/exec", Reply(201, {"Id": "e1"}))

    def session(sock, reader):
        sock.sendall(frame(1, b"in exec\n") + frame(2, b"warn\n"))
        sock.close()

    engine.route("POST", "/exec/e1/start", lambda r: Hijack(session))
    engine.route("GET", "/exec/e1/json", Reply(json_body={"ExitCode": 5, "Running": False}))
    r = berth("exec", "-e", "A=1", "-u", "root", "-w", "/tmp", "web", "sh", "-c", "x")
    assert (r.code, r.out, r.err) == (5, "in exec\n", "warn\n")
    body = engine.last("POST", "/containers/web/exec").json()
    assert body == {"User": "root", "Privileged": False, "Tty": False, "AttachStdin": False, "AttachStderr": True, "AttachStdout": True, "Detach": False,
                    "DetachKeys": "", "Env": ["A=1"], "WorkingDir": "/tmp", "Cmd": ["sh", "-c", "x"]}
    start = engine.last("POST", "/exec/e1/start")
    assert json.loads(start.body) == {"Detach": False, "Tty": False}


def test_exec_detached_and_errors(berth, engine):
    engine.route("GET", "/containers/web/json", Reply(json_body={"Id": CID}))
    engine.route("POST", "/containers/web/exec", Reply(201, {"Id": "e2"}))
    engine.route("POST", "/exec/e2/start", Reply(200))
    r = berth("exec", "-d", "web", "sleep", "9")
    assert (r.code, r.out, r.err) == (0, "", "")
    assert json.loads(engine.last("POST", "/exec/e2/start").body) == {"Detach": True, "Tty": False}
    engine.route("POST", "/containers/web/exec", Reply(409, {"message": "container web is not running"}))
    r = berth("exec", "web", "true")
    assert (r.code, r.err) == (1, "Error response from daemon: container web is not running\n")
    r = berth("exec", "nosuch", "true")
    assert (r.code, r.err) == (1, "Error response from daemon: page not found: /containers/nosuch/json\n")
    r = berth("exec", "web")
    assert r.code == 1 and r.err.startswith("berth: 'berth exec' requires at least 2 arguments")


# -- the stream machinery ------------------------------------------------------------------------

def test_frame_demuxer_handles_any_cut():
    data = frame(1, b"hello") + frame(2, b"") + frame(2, b"err") + frame(1, b"x" * 70000)
    for step in (1, 3, 8, 9, 4096, len(data)):
        demux, got = FrameDemuxer(), []
        for i in range(0, len(data), step):
            got += demux.feed(data[i:i + step])
        demux.finish()
        assert got == [(1, b"hello"), (2, b""), (2, b"err"), (1, b"x" * 70000)]
    demux = FrameDemuxer()
    demux.feed(frame(1, b"cut")[:-1])
    with pytest.raises(ProtocolError):
        demux.finish()


def test_detach_keys():
    assert validate_detach_keys("") == b"\x10\x11"
    assert detach_key_bytes("ctrl-a,x,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    with pytest.raises(CLIError) as e:
        validate_detach_keys("ctrl-foo")
    assert e.value.message == "invalid detach keys (ctrl-foo): unknown character: 'ctrl-foo'"
    escape = EscapeDetector(b"\x10\x11")
    assert escape.feed(b"a") == (b"a", False)
    assert escape.feed(b"\x10") == (b"", False)        # held: may be the start of the sequence
    assert escape.feed(b"b") == (b"\x10b", False)      # it was not: both go through
    assert escape.feed(b"\x10") == (b"", False)
    assert escape.feed(b"\x11") == (b"", True)          # detached
    assert escape.feed(b"\x10\x11") == (b"\x10\x11", False)  # a paste is not typing


def test_run_detach_keys_are_validated_before_creating(berth, engine):
    r = berth("run", "--detach-keys", "ctrl-", "busybox")
    assert (r.code, r.err) == (1, "invalid detach keys (ctrl-): unknown character: 'ctrl-'\n")
    assert engine.requests == []
