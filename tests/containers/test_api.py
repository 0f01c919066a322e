"""The container endpoints as raw HTTP: status codes, bodies, hijacked
streams (101 and the legacy 200 form), wait conditions and events."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from ctrkit import demux, read_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

V = "/v1.41"


def create(api, body, name=None):
    path = f"{V}/containers/create" + (f"?name={name}" if name else "")
    return api.call("POST", path, body)


def test_create_errors(api, busybox):
    status, body, headers = create(api, {"Image": "nosuch:v2", "Cmd": ["true"]})
    assert status == 404 and body == {"message": "No such image: nosuch:v2"}
    assert headers["Content-Type"] == "application/json"
    status, body, _ = create(api, {"Image": "busybox", "Entrypoint": [""]})
    assert (status, body["message"]) == (400, "No command specified")
    status, body, _ = create(api, {"Image": "busybox", "Cmd": "true",
                                   "HostConfig": {"Memory": 1024}})
    assert (status, body["message"]) == (400, "Minimum memory limit allowed is 6MB")
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"],
                                   "HostConfig": {"AutoRemove": True,
                                                  "RestartPolicy": {"Name": "always"}}})
    assert status == 400 and "AutoRemove" in body["message"]
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"],
                                   "HostConfig": {"RestartPolicy": {"Name": "always",
                                                                    "MaximumRetryCount": 2}}})
    assert status == 400 and "maximum retry count" in body["message"]
    status, body, _ = api.call("POST", f"{V}/containers/create", b"{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"], "Env": "A=1"})
    assert status == 400 and "Env" in body["message"]
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"], "WorkingDir": "rel"})
    assert status == 400 and "absolute path" in body["message"]
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"]}, name="-bad")
    assert status == 400 and "Invalid container name" in body["message"]
    assert api.call("GET", f"{V}/containers/json?all=1")[1] == []


def test_create_start_lifecycle_statuses(api, busybox):
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["sleep", "100"]}, name="life")
    assert status == 201 and len(body["Id"]) == 64 and body["Warnings"] == []
    cid = body["Id"]
    status, body, _ = create(api, {"Image": "busybox", "Cmd": ["true"]}, name="life")
    assert status == 409
    assert body["message"] == (f'Conflict. The container name "/life" is already in use by '
                               f'container "{cid}". You have to remove (or rename) that container '
                               "to be able to reuse that name.")
    assert api.call("POST", f"{V}/containers/{cid[:5]}/start")[0] == 204
    assert api.call("POST", f"{V}/containers/life/start")[0] == 304
    assert api.call("POST", f"{V}/containers/life/unpause")[0] == 409
    status, body, _ = api.call("DELETE", f"{V}/containers/life")
    assert status == 409 and "You cannot remove a running container" in body["message"]
    assert api.call("POST", f"{V}/containers/life/stop?t=0")[0] == 204
    assert api.call("POST", f"{V}/containers/life/stop")[0] == 304
    status, body, _ = api.call("POST", f"{V}/containers/life/kill")
    assert status == 409 and "is not running" in body["message"]
    status, body, _ = api.call("POST", f"{V}/containers/life/exec", {"Cmd": ["true"]})
    assert status == 409 and body["message"] == f"Container {cid} is not running"
    assert api.call("DELETE", f"{V}/containers/{cid}")[0] == 204
    status, body, _ = api.call("GET", f"{V}/containers/{cid}/json")
    assert (status, body["message"]) == (404, f"No such container: {cid}")
    status, body, _ = api.call("POST", f"{V}/containers/life/wait?condition=bogus")
    assert status == 400 and "invalid condition" in body["message"]


def test_summary_shape(api, busybox):
    _, body, _ = create(api, {"Image": "busybox", "Cmd": ["sh", "-c", "echo a b"],
                              "Labels": {"x": "y"}}, name="shape")
    status, items, _ = api.call("GET", f"{V}/containers/json?all=1&size=1")
    assert status == 200 and len(items) == 1
    item = items[0]
    assert item["Id"] == body["Id"] and item["Names"] == ["/shape"]
    assert item["Image"] == "busybox" and item["ImageID"] == busybox
    assert item["Command"] == "sh -c 'echo a b'"
    assert item["State"] == "created" and item["Status"] == "Created"
    assert item["Labels"] == {"x": "y"} and item["Ports"] == []
    assert item["HostConfig"] == {"NetworkMode": "default"}
    assert item["SizeRw"] == 0 and item["SizeRootFs"] > 0
    status, body, _ = api.call("GET", f"{V}/containers/json?filters=" + "{bad")
    assert status == 400


def test_attach_upgrade_multiplexes_and_takes_stdin(api, busybox):
    _, body, _ = create(api, {"Image": "busybox", "Cmd": ["sh", "-c",
                                                          "read x; echo got $x; echo oops >&2"],
                              "OpenStdin": True, "StdinOnce": True, "AttachStdin": True},
                        name="att")
    s, head = api.hijack(f"{V}/containers/att/attach?stream=1&stdin=1&stdout=1&stderr=1")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert "Content-Type: application/vnd.docker.multiplexed-stream" in lines
    assert "Upgrade: tcp" in lines and "Connection: Upgrade" in lines
    # Input sent before the container starts is kept for it.
    s.sendall(b"hello\n")
    assert api.call("POST", f"{V}/containers/att/start")[0] == 204
    s.shutdown(socket.SHUT_WR)  # end of stdin; the output still comes back
    out, err = demux(read_all(s))
    s.close()
    assert (out, err) == (b"got hello\n", b"oops\n")
    status, body, _ = api.call("POST", f"{V}/containers/att/wait")
    assert body == {"Error": None, "StatusCode": 0}


def test_attach_legacy_form_and_logs(api, busybox):
    create(api, {"Image": "busybox", "Cmd": ["sh", "-c", "echo one; echo two >&2"]}, name="leg")
    assert api.call("POST", f"{V}/containers/leg/start")[0] == 204
    assert api.call("POST", f"{V}/containers/leg/wait")[1]["StatusCode"] == 0
    s, head = api.hijack(f"{V}/containers/leg/attach?logs=1&stdout=1&stderr=1", upgrade=False)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"application/vnd.docker.multiplexed-stream" in head
    assert demux(read_all(s)) == (b"one\n", b"two\n")
    s.close()
    status, raw, headers = api.call("GET", f"{V}/containers/leg/logs?stdout=1&stderr=1")
    assert status == 200 and demux(raw) == (b"one\n", b"two\n")
    status, raw, _ = api.call("GET", f"{V}/containers/leg/logs?stderr=1")
    assert demux(raw) == (b"", b"two\n")
    status, body, _ = api.call("GET", f"{V}/containers/leg/logs")
    assert status == 400 and "you must choose at least one stream" in body["message"]


def test_tty_logs_are_raw(api, busybox):
    create(api, {"Image": "busybox", "Cmd": ["echo", "tty-out"], "Tty": True}, name="ttyl")
    api.call("POST", f"{V}/containers/ttyl/start")
    api.call("POST", f"{V}/containers/ttyl/wait")
    status, raw, _ = api.call("GET", f"{V}/containers/ttyl/logs?stdout=1")
    assert raw == b"tty-out\r\n"


def test_wait_conditions(api, busybox):
    create(api, {"Image": "busybox", "Cmd": ["sh", "-c", "exit 5"]}, name="wc")
    # not-running on a created container answers at once.
    assert api.call("POST", f"{V}/containers/wc/wait")[1] == {"Error": None, "StatusCode": 0}
    results = {}

    def wait(condition):
        results[condition] = api.call("POST", f"{V}/containers/wc/wait?condition={condition}")[1]

    threads = [threading.Thread(target=wait, args=(c,)) for c in ("next-exit", "removed")]
    for t in threads:
        t.start()
    time.sleep(0.3)  # the waits are registered before the container starts
    api.call("POST", f"{V}/containers/wc/start")
    threads[0].join(30)
    assert results["next-exit"] == {"Error": None, "StatusCode": 5}
    assert "removed" not in results
    api.call("DELETE", f"{V}/containers/wc")
    threads[1].join(30)
    assert results["removed"] == {"Error": None, "StatusCode": 5}


def test_exec_api(api, busybox):
    create(api, {"Image": "busybox", "Cmd": ["sleep", "100"]}, name="ex")
    api.call("POST", f"{V}/containers/ex/start")
    status, body, _ = api.call("POST", f"{V}/containers/ex/exec",
                               {"Cmd": ["sh", "-c", "echo x; exit 3"], "AttachStdout": True,
                                "AttachStderr": True})
    assert status == 201
    eid = body["Id"]
    status, info, _ = api.call("GET", f"{V}/exec/{eid}/json")
    assert info["Running"] is False and info["ExitCode"] is None
    assert info["ProcessConfig"]["entrypoint"] == "sh"
    s, head = api.hijack(f"{V}/exec/{eid}/start")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    s.sendall(b'{"Detach": false, "Tty": false}')
    # (the body was not announced: the daemon starts on the empty JSON it got)
    assert demux(read_all(s))[0] == b"x\n"
    s.close()
    status, info, _ = api.call("GET", f"{V}/exec/{eid}/json")
    assert (info["Running"], info["ExitCode"]) == (False, 3)
    status, body, _ = api.call("POST", f"{V}/exec/{eid}/start", {"Detach": True})
    assert status == 409 and "has already run" in body["message"]
    status, body, _ = api.call("GET", f"{V}/exec/nosuch/json")
    assert status == 404 and body["message"] == "No such exec instance: nosuch"
    status, body, _ = api.call("POST", f"{V}/containers/ex/exec", {"Cmd": []})
    assert status == 400
    _, cinfo, _ = api.call("GET", f"{V}/containers/ex/json")
    assert eid in cinfo["ExecIDs"]


def test_events(api, daemon, busybox):
    since = time.time()
    create(api, {"Image": "busybox", "Cmd": ["sh", "-c", "exit 2"], "Labels": {"l": "v"}},
           name="ev")
    api.call("POST", f"{V}/containers/ev/start")
    api.call("POST", f"{V}/containers/ev/wait")
    api.call("POST", f"{V}/containers/ev/rename?name=ev2")
    api.call("DELETE", f"{V}/containers/ev2")
    until = time.time() + 1
    status, raw, _ = api.call("GET", f"{V}/events?since={since:.3f}&until={until:.3f}"
                                     '&filters={"type":["container"]}')
    events = [json.loads(line) for line in raw.splitlines()] if isinstance(raw, bytes) else [raw]
    actions = [e["Action"] for e in events]
    assert actions == ["create", "start", "die", "rename", "destroy"]
    die = events[2]
    assert die["Actor"]["Attributes"] == {"l": "v", "image": "busybox", "name": "ev",
                                          "exitCode": "2"}
    assert events[3]["Actor"]["Attributes"]["oldName"] == "/ev"
    assert all(e["Type"] == "container" and e["status"] == e["Action"] for e in events)


def test_stats_and_top_api(api, busybox):
    create(api, {"Image": "busybox", "Cmd": ["sleep", "100"]}, name="st")
    status, body, _ = api.call("GET", f"{V}/containers/st/top")
    assert status == 409
    api.call("POST", f"{V}/containers/st/start")
    status, stats, _ = api.call("GET", f"{V}/containers/st/stats?stream=0")
    assert status == 200 and stats["name"] == "/st"
    assert stats["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] >= \
        stats["precpu_stats"]["cpu_usage"]["total_usage"]
    assert stats["preread"] < stats["read"] and stats["pids_stats"]["current"] == 1
    assert stats["memory_stats"]["usage"] > 0
    status, one, _ = api.call("GET", f"{V}/containers/st/stats?stream=0&one-shot=1")
    assert one["preread"] == "0001-01-01T00:00:00Z"
    status, top, _ = api.call("GET", f"{V}/containers/st/top?ps_args=-o%20pid,args")
    assert top["Titles"] == ["PID", "COMMAND"] and top["Processes"][0][1] == "sleep 100"
    status, body, _ = api.call("GET", f"{V}/containers/st/top?ps_args=-o%20comm")
    assert status == 400 and "PID" in body["message"]
    api.call("POST", f"{V}/containers/st/kill")


# --- /berth/containers/run: berth's one-request run -------------------------------------

def _run_request(api, body: dict, query: str = "") -> tuple[int, bytes, socket.socket]:
    """POST /berth/containers/run; (status, status line + headers, socket)."""
    s, head = api.hijack(f"/berth/containers/run{query}", upgrade=False,
                         body=json.dumps(body).encode())
    return int(head.split()[1]), head, s


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


def test_one_request_run_streams_output_and_the_status_after_removal(api, busybox):
    status, head, s = _run_request(api, {"Image": "busybox", "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 4"],
                                         "HostConfig": {"AutoRemove": True}}, "?name=one")
    with s:
        assert status == 200 and b"application/vnd.docker.multiplexed-stream" in head
        frames = _frames(read_all(s))
        # The status frame comes once the container is gone (docker's wait "removed").
        assert api.call("GET", f"{V}/containers/json?all=1")[1] == []
    control = [json.loads(p) for k, p in frames if k == 16]
    assert len(control) == 2 and len(control[0]["Id"]) == 64 and control[0]["Warnings"] == []
    assert control[1] == {"StatusCode": 4, "Error": None}
    # (stdout and stderr are separate pipes: their relative order is not kept)
    assert sorted((k, p) for k, p in frames if k in (1, 2)) == [(1, b"out\n"), (2, b"err\n")]
    assert frames[0][0] == 16 and frames[-1][0] == 16


def test_one_request_run_errors(api, busybox):
    # create's errors, as create answers them: nothing is made
    status, head, s = _run_request(api, {"Image": "nosuch:v2", "Cmd": ["true"]})
    with s:
        assert status == 404 and b"No such image: nosuch:v2" in read_all(s) + head
    for body in ({"Image": "busybox", "Tty": True}, {"Image": "busybox", "OpenStdin": True}):
        status, head, s = _run_request(api, body)
        with s:
            assert status == 400 and b"no tty and no stdin" in read_all(s) + head
    assert api.call("GET", f"{V}/containers/json?all=1")[1] == []
    # a start that fails: docker's start error, and with AutoRemove the container goes
    status, head, s = _run_request(api, {"Image": "busybox", "Cmd": ["nosuchcmd"],
                                         "HostConfig": {"AutoRemove": True}})
    with s:
        assert status == 200
        control = [json.loads(p) for k, p in _frames(read_all(s)) if k == 16]
    assert "executable file not found" in control[-1]["StartError"]
    assert control[-1]["StartStatus"] == 400
    assert api.call("GET", f"{V}/containers/json?all=1")[1] == []


def test_one_request_run_outlives_a_client_that_goes_away(api, busybox):
    status, head, s = _run_request(api, {"Image": "busybox", "Cmd": ["sleep", "100"]}, "?name=gone")
    assert status == 200
    s.close()
    from ctrkit import wait_for
    wait_for(lambda: api.call("GET", f"{V}/containers/gone/json")[1]["State"]["Running"])
    assert api.call("POST", f"{V}/containers/gone/kill")[0] == 204
