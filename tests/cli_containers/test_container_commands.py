"""ps, inspect, logs, stop/kill/rm/wait, top, port, diff, update, rename, prune,
stats and the volume commands against the scripted engine: the requests made and
docker's exact output for known answers (clock fixed at 2024-01-02T03:04:05Z)."""

import json

import pytest
from fakeengine import NOW, Reply, Streamed, frame

CID = "4d3f" + "a" * 60
CID2 = "77bb" + "b" * 60

CONTAINERS = [
    {"Id": CID, "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:" + "e" * 64,
     "Command": "sh -c 'while true; do sleep 1; done'", "Created": NOW - 120, "State": "running",
     "Status": "Up 2 minutes", "Ports": [{"PrivatePort": 80, "Type": "tcp"},
                                          {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
     "Labels": {"tier": "front", "app": "shop"}, "SizeRw": 12, "SizeRootFs": 4264012,
     "Mounts": [{"Type": "volume", "Name": "data", "Driver": "local", "Source": "/v/data/_data"}],
     "NetworkSettings": {"Networks": {"bridge": {}}}},
    {"Id": CID2, "Names": ["/db"], "Image": "sha256:" + "f" * 64, "ImageID": "sha256:" + "f" * 64,
     "Command": "true", "Created": NOW - 3 * 86400, "State": "exited", "Status": "Exited (0) 2 days ago",
     "Ports": [], "Labels": {}, "Mounts": [], "NetworkSettings": {"Networks": {}}},
]


@pytest.fixture
def listed(engine):
    engine.route("GET", "/containers/json", Reply(json_body=CONTAINERS))
    return engine


def test_ps_default_table(berth, listed):
    r = berth("ps", "-a")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "CONTAINER ID   IMAGE          COMMAND                  CREATED         STATUS                  "
        "PORTS                          NAMES\n"
        "4d3faaaaaaaa   busybox        \"sh -c 'while true; …\"   2 minutes ago   Up 2 minutes            "
        "80/tcp, 0.0.0.0:8080->80/tcp   web\n"
        "77bbbbbbbbbb   ffffffffffff   \"true\"                   3 days ago      Exited (0) 2 days ago   "
        "                               db\n")
    req = listed.last("GET", "/containers/json")
    assert req.query == {"all": ["1"]}


def test_ps_quiet_size_no_trunc_last_and_filters(berth, listed):
    assert berth("ps", "-q").out == "4d3faaaaaaaa\n77bbbbbbbbbb\n"
    assert listed.last("GET", "/containers/json").query == {}
    assert berth("container", "ls", "-aq", "--no-trunc").out == f"{CID}\n{CID2}\n"
    lines = berth("ps", "-s").out.splitlines()
    assert lines[0].endswith("NAMES     SIZE")
    assert lines[1].endswith("web       12B (virtual 4.26MB)")
    assert listed.last("GET", "/containers/json").param("size") == "1"
    berth("ps", "-n", "3", "-f", "status=exited", "--filter", "label=a=b")
    req = listed.last("GET", "/containers/json")
    assert req.param("limit") == "3"
    assert json.loads(req.param("filters")) == {"status": {"exited": True}, "label": {"a=b": True}}
    berth("ps", "-l")
    assert listed.last("GET", "/containers/json").param("limit") == "1"


def test_ps_formats(berth, listed):
    r = berth("ps", "--format", "{{.Names}} {{.Label \"app\"}} {{.Labels}} {{.Mounts}} {{.Networks}} "
                                "{{.LocalVolumes}} {{.State}}")
    assert r.out == "web shop app=shop,tier=front data bridge 1 running\ndb     0 exited\n"
    assert listed.last("GET", "/containers/json").param("size") is None
    r = berth("ps", "--format", "table {{.ID}}\t{{.Size}}")
    assert r.out == "CONTAINER ID   SIZE\n4d3faaaaaaaa   12B (virtual 4.26MB)\n77bbbbbbbbbb   0B\n"
    assert listed.last("GET", "/containers/json").param("size") == "1"  # .Size asks for sizes
    row = json.loads(berth("ps", "--format", "json").out.splitlines()[0])
    assert sorted(row) == ["Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names",
                           "Networks", "Ports", "RunningFor", "Size", "State", "Status"]
    assert (row["CreatedAt"], row["RunningFor"]) == ("2024-01-02 03:02:05 +0000 UTC", "2 minutes ago")
    r = berth("ps", "-q", "--format", "{{.Names}}")
    assert r.err == "WARNING: Ignoring custom format, because both --format and --quiet are set.\n"
    assert r.out == "4d3faaaaaaaa\n77bbbbbbbbbb\n"
    r = berth("ps", "--format", "{{.Nope}}")
    assert r.code == 1 and r.err.startswith("failed to execute template: template: :1:2: executing")
    assert "can't evaluate field Nope" in r.err


def test_inspect_containers_and_any_object(berth, engine):
    engine.route("GET", "/containers/web/json", lambda r: Reply(json_body={
        "Id": CID, "Name": "/web", "State": {"Status": "running", "ExitCode": 0},
        "SizeRw": 1 if r.param("size") else None}))
    engine.route("GET", "/volumes/data", Reply(json_body={"Name": "data", "Driver": "local"}))
    r = berth("container", "inspect", "-f", "{{.Name}} {{.State.Status}}", "web")
    assert (r.code, r.out) == (0, "/web running\n")
    assert json.loads(berth("inspect", "-s", "web").out)[0]["SizeRw"] == 1
    r = berth("inspect", "--format", "{{.Driver}}", "data")  # not a container: the volume is found
    assert r.out == "local\n"
    r = berth("inspect", "--type", "volume", "-f", "{{.Name}}", "data")
    assert r.out == "data\n"
    engine.route("GET", "/containers/nosuch/json", Reply(404, {"message": "No such container: nosuch"}))
    r = berth("container", "inspect", "web", "nosuch")
    assert r.code == 1 and r.err == "Error response from daemon: No such container: nosuch\n"
    assert json.loads(r.out)[0]["Id"] == CID


def test_logs_split_streams_and_options(berth, engine):
    engine.route("GET", "/containers/web/json", Reply(json_body={"Id": CID, "Config": {"Tty": False}}))
    engine.route("GET", f"/containers/{CID}/logs", Streamed(lambda: iter([
        frame(1, b"out 1\n") + frame(2, b"err 1\n")[:5], frame(2, b"err 1\n")[5:] + frame(1, b"out 2\n")]),
        content_type="application/vnd.docker.multiplexed-stream"))
    r = berth("logs", "-f", "-t", "--tail", "2", "--since", "1h", "--until", "2024-01-02T03:00:00Z", "web")
    assert (r.code, r.out, r.err) == (0, "out 1\nout 2\n", "err 1\n")
    req = engine.last("GET", f"/containers/{CID}/logs")
    assert {k: v[0] for k, v in req.query.items()} == {
        "stdout": "1", "stderr": "1", "since": str(NOW - 3600), "until": "1704164400.000000000",
        "timestamps": "1", "follow": "1", "tail": "2"}
    engine.route("GET", "/containers/web/json", Reply(json_body={"Id": CID, "Config": {"Tty": True}}))
    engine.route("GET", f"/containers/{CID}/logs", Reply(body=b"raw tty\r\n"))
    assert berth("logs", "web").out_bytes == b"raw tty\r\n"
    assert engine.last("GET", f"/containers/{CID}/logs").param("tail") == "all"
    r = berth("logs", "nosuch")
    assert (r.code, r.err) == (1, "Error response from daemon: page not found: /containers/nosuch/json\n")


def test_stop_kill_restart_pause_print_names_and_join_errors(berth, engine):
    for action in ("stop", "kill", "restart", "pause", "unpause"):
        engine.route("POST", f"/containers/a/{action}", Reply(204))
        engine.route("POST", f"/containers/b/{action}", Reply(404, {"message": "No such container: b"}))
        engine.route("POST", f"/containers/c/{action}", Reply(204))
        r = berth(action, "a", "b", "c")
        assert (r.code, r.out, r.err) == (1, "a\nc\n", "Error response from daemon: No such container: b\n")
    berth("stop", "-t", "3", "-s", "SIGINT", "a")
    assert {k: v[0] for k, v in engine.last("POST", "/containers/a/stop").query.items()} == {"signal": "SIGINT", "t": "3"}
    berth("stop", "a")
    assert engine.last("POST", "/containers/a/stop").query == {}
    berth("kill", "-s", "HUP", "a")
    assert engine.last("POST", "/containers/a/kill").param("signal") == "HUP"
    r = berth("stop", "--time", "1", "-t", "2", "a")
    assert (r.code, r.err) == (1, "conflicting options: cannot specify both --timeout and --time\n")


def test_rm(berth, engine):
    engine.route("DELETE", "/containers/a", Reply(204))
    engine.route("DELETE", "/containers/gone", Reply(404, {"message": "No such container: gone"}))
    engine.route("DELETE", "/containers/up", Reply(409, {
        "message": "cannot remove container \"/up\": container is running: stop the container before "
                   "removing or force remove"}))
    r = berth("rm", "a", "gone", "up")
    assert (r.code, r.out) == (1, "a\n")
    assert r.err == ("Error response from daemon: No such container: gone\nError response from daemon: cannot "
                     "remove container \"/up\": container is running: stop the container before removing or "
                     "force remove\n")
    r = berth("rm", "-fv", "a", "gone")
    assert (r.code, r.out, r.err) == (0, "a\n", "Error response from daemon: No such container: gone\n")
    assert {k: v[0] for k, v in engine.last("DELETE", "/containers/a").query.items()} == {"v": "1", "force": "1"}
    assert berth("rm", "/").err == "container name cannot be empty\n"


def test_wait_top_port_diff_rename(berth, engine):
    engine.route("POST", "/containers/a/wait", Reply(json_body={"StatusCode": 3, "Error": None}))
    engine.route("POST", "/containers/b/wait", Reply(json_body={"StatusCode": 0}))
    r = berth("wait", "a", "b", "nosuch")
    assert (r.code, r.out) == (1, "3\n0\n")
    assert r.err == "Error response from daemon: page not found: /containers/nosuch/wait\n"
    engine.route("GET", "/containers/a/top", Reply(json_body={
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": [["root", "4242", "4200", "0", "03:04", "?", "00:00:00", "sleep 100"]]}))
    r = berth("top", "a", "-o", "pid")
    assert r.out == ("UID                 PID                 PPID                C                   "
                     "STIME               TTY                 TIME                CMD\n"
                     "root                4242                4200                0                   "
                     "03:04               ?                   00:00:00            sleep 100\n")
    assert engine.last("GET", "/containers/a/top").param("ps_args") == "-o pid"
    engine.route("GET", "/containers/a/json", Reply(json_body={"NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}], "9/tcp": None}}}))
    assert berth("port", "a").out == ("53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n"
                                      "80/tcp -> [::]:8080\n")
    assert berth("port", "a", "80").out == "0.0.0.0:8080\n[::]:8080\n"
    r = berth("port", "a", "9")
    assert (r.code, r.err) == (1, "Error: No public port '9' published for a\n")
    engine.route("GET", "/containers/a/changes", Reply(json_body=[
        {"Kind": 0, "Path": "/etc"}, {"Kind": 1, "Path": "/etc/new"}, {"Kind": 2, "Path": "/old"}]))
    assert berth("diff", "a").out == "C /etc\nA /etc/new\nD /old\n"
    engine.route("POST", "/containers/a/rename", Reply(409, {"message": "name x is in use"}))
    r = berth("rename", "a", "x")
    assert (r.code, r.err) == (1, "Error response from daemon: name x is in use\n"
                                  "Error: failed to rename container named a\n")
    assert engine.last("POST", "/containers/a/rename").param("name") == "x"
    assert berth("rename", "a", " ").err == "Error: Neither old nor new names may be empty\n"


def test_update_body_and_messages(berth, engine):
    engine.route("POST", "/containers/a/update", Reply(json_body={"Warnings": ["swap limit ignored"]}))
    r = berth("update", "-m", "64m", "--cpus", "0.5", "--pids-limit", "10", "--restart", "on-failure:2", "a")
    assert (r.code, r.out) == (0, "a\nswap limit ignored\n")
    body = engine.last("POST", "/containers/a/update").json()
    assert (body["Memory"], body["NanoCpus"], body["PidsLimit"]) == (64 << 20, 500_000_000, 10)
    assert body["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    berth("update", "--restart", "always", "a")
    body = engine.last("POST", "/containers/a/update").json()
    assert (body["Memory"], body["PidsLimit"], body["RestartPolicy"]["Name"]) == (0, None, "always")
    r = berth("update", "a")
    assert (r.code, r.err) == (1, "you must provide one or more flags when using this command\n")


def test_commit_and_export(berth, engine, workdir):
    engine.route("POST", "/commit", Reply(201, {"Id": "sha256:" + "9" * 64}))
    r = berth("commit", "-a", "me", "-m", "msg", "-c", "CMD [\"x\"]", "web", "repo:tag")
    assert r.out == "sha256:" + "9" * 64 + "\n"
    q = {k: v[0] for k, v in engine.last("POST", "/commit").query.items()}
    assert q == {"container": "web", "repo": "docker.io/library/repo", "tag": "tag", "comment": "msg",
                 "author": "me", "changes": 'CMD ["x"]'}
    berth("commit", "--pause=false", "web")
    assert engine.last("POST", "/commit").param("pause") == "0"
    engine.route("GET", "/containers/web/export", Reply(body=b"tar bytes", content_type="application/x-tar"))
    assert berth("export", "web").out_bytes == b"tar bytes"
    assert berth("export", "-o", str(workdir / "fs.tar"), "web").code == 0
    assert (workdir / "fs.tar").read_bytes() == b"tar bytes"
    r = berth("export", "web", stdout_tty=True)
    assert (r.code, r.err) == (1, "cowardly refusing to save to a terminal. Use the -o flag or redirect\n")


def test_container_prune_and_system_prune(berth, engine):
    engine.route("POST", "/containers/prune", Reply(json_body={"ContainersDeleted": [CID, CID2],
                                                               "SpaceReclaimed": 2048}))
    r = berth("container", "prune", stdin=b"n\n")
    assert r.out == "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
    assert ("POST", "/containers/prune") not in engine.calls()
    r = berth("container", "prune", "-f", "--filter", "until=1h")
    assert r.out == f"Deleted Containers:\n{CID}\n{CID2}\n\nTotal reclaimed space: 2.048kB\n"
    assert json.loads(engine.last("POST", "/containers/prune").param("filters")) == {"until": {"1h": True}}
    engine.route("POST", "/volumes/prune", Reply(json_body={"VolumesDeleted": ["v1"], "SpaceReclaimed": 1000}))
    engine.route("POST", "/images/prune", Reply(json_body={"ImagesDeleted": None, "SpaceReclaimed": 0}))
    r = berth("system", "prune", "--volumes", stdin=b"y\n")
    assert r.out.startswith("WARNING! This will remove:\n  - all stopped containers\n"
                            "  - all anonymous volumes not used by at least one container\n  - all dangling images\n")
    assert r.out.endswith(f"Deleted Containers:\n{CID}\n{CID2}\n\nDeleted Volumes:\nv1\n\n"
                          "Total reclaimed space: 3.048kB\n")
    assert json.loads(engine.last("POST", "/volumes/prune").param("filters") or "{}") == {}
    r = berth("system", "prune", "--volumes", "-f", "--filter", "until=1h")
    assert (r.code, r.err) == (1, 'ERROR: The "until" filter is not supported with "--volumes"\n')


# -- stats -------------------------------------------------------------------------------------

def _sample(name, cid, cpu, pre_cpu, system, pre_system, usage, inactive, limit):
    return {"name": name, "id": cid,
            "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": pre_cpu}, "system_cpu_usage": pre_system},
            "memory_stats": {"usage": usage, "limit": limit, "stats": {"inactive_file": inactive}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 648}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 4096},
                                                           {"op": "write", "value": 8192}]},
            "pids_stats": {"current": 3}}


def test_stats_no_stream(berth, engine):
    engine.route("GET", "/containers/web/stats", Reply(json_body=_sample(
        "/web", CID, 2_000_000, 1_000_000, 20_000_000, 10_000_000, 3 << 20, 1 << 20, 1 << 30)))
    r = berth("stats", "--no-stream", "web")
    assert (r.code, r.err) == (0, "")
    assert r.out == ("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O        "
                     "BLOCK I/O        PIDS\n"
                     "4d3faaaaaaaa   web       20.00%    2MiB / 1GiB         0.20%     1.5kB / 648B   "
                     "4.1kB / 8.19kB   3\n")
    assert engine.last("GET", "/containers/web/stats").param("stream") == "0"
    r = berth("stats", "--no-stream", "--format", "{{.Container}}: {{.CPUPerc}} {{.MemPerc}}", "web")
    assert r.out == "web: 20.00% 0.20%\n"
    r = berth("stats", "--no-stream", "web", "nosuch")
    assert (r.code, r.err) == (1, "Error response from daemon: page not found: /containers/nosuch/stats\n")


def test_stats_no_stream_lists_running_containers(berth, engine):
    engine.route("GET", "/containers/json", Reply(json_body=[CONTAINERS[0]]))
    engine.route("GET", f"/containers/{CID}/stats", Reply(json_body=_sample(
        "/web", CID, 0, 0, 0, 0, 0, 0, 0)))
    r = berth("stats", "--no-stream", "--format", "table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}")
    assert r.out == "NAME      CPU %     MEM USAGE / LIMIT\nweb       0.00%     0B / 0B\n"


# -- volumes -----------------------------------------------------------------------------------

def test_volume_commands(berth, engine):
    engine.route("POST", "/volumes/create", lambda r: Reply(201, {"Name": r.json()["Name"] or "f" * 64,
                                                                  "Driver": "local"}))
    r = berth("volume", "create", "-d", "local", "-o", "type=tmpfs", "--label", "a=b", "myvol")
    assert (r.code, r.out) == (0, "myvol\n")
    assert engine.last("POST", "/volumes/create").json() == {
        "Driver": "local", "DriverOpts": {"type": "tmpfs"}, "Labels": {"a": "b"}, "Name": "myvol"}
    assert berth("volume", "create").out == "f" * 64 + "\n"
    r = berth("volume", "create", "--name", "x", "y")
    assert r.err == ("conflicting options: cannot specify a volume-name through both --name and as a "
                     "positional arg\n")
    engine.route("GET", "/volumes", Reply(json_body={"Volumes": [
        {"Name": "vol10", "Driver": "local", "Labels": {"k": "v"}, "Scope": "local", "Mountpoint": "/m/10"},
        {"Name": "vol9", "Driver": "local", "Labels": None, "Scope": "local", "Mountpoint": "/m/9"},
        {"Name": "a" * 64, "Driver": "local", "Scope": "local"}], "Warnings": None}))
    assert berth("volume", "ls").out == (f"DRIVER    VOLUME NAME\nlocal     {'a' * 64}\nlocal     vol9\n"
                                         "local     vol10\n")
    assert berth("volume", "ls", "-q").out == f"{'a' * 64}\nvol9\nvol10\n"
    assert berth("volume", "ls", "--format", "{{.Name}} {{.Labels}} {{.Mountpoint}} {{.Links}}").out == (
        "a" * 64 + "   N/A\nvol9  /m/9 N/A\nvol10 k=v /m/10 N/A\n")
    berth("volume", "ls", "-f", "dangling=true")
    assert json.loads(engine.last("GET", "/volumes").param("filters")) == {"dangling": {"true": True}}
    engine.route("GET", "/volumes/vol9", Reply(json_body={"Name": "vol9", "Driver": "local"}))
    engine.route("GET", "/volumes/nosuch", Reply(404, {"message": "get nosuch: no such volume"}))
    r = berth("volume", "inspect", "vol9", "nosuch")
    assert r.code == 1 and r.err == "Error response from daemon: get nosuch: no such volume\n"
    assert json.loads(r.out) == [{"Name": "vol9", "Driver": "local"}]
    engine.route("DELETE", "/volumes/vol9", Reply(204))
    engine.route("DELETE", "/volumes/used", Reply(409, {"message": "remove used: volume is in use - [abc]"}))
    r = berth("volume", "rm", "vol9", "used")
    assert (r.code, r.out, r.err) == (1, "vol9\n", "Error response from daemon: remove used: volume is in use - [abc]\n")
    berth("volume", "rm", "-f", "vol9")
    assert engine.last("DELETE", "/volumes/vol9").param("force") == "1"


def test_volume_prune(berth, engine):
    engine.route("POST", "/volumes/prune", Reply(json_body={"VolumesDeleted": ["v1", "v2"], "SpaceReclaimed": 5}))
    r = berth("volume", "prune", stdin=b"\n")
    assert r.out == ("WARNING! This will remove anonymous local volumes not used by at least one container.\n"
                     "Are you sure you want to continue? [y/N] ")
    r = berth("volume", "prune", "-a", "-f")
    assert r.out == "Deleted Volumes:\nv1\nv2\n\nTotal reclaimed space: 5B\n"
    assert json.loads(engine.last("POST", "/volumes/prune").param("filters")) == {"all": {"true": True}}
    r = berth("volume", "prune", "-a", "-f", "--filter", "all=1")
    assert r.err == "conflicting options: cannot specify both --all and --filter all=1\n"
