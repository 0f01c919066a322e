"""Pure parts of the containers component, without a daemon: the config merge
with the image, environment rules, /etc files, names, log reading, detach keys."""

from __future__ import annotations

import json
import os

import pytest

from berth.api.containers import _EscapeDetector, parse_detach_keys
from berth.containers import config as cfg
from berth.containers import etcfiles, logs, names
from berth.containers.listing import human_duration
from berth.errors import InvalidArgument

IMAGE = {"Env": ["PATH=/bin", "LANG=C"], "Cmd": ["sh"], "Entrypoint": None,
         "WorkingDir": "/srv", "Labels": {"a": "1", "b": "2"}, "User": "daemon",
         "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT", "Volumes": {"/data": {}}}


def test_merge_takes_the_image_defaults():
    merged = cfg.merge_image_config({"Image": "x", "Env": ["LANG=fr"], "Labels": {"b": "3"}},
                                    IMAGE)
    assert merged["Env"] == ["LANG=fr", "PATH=/bin"]
    assert merged["Labels"] == {"a": "1", "b": "3"}
    assert merged["Cmd"] == ["sh"] and merged["WorkingDir"] == "/srv"
    assert merged["User"] == "daemon" and merged["StopSignal"] == "SIGQUIT"
    assert merged["ExposedPorts"] == {"80/tcp": {}} and merged["Volumes"] == {"/data": {}}
    assert cfg.command_of(merged) == ("sh", [])


def test_entrypoint_and_cmd_interplay():
    image = {"Entrypoint": ["/entry"], "Cmd": ["--default"]}
    # A user Cmd replaces the image's Cmd and keeps its entrypoint.
    assert cfg.command_of(cfg.merge_image_config({"Cmd": ["x"]}, image)) == ("/entry", ["x"])
    # A user entrypoint drops the image's Cmd.
    merged = cfg.merge_image_config({"Entrypoint": ["/other"]}, image)
    assert cfg.command_of(merged) == ("/other", [])
    # `--entrypoint ""` resets the entrypoint: only the user's Cmd is left.
    merged = cfg.merge_image_config({"Entrypoint": [""], "Cmd": ["ls"]}, image)
    assert cfg.command_of(merged) == ("ls", [])
    with pytest.raises(InvalidArgument, match="No command specified"):
        cfg.command_of(cfg.merge_image_config({"Entrypoint": [""]}, image))


def test_env_replace_or_append_and_unset():
    base = ["PATH=/usr/bin", "HOSTNAME=h"]
    assert cfg.replace_or_append_env(base, ["PATH=/x", "A=1", "HOSTNAME"]) == ["PATH=/x", "A=1"]
    with pytest.raises(InvalidArgument, match="name is empty"):
        cfg.check_env(["=x"])


def test_host_config_checks():
    ok = {"NetworkMode": "", "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
    cfg.check_host_config(ok, volumes_available=False)
    assert ok["NetworkMode"] == "default" and ok["LogConfig"]["Type"] == "json-file"
    assert ok["ShmSize"] == 64 * 1024 * 1024
    for bad, message in (
        ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 1}}, "only be used"),
        ({"Binds": ["/a:/b"]}, "not supported by this daemon yet"),
        ({"LogConfig": {"Type": "syslog"}}, "logging driver"),
        ({"SecurityOpt": ["apparmor=custom"]}, "invalid --security-opt"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "soft limit"),
        ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type"),
        ({"Tmpfs": {"rel": ""}}, "absolute path"),
        ({"NetworkMode": "none", "PortBindings": {"80/tcp": [{}]}}, "port publishing"),
        ({"Devices": [{"PathOnHost": "/dev/kvm"}]}, "Devices"),
        ({"Memory": 100}, "Minimum memory limit allowed is 6MB"),
        ({"ExtraHosts": ["justname"]}, "HOST:IP"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            cfg.check_host_config(dict(bad), volumes_available=False)
    assert cfg.no_new_privileges({"SecurityOpt": ["no-new-privileges:true"]})
    assert not cfg.no_new_privileges({"SecurityOpt": ["no-new-privileges=false"]})


def test_ulimits_never_exceed_the_daemons_hard_limit():
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    [limit] = cfg.ulimits({"Ulimits": [{"Name": "nofile", "Soft": 2**40, "Hard": 2**40}]})
    assert limit["type"] == "RLIMIT_NOFILE"
    if hard != resource.RLIM_INFINITY:
        assert limit["hard"] == hard and limit["soft"] == hard


def test_inspect_config_keeps_dockers_fields():
    shown = cfg.inspect_config({"Image": "busybox", "Cmd": ["true"]})
    assert list(shown)[:4] == ["Hostname", "Domainname", "User", "AttachStdin"]
    assert "StopSignal" not in shown and shown["Cmd"] == ["true"] and shown["Env"] is None


def test_resolv_conf_drops_loopback_nameservers():
    host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
    assert etcfiles.resolv_conf(host, [], [], [], host_network=False) == \
        "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n"
    only_local = "nameserver 127.0.0.1\nnameserver ::1\n"
    text = etcfiles.resolv_conf(only_local, [], [], [], host_network=False)
    assert "nameserver 8.8.8.8" in text and "127.0.0.1" not in text
    assert "127.0.0.1" in etcfiles.resolv_conf(only_local, [], [], [], host_network=True)
    assert etcfiles.resolv_conf(host, ["1.1.1.1"], ["x.y"], [], False) == \
        "nameserver 1.1.1.1\nsearch x.y\noptions ndots:2\n"


def test_hosts_file():
    text = etcfiles.hosts("h", "", ["db:10.1.1.1"], host_network=False)
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert text.splitlines()[-1] == "10.1.1.1\tdb"


def test_names():
    assert names.normalize("/web-1") == "web-1"
    for bad in ("a", "-x", "a/b", "a b", ""):
        with pytest.raises(InvalidArgument, match=r"Invalid container name"):
            names.normalize(bad)
    taken = set()
    for _ in range(50):
        n = names.generate(taken.__contains__)
        assert n not in taken and names.VALID_NAME.match(n)
        taken.add(n)


def test_log_reading_tail_since_until(tmp_path):
    path = tmp_path / "c-json.log"
    records = [("stdout", "a\n", "2024-01-01T00:00:01Z"), ("stderr", "b\n", "2024-01-01T00:00:02Z"),
               ("stdout", "c\n", "2024-01-01T00:00:03.5Z"), ("stdout", "d", "2024-01-01T00:00:04Z")]
    path.write_text("".join(json.dumps({"log": l, "stream": s, "time": t}) + "\n"
                            for s, l, t in records))
    read = lambda **kw: list(logs.read_all(str(path), logs.LogOptions(**kw)))  # noqa: E731
    assert read() == [(1, b"a\n"), (2, b"b\n"), (1, b"c\n"), (1, b"d")]
    assert read(stderr=False) == [(1, b"a\n"), (1, b"c\n"), (1, b"d")]
    assert read(tail=2) == [(1, b"c\n"), (1, b"d")]
    assert read(tail=0) == []
    second = 1704067200 * 10**9
    assert read(since_ns=second + 2 * 10**9) == [(2, b"b\n"), (1, b"c\n"), (1, b"d")]
    assert read(until_ns=second + 3 * 10**9) == [(1, b"a\n"), (2, b"b\n")]
    assert read(tail=1, timestamps=True) == [(1, b"2024-01-01T00:00:04.000000000Z d")]
    assert logs.frame(2, b"xy") == b"\x02\x00\x00\x00\x00\x00\x00\x02xy"


def test_log_reader_waits_for_a_partial_line(tmp_path):
    path = tmp_path / "c-json.log"
    line = json.dumps({"log": "x\n", "stream": "stdout", "time": "2024-01-01T00:00:00Z"})
    path.write_text(line[:10])
    reader = logs.LogReader(str(path), logs.LogOptions())
    assert reader.read_available() == []
    with open(path, "a") as f:
        f.write(line[10:] + "\n")
    assert reader.read_available() == [(1, b"x\n")]
    reader.close()


def test_detach_keys():
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@") == b"a\x00"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-pq")
    d = _EscapeDetector(b"\x10\x11")
    assert d.feed(b"ab\x10") == (b"ab", False)
    assert d.feed(b"x") == (b"\x10x", False)
    assert d.feed(b"\x10") == (b"", False)
    assert d.feed(b"\x11rest") == (b"", True)


@pytest.mark.parametrize("seconds, text", [
    (0.2, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (600, "10 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_containers_directory_is_the_top_of_unrelated_trees(daemon):
    # Every run makes and deletes a container directory: flagged chattr +T, ext4
    # places each one away from the inodes the last one freed (berth.fsflags).
    import array
    import fcntl
    fd = os.open(daemon.root / "containers", os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, 0x80086601, flags, True)  # FS_IOC_GETFLAGS
    except OSError:
        pytest.skip("the filesystem has no inode flags")
    finally:
        os.close(fd)
    assert flags[0] & 0x00020000, f"FS_TOPDIR_FL not set: {flags[0]:#x}"
