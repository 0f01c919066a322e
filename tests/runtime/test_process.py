"""The container process as a user sees it from inside: exit codes, Docker's exec
errors, env/cwd/hostname/user, capabilities, fds, namespaces, rlimits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from berth import runtime as rt
from berth.errors import InvalidArgument

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_recorded(boxes, code):
    r = boxes.run(["sh", "-c", f"exit {code}"])
    assert r.code == code
    assert r.exit["signal"] is None and r.exit["oomKilled"] is False
    on_disk = json.loads((r.bundle / "exit.json").read_text())
    assert on_disk == r.exit
    assert on_disk["finishedAt"].endswith("Z") and on_disk["startedAt"] <= on_disk["finishedAt"]
    assert rt.state(r.bundle)["status"] == "exited"


def test_missing_command_is_127_with_dockers_message(boxes):
    bundle = boxes.create(["surely-not-here", "arg"])
    with pytest.raises(rt.StartError) as ei:
        rt.start(bundle)
    assert ei.value.exit_code == 127
    assert ei.value.message == 'exec: "surely-not-here": executable file not found in $PATH'
    assert ei.value.status == 400
    exit_ = rt.wait_exit_sync(bundle, timeout=30)
    assert exit_["exitCode"] == 127
    assert "executable file not found" in exit_["error"]


def test_missing_path_is_127(boxes):
    bundle = boxes.create(["/nope/cmd"])
    with pytest.raises(rt.StartError) as ei:
        rt.start(bundle)
    assert ei.value.exit_code == 127
    assert ei.value.message == 'exec: "/nope/cmd": stat /nope/cmd: no such file or directory'


@pytest.mark.parametrize("path,text", [("/etc/passwd", "permission denied"), ("/etc", "is a directory")])
def test_not_executable_is_126(boxes, path, text):
    bundle = boxes.create([path])
    with pytest.raises(rt.StartError) as ei:
        rt.start(bundle)
    assert ei.value.exit_code == 126
    assert ei.value.message == f'exec: "{path}": {text}'
    assert rt.wait_exit_sync(bundle, timeout=30)["exitCode"] == 126


def test_env_cwd_hostname_and_pid_namespace(boxes):
    r = boxes.run(["sh", "-c", 'echo "$GREETING"; pwd; hostname; echo $$; cat /etc/hostname 2>/dev/null; echo "$HOME"'],
                  process={"env": ["PATH=/bin:/usr/bin", "GREETING=hello there"], "cwd": "/work/dir"},
                  hostname="my-host")
    lines = r.out.splitlines()
    assert lines[0] == "hello there"
    assert lines[1] == "/work/dir"          # created because it was missing
    assert lines[2] == "my-host"
    assert lines[3] == "1"                  # the init of its own pid namespace
    assert lines[-1] == "/root"             # HOME from /etc/passwd for uid 0
    assert r.code == 0


def test_user_from_numbers(boxes):
    r = boxes.run(["sh", "-c", "cat /proc/self/status; touch /tmp/f && stat -c %u:%g /tmp/f; pwd"],
                  process={"user": {"uid": 1000, "gid": 1001, "additionalGids": [10, 29]}, "cwd": "/home/app"})
    st = r.out
    assert status_field(st, "Uid").split() == ["1000"] * 4
    assert status_field(st, "Gid").split() == ["1001"] * 4
    assert sorted(status_field(st, "Groups").split()) == ["10", "29"]
    # A non-root user keeps no capabilities after exec (Docker: no ambient set).
    assert status_field(st, "CapEff") == "0000000000000000"
    assert "1000:1001" in st
    assert st.splitlines()[-1] == "/home/app"


def test_user_by_name_resolved_in_the_image(boxes):
    r = boxes.run(["sh", "-c", "id -u; id -g; id -G; echo $HOME"], process={"user": {"name": "daemon"}})
    assert r.out.split() == ["1", "1", "1", "/usr/sbin"]
    r = boxes.run(["id"], process={"user": {"name": "root"}})
    # root is listed in wheel (10) in the image's /etc/group.
    assert "10(wheel)" in r.out


def test_group_add_by_name_and_number(boxes):
    r = boxes.run(["sh", "-c", "id -G"], process={"user": {"uid": 1, "gid": 1, "additionalGroups": ["wheel", "4000"]}})
    assert sorted(r.out.split()) == ["1", "10", "4000"]
    bundle, spec = boxes.spec(["id"], process={"user": {"additionalGroups": ["nosuchgroup"]}})
    rt.write_spec(bundle, spec)
    with pytest.raises(Exception, match="unable to find group nosuchgroup"):
        rt.spawn_monitor(bundle)


def test_unknown_user_fails_the_create(boxes):
    bundle, spec = boxes.spec(["id"], process={"user": {"name": "ghost"}})
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument) as ei:
        rt.spawn_monitor(bundle)
    assert ei.value.message == "unable to find user ghost: no matching entries in passwd file"
    assert not (bundle / "monitor.sock").exists()


def test_default_capabilities_are_dockers(boxes):
    r = boxes.run(["cat", "/proc/self/status"])
    assert status_field(r.out, "CapEff") == "00000000a80425fb"
    assert status_field(r.out, "CapPrm") == "00000000a80425fb"
    assert status_field(r.out, "CapBnd") == "00000000a80425fb"
    assert status_field(r.out, "CapInh") == "0000000000000000"
    assert status_field(r.out, "CapAmb") == "0000000000000000"
    assert status_field(r.out, "NoNewPrivs") == "0"


def test_cap_add_drop_and_no_new_privileges(boxes):
    caps = rt.capabilities(cap_add=["NET_ADMIN"], cap_drop=["CHOWN", "MKNOD"])
    r = boxes.run(["sh", "-c", "cat /proc/self/status; chown 1 /tmp; echo chown=$?"],
                  process={"capabilities": caps, "noNewPrivileges": True})
    eff = int(status_field(r.out, "CapEff"), 16)
    assert eff & (1 << 12)                  # CAP_NET_ADMIN added
    assert not eff & (1 << 0)               # CAP_CHOWN dropped
    assert not eff & (1 << 27)              # CAP_MKNOD dropped
    assert status_field(r.out, "NoNewPrivs") == "1"
    assert "chown=1" in r.out


def test_only_stdio_fds_reach_the_container(boxes):
    # The shell's own fds, listed while it waits for ls: nothing of the host
    # (monitor sockets, sync pipes, directories) may be among them.
    r = boxes.run(["sh", "-c", "ls -l /proc/$$/fd; true"])
    fds = dict(line.split()[-3::2] for line in r.out.splitlines() if "->" in line)
    assert sorted(fds) == ["0", "1", "2"]
    assert fds["0"] == "/dev/null"
    assert fds["1"].startswith("pipe:") and fds["2"].startswith("pipe:")


def test_cwd_is_inside_the_container(boxes):
    r = boxes.run(["sh", "-c", "readlink /proc/self/cwd; readlink /proc/1/root; ls /proc/1/cwd/.. >/dev/null && echo ok"],
                  process={"cwd": "/tmp"})
    assert r.out.splitlines() == ["/tmp", "/", "ok"]


def test_rlimits_are_applied(boxes):
    r = boxes.run(["sh", "-c", "ulimit -n; ulimit -Hn"],
                  process={"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]})
    assert r.out.split() == ["1024", "2048"]


def test_rlimit_above_our_hard_limit_is_lowered_not_fatal(boxes):
    # What this machine allows: the full request with CAP_SYS_RESOURCE, else our
    # own hard limit (the runtime lowers the request to it instead of failing).
    probe = subprocess.run([sys.executable, "-c", PROBE_NOFILE], capture_output=True, text=True, check=True)
    expected = int(probe.stdout)
    r = boxes.run(["sh", "-c", "ulimit -Hn; ulimit -n"],
                  process={"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}]})
    assert r.out.split() == [str(expected), str(expected)]


PROBE_NOFILE = """
import resource
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1048576, 1048576))
except (ValueError, OSError):
    pass
print(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
"""


def test_network_none_has_only_loopback_up(boxes):
    r = boxes.run(["sh", "-c", "ls /sys/class/net; ip -o link show lo"])
    names, lo = r.out.splitlines()[:-1], r.out.splitlines()[-1]
    assert names == ["lo"]
    assert ",UP" in lo or "<LOOPBACK,UP" in lo


def test_bad_specs_are_refused_before_anything_runs(boxes, workdir):
    bundle, spec = boxes.spec([])
    with pytest.raises(InvalidArgument, match="no command"):
        rt.write_spec(bundle, spec)
    assert not (bundle / "spec.json").exists()
    bundle, spec = boxes.spec(["true"], namespaces={"net": "bridge"})
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument, match="invalid namespace mode"):
        rt.spawn_monitor(bundle)
    assert not (bundle / "monitor.sock").exists()


def test_joining_another_containers_namespaces(boxes):
    first = boxes.create(["sleep", "1000"])
    rt.start(first)
    pid = rt.state(first)["pid"]
    r = boxes.run(["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname"],
                  namespaces={"net": f"/proc/{pid}/ns/net", "ipc": f"/proc/{pid}/ns/ipc"},
                  hostname="second")
    net, ipc, uts, hostname = r.out.split()
    assert net == os.readlink(f"/proc/{pid}/ns/net")
    assert ipc == os.readlink(f"/proc/{pid}/ns/ipc")
    assert uts != os.readlink(f"/proc/{pid}/ns/uts") and hostname == "second"


def test_host_pid_namespace(boxes):
    r = boxes.run(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"], namespaces={"pid": "host"})
    pid, count = r.out.split()
    assert int(pid) != 1 and int(pid) == r.exit["pid"]
    assert int(count) > 5                   # the host's processes are visible


def test_a_leaked_fd_of_the_invoker_does_not_reach_the_container(boxes, workdir):
    bundle, spec = boxes.spec(["sh", "-c", "ls /proc/$$/fd; true"])
    rt.write_spec(bundle, spec)
    leak = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)   # inheritable, as a careless daemon might
    try:
        import subprocess
        proc = subprocess.run([rt.monitor_binary(), str(bundle)], pass_fds=(leak,), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        mpid = json.loads(proc.stdout)["monitorPid"]
        assert str(leak) not in os.listdir(f"/proc/{mpid}/fd")
        with rt.attach(bundle) as a:
            rt.start(bundle)
            out, _, _ = a.collect()
        assert out.split() == [b"0", b"1", b"2"]
    finally:
        os.close(leak)


def test_devices_sysctl_and_oom_score_adj(boxes):
    r = boxes.run(["sh", "-c", "ls -ln /dev/extra/mynull; echo x > /dev/extra/mynull && echo wrote; "
                               "cat /proc/sys/net/core/somaxconn; cat /proc/self/oom_score_adj"],
                  devices=[{"path": "/dev/extra/mynull", "type": "c", "major": 1, "minor": 3,
                            "fileMode": 0o620, "uid": 0, "gid": 5}],
                  sysctl={"net.core.somaxconn": "511"},
                  process={"oomScoreAdj": 500})
    lines = r.out.splitlines()
    assert lines[0].startswith("crw--w----") and " 0 " in lines[0] and " 5 " in lines[0] and "1,   3" in lines[0]
    assert lines[1:] == ["wrote", "511", "500"]


@pytest.mark.parametrize("top,needle", [
    ({"devices": [{"path": "/etc/evil", "type": "c", "major": 1, "minor": 3}]}, "must be under /dev"),
    ({"devices": [{"path": "/dev/x", "type": "p", "major": 1, "minor": 3}]}, "type must be"),
    ({"sysctl": {"../../etc": "1"}}, "invalid sysctl"),
    ({"process": {"oomScoreAdj": 5000}}, "outside -1000..1000"),
])
def test_bad_devices_sysctls_and_oom_scores(boxes, top, needle):
    bundle, spec = boxes.spec(["true"], **top)
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument, match=needle):
        rt.spawn_monitor(bundle)


def test_dockers_default_seccomp_profile(boxes):
    profile = rt.seccomp_profile(rt.DEFAULT_CAPABILITIES)
    assert "keyctl" in profile["deny"] and "mount" in profile["deny"] and "ptrace" not in profile["deny"]
    bundle = boxes.create(["sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true; echo userns=$?; "
                                       "unshare -n true; echo netns=$?; exec sleep 1000"],
                          seccomp=profile)
    with rt.attach(bundle) as a:
        rt.start(bundle)
        out = b""
        while out.count(b"\n") < 3:
            kind, data = a.read()
            out += data if kind == "stdout" else b""
    assert out.decode().split() == ["Seccomp:", "2", "userns=1", "netns=1"]
    # An exec gets the container's filter too.
    ex = bundle / "execs" / "sc"
    rt.exec_create(bundle, ex, {"args": ["sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true; echo $?"]})
    with rt.attach(ex) as a:
        rt.start(ex)
        assert a.collect()[0].decode().split() == ["Seccomp:", "2", "1"]


def test_privileged_style_capabilities_lift_the_profile(boxes):
    profile = rt.seccomp_profile(rt.ALL_CAPABILITIES)
    assert profile["denyNewUserNamespaces"] is False and "mount" not in profile["deny"]
    r = boxes.run(["sh", "-c", "unshare -n true; echo netns=$?; grep CapEff /proc/self/status"], seccomp=profile,
                  process={"capabilities": rt.ALL_CAPABILITIES})
    assert r.out.splitlines()[0] == "netns=0"
    # Every capability the engine itself holds (a sandbox may withhold some).
    ours = status_field(open("/proc/self/status").read(), "CapPrm")
    assert status_field(r.out, "CapEff") == ours


def test_unknown_syscall_in_a_profile_is_refused(boxes):
    bundle, spec = boxes.spec(["true"], seccomp={"deny": ["teleport"]})
    rt.write_spec(bundle, spec)
    with pytest.raises(InvalidArgument, match='unknown or unsupported system call "teleport"'):
        rt.spawn_monitor(bundle)
