"""The flags of `run`/`create` and their translation into the create body: values,
docker's error texts, and the exit codes a user sees (no daemon needed)."""

import pytest

from berth_cli.commands import containeropts as co
from berth_cli.commands.cp import name_rebaser, split_cp_arg, split_dir_entry
from berth_cli.commands.containers import displayable_ports, go_quote
from berth_cli.formatting import natural_key


@pytest.mark.parametrize("text,value", [
    ("512", 512), ("64m", 64 << 20), ("64M", 64 << 20), ("1.5g", int(1.5 * (1 << 30))), ("2KiB", 2048),
    ("10kb", 10240), ("5B", 5), ("1 g", 1 << 30), ("1e3", 1000),
])
def test_ram_in_bytes(text, value):
    assert co.ram_in_bytes(text) == value


@pytest.mark.parametrize("text,message", [
    ("abc", "invalid size: 'abc'"), ("-1", "invalid size: '-1'"), ("3x", "invalid suffix: 'x'"),
    ("3xyzw", "invalid suffix: 'xyzw'"), ("2mc", "invalid suffix: 'mc'"),
])
def test_ram_in_bytes_errors(text, message):
    with pytest.raises(ValueError) as e:
        co.ram_in_bytes(text)
    assert str(e.value) == message


def test_cpus_ulimits_and_attach_values():
    assert co.nano_cpus("1.5") == 1_500_000_000
    assert co.nano_cpus("0.000000001") == 1
    with pytest.raises(ValueError, match="value is too precise"):
        co.nano_cpus("0.0000000001")
    with pytest.raises(ValueError, match="failed to parse x as a rational number"):
        co.nano_cpus("x")
    assert co.parse_ulimit("nofile=100:200") == {"Name": "nofile", "Hard": 200, "Soft": 100}
    assert co.parse_ulimit("nproc=7") == {"Name": "nproc", "Hard": 7, "Soft": 7}
    for bad, message in (("nofile", "invalid ulimit argument: nofile"), ("bogus=1", "invalid ulimit type: bogus"),
                         ("nofile=3:2", "ulimit soft limit must be less than or equal to hard limit: 3 > 2"),
                         ("nofile=a", 'strconv.ParseInt: parsing "a": invalid syntax')):
        with pytest.raises(ValueError) as e:
            co.parse_ulimit(bad)
        assert str(e.value) == message
    assert co.check_attach("STDOUT") == "stdout"
    with pytest.raises(ValueError, match="valid streams are STDIN, STDOUT and STDERR"):
        co.check_attach("stdweird")


def test_mount_flag():
    assert co.parse_mount("type=bind,source=/src,target=/dst,readonly,bind-propagation=rshared") == {
        "Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": True,
        "BindOptions": {"Propagation": "rshared"}}
    assert co.parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}}
    assert co.parse_mount("src=vol,dst=/d,volume-nocopy,volume-label=a=b") == {
        "Type": "volume", "Source": "vol", "Target": "/d",
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}, "DriverConfig": {}}}
    for bad, message in (("type=bind,target=/t,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'bind'"),
                         ("type=bind,src=/x", "target is required"),
                         ("target", "invalid field 'target' must be a key=value pair"),
                         ("target=/t,foo=bar", "unexpected key 'foo' in 'foo=bar'"),
                         ("target=/t,ro=maybe", "invalid value for ro: maybe"),
                         ("type=bind,target=/t,bind-recursive=readonly,ro",
                          "option 'bind-recursive=readonly' requires 'bind-propagation=rprivate'")):
        with pytest.raises(ValueError) as e:
            co.parse_mount(bad)
        assert message in str(e.value)


def test_volume_specs_and_ports():
    assert co.parse_volume_spec("/anon") == {"Source": "", "Target": "/anon", "Type": "volume"}
    assert co.parse_volume_spec("v:/data:ro")["Type"] == "volume"
    assert co.parse_volume_spec("./x:/data")["Type"] == "bind"
    with pytest.raises(co.ParseError, match="empty section between colons"):
        co.parse_volume_spec("a::b")
    with pytest.raises(co.ParseError, match="too many colons"):
        co.parse_volume_spec("a:b:c:d")
    exposed, bindings = co.parse_port_specs(["8080:80", "127.0.0.1:53:53/udp", "9000-9001:90-91", "7000"])
    assert exposed == {"80/tcp": {}, "53/udp": {}, "90/tcp": {}, "91/tcp": {}, "7000/tcp": {}}
    assert bindings["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert bindings["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    assert bindings["91/tcp"] == [{"HostIp": "", "HostPort": "9001"}]
    assert bindings["7000/tcp"] == [{"HostIp": "", "HostPort": ""}]
    for bad, message in (("80/icmp", "invalid proto: icmp"), ("x:80", "invalid hostPort: x"),
                         ("1-3:4-5", "invalid ranges specified for container and host Ports: 4-5 and 1-3"),
                         ("999.1.1.1:1:1", "invalid IP address: 999.1.1.1")):
        with pytest.raises(co.ParseError) as e:
            co.parse_port_specs([bad])
        assert e.value.message == message


def test_env_and_label_files(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_bytes(b"\xef\xbb\xbfA=1\n# comment\n  B = x\nHOME\nMISSING\n")
    with pytest.raises(co.ParseError, match="variable 'B ' contains whitespaces"):
        co.read_kv_file(str(env_file), {"HOME": "/root"}.get)
    env_file.write_bytes(b"\xef\xbb\xbfA=1\n# comment\n  B=x y\nHOME\nMISSING\n")
    assert co.read_kv_file(str(env_file), {"HOME": "/root"}.get) == ["A=1", "B=x y", "HOME=/root"]
    assert co.read_kv_file(str(env_file)) == ["A=1", "B=x y"]
    with pytest.raises(co.ParseError, match="no such file or directory"):
        co.read_kv_file(str(tmp_path / "nope"))


def test_create_body_shape(berth, engine):
    """The create body has the docker CLI's layout, for a few flags' worth of it."""
    from fakeengine import Reply
    engine.route("POST", "/containers/create", Reply(404, {"message": "No such image: busybox:latest"}))
    r = berth("create", "--pull", "never", "--name", "web", "-e", "A=1", "-e", "HOME", "-e", "NOPE",
              "-w", "/w", "-u", "1:2", "--entrypoint", "sh", "-v", "/anon", "-v", "/h:/c:ro", "-m", "64m",
              "--restart", "on-failure:2", "--init", "-l", "k=v", "busybox", "-c", "true",
              env={"HOME": "/home/u"})
    assert (r.code, r.err) == (1, "Error response from daemon: No such image: busybox:latest\n")
    req = engine.last("POST", "/containers/create")
    assert req.param("name") == "web" and req.headers["content-type"] == "application/json"
    body = req.json()
    assert list(body)[:8] == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                              "Tty", "OpenStdin"]
    assert body["Env"] == ["A=1", "HOME=/home/u", "NOPE"]
    assert (body["Cmd"], body["Entrypoint"], body["WorkingDir"], body["User"]) == (["-c", "true"], ["sh"], "/w", "1:2")
    assert body["Volumes"] == {"/anon": {}} and body["Labels"] == {"k": "v"}
    host = body["HostConfig"]
    assert host["Binds"] == ["/h:/c:ro"] and host["Memory"] == 64 << 20 and host["Init"] is True
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert body["NetworkingConfig"]["EndpointsConfig"]["default"]["IPAMConfig"] is None


def test_entrypoint_reset_and_network_none(berth, engine):
    from fakeengine import Reply
    engine.route("POST", "/containers/create", Reply(201, {"Id": "c" * 64, "Warnings": ["low memory"]}))
    r = berth("create", "--entrypoint=", "--network", "none", "busybox")
    assert (r.code, r.out, r.err) == (0, "c" * 64 + "\n", "WARNING: low memory\n")
    body = engine.last("POST", "/containers/create").json()
    assert body["Entrypoint"] == [""] and body["Cmd"] is None
    assert body["HostConfig"]["NetworkMode"] == "none"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {}}


@pytest.mark.parametrize("argv,message", [
    (["--restart", "always", "--rm"], "conflicting options: cannot specify both --restart and --rm"),
    (["--restart", ":3"], "invalid restart policy format: no policy provided before colon"),
    (["--restart", "on-failure:x"], "invalid restart policy format: maximum retry count must be an integer"),
    (["--memory-swappiness", "101"], "invalid value: 101. Valid memory swappiness range is 0-100"),
    (["--pid", "nope"], "--pid: invalid PID mode"),
    (["--security-opt", "seccomp"], 'invalid --security-opt: "seccomp"'),
    (["--no-healthcheck", "--health-cmd", "x"], "--no-healthcheck conflicts with --health-* options"),
    (["--expose", "1:2"], "invalid port format for --expose: 1:2"),
    (["--pull", "sometimes"], "invalid pull option: 'sometimes': must be one of \"always\", \"missing\" or \"never\""),
])
def test_parse_errors_exit_125_with_help(berth, engine, argv, message):
    r = berth("run", *argv, "busybox")
    assert r.code == 125
    assert r.err == f"berth: {message}\n\nRun 'berth run --help' for more information\n"
    assert engine.requests == []  # nothing was created


def test_bad_flag_values_exit_125_with_usage(berth, engine):
    r = berth("run", "-m", "lots", "busybox")
    assert r.code == 125
    assert r.err == ("invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'\n\n"
                     "Usage:  berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
                     "Run 'berth run --help' for more information\n")
    r = berth("run", "--no-such-flag", "busybox")
    assert (r.code, r.err.splitlines()[0]) == (125, "unknown flag: --no-such-flag")
    r = berth("run")
    assert (r.code, r.err.splitlines()[0]) == (1, "berth: 'berth run' requires at least 1 argument")
    r = berth("run", "-e", "=x", "busybox")
    assert r.err.startswith('invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x')
    assert engine.requests == []


def test_flags_after_the_image_belong_to_the_command(berth, engine):
    from fakeengine import Reply
    engine.route("POST", "/containers/create", Reply(201, {"Id": "c" * 64}))
    assert berth("create", "busybox", "ls", "-la", "--rm").code == 0
    body = engine.last("POST", "/containers/create").json()
    assert body["Cmd"] == ["ls", "-la", "--rm"] and body["HostConfig"]["AutoRemove"] is False


def test_small_helpers():
    assert go_quote('sh -c "echo\tx"\x1b') == '"sh -c \\"echo\\tx\\"\\x1b"'
    assert displayable_ports([
        {"PrivatePort": 80, "Type": "tcp"}, {"PrivatePort": 81, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 53, "PublicPort": 53, "Type": "udp"},
    ]) == "[::]:53->53/udp, 80-81/tcp, 0.0.0.0:8443->443/tcp"
    assert sorted(["a10", "a9", "a1b", "b"], key=natural_key) == ["a1b", "a9", "a10", "b"]
    assert split_cp_arg("ctr:/etc") == ("ctr", "/etc")
    assert split_cp_arg("/abs:colon") == ("", "/abs:colon")
    assert split_cp_arg("./rel:colon") == ("", "./rel:colon")
    assert split_cp_arg("file") == ("", "file")
    assert split_dir_entry("/a/b/") == ("/a", "b") and split_dir_entry("/a/b/.") == ("/a/b", ".")
    rebase = name_rebaser("dir", "new")
    assert [rebase(n) for n in ("dir", "dir/x", "./dir/y/z", "other")] == ["new", "new/x", "new/y/z", "other"]
    contents = name_rebaser("", "new")
    assert [contents(n) for n in (".", "./x", "x/y")] == ["new", "new/x", "new/x/y"]
