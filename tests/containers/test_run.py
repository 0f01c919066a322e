"""`docker run` through the real docker CLI and docker-py against berthd:
output, exit codes, --rm, ttys, and bad input that must leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from ctrkit import inspect, leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


def test_run_rm_echo_prints_and_leaves_nothing(daemon, busybox):
    proc = daemon.docker("run", "--rm", "busybox", "echo", "hi")
    assert proc.stdout == "hi\n"
    assert daemon.docker("ps", "-aq").stdout == ""
    assert os.listdir(daemon.root / "containers") == []


def test_rm_removes_cgroups_mounts_and_directories(daemon, busybox):
    cid = daemon.docker("run", "-d", "--memory", "64m", "--cpus", "0.5", "busybox",
                        "sleep", "1000").stdout.strip()
    assert len(cid) == 64
    assert leftovers(daemon, cid)  # the running container has its cgroups and directory
    daemon.docker("rm", "-f", cid)
    assert leftovers(daemon, cid) == []
    assert daemon.docker("ps", "-aq").stdout == ""


@pytest.mark.parametrize("command, code", [
    (["sh", "-c", "exit 3"], 3),
    (["true"], 0),
    (["false"], 1),
])
def test_exit_code_is_the_containers(daemon, busybox, command, code):
    proc = daemon.docker("run", "--rm", "busybox", *command, check=False)
    assert proc.returncode == code


def test_missing_command_exits_127(daemon, busybox):
    proc = daemon.docker("run", "--rm", "busybox", "no-such-command", check=False)
    assert proc.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in proc.stderr
    assert daemon.docker("ps", "-aq").stdout == ""  # --rm also after a failed start


def test_non_executable_exits_126(daemon, busybox):
    proc = daemon.docker("run", "--name", "noexec", "busybox", "/etc/passwd", check=False)
    assert proc.returncode == 126
    assert "permission denied" in proc.stderr
    state = inspect(daemon, "noexec")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 126)
    assert "permission denied" in state["Error"]


def test_bad_flag_values_exit_125_and_create_nothing(daemon, busybox):
    # Refused by the CLI itself...
    proc = daemon.docker("run", "--rm", "--memory", "lots", "busybox", "true", check=False)
    assert proc.returncode == 125
    # ...and by the daemon, with Docker's messages.
    for args, message in (
        (["--memory", "1m"], "Minimum memory limit allowed is 6MB"),
        (["--cpus", "1000"], "Range of CPUs is from 0.01"),
        (["--stop-signal", "NOPE"], "invalid signal: NOPE"),
        (["--cap-add", "NOT_A_CAP"], "NOT_A_CAP"),
        (["--ulimit", "nofile=20:10"], "soft limit must be less than or equal to hard limit"),
        (["--network", "nosuchnet"], "network nosuchnet not found"),
    ):
        proc = daemon.docker("run", "--rm", *args, "busybox", "true", check=False)
        assert proc.returncode == 125, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert daemon.docker("ps", "-aq").stdout == ""
    assert os.listdir(daemon.root / "containers") == []


def test_unknown_image(daemon, busybox):
    proc = daemon.docker("create", "--pull", "never", "nosuch:v1", "true", check=False)
    assert proc.returncode != 0
    assert "No such image: nosuch:v1" in proc.stderr
    assert daemon.docker("ps", "-aq").stdout == ""


def test_name_in_use(daemon, busybox):
    first = daemon.docker("create", "--name", "web", "busybox", "true").stdout.strip()
    proc = daemon.docker("run", "--name", "web", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert (f'Conflict. The container name "/web" is already in use by container "{first}"'
            in proc.stderr)
    assert daemon.docker("ps", "-aq", "--no-trunc").stdout.split() == [first]
    assert os.listdir(daemon.root / "containers") == [first]


def test_invalid_name(daemon, busybox):
    proc = daemon.docker("create", "--name", "bad/name", "busybox", "true", check=False)
    assert proc.returncode != 0
    assert "Invalid container name (bad/name)" in proc.stderr


def test_rm_flag_removes_after_exit(daemon, busybox):
    daemon.docker("run", "--rm", "--name", "gone", "busybox", "true")
    proc = daemon.docker("inspect", "gone", check=False)
    assert proc.returncode != 0
    assert "No such object: gone" in proc.stderr or "No such container: gone" in proc.stderr


def test_stdin_is_piped_with_i(daemon, busybox):
    proc = daemon.docker("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done",
                         input="hello\nworld\n")
    assert proc.stdout == "HELLO\nWORLD\ndone\n"


def test_stdout_and_stderr_stay_apart(daemon, busybox):
    proc = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"


def test_run_it_under_a_pty(daemon, busybox):
    """`docker run -it` in a real terminal (script(1) gives the CLI a pty)."""
    env = daemon.env
    env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
    cmd = "docker run --rm -it busybox sh -c 'tty; stty size; echo tty-ok; exit 7'"
    proc = subprocess.run(["script", "-qec", f"stty rows 33 cols 111; {cmd}", "/dev/null"],
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    lines = proc.stdout.replace("\r", "").splitlines()
    # script(1) may echo a stray control character typed by its own stdin first.
    assert any(line.endswith("/dev/pts/0") for line in lines), lines
    assert "33 111" in lines
    assert "tty-ok" in lines


def test_interactive_shell_over_a_pty(daemon, busybox):
    env = daemon.env
    env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
    proc = subprocess.run(["script", "-qec", "docker run --rm -it busybox sh", "/dev/null"],
                          env=env, input="echo $((6*7))\nexit 5\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 5, proc.stdout
    assert "42" in proc.stdout.replace("\r", "").splitlines()


def test_dockerpy_run_returns_output(daemon, busybox):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    try:
        assert client.containers.run("busybox", "echo hi") == b"hi\n"
        assert client.containers.run("busybox", ["sh", "-c", "echo a; echo b >&2"],
                                     stderr=True, remove=True) == b"a\nb\n"
        with pytest.raises(docker.errors.ContainerError) as err:
            client.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
        assert err.value.exit_status == 4
        box = client.containers.run("busybox", "sleep 100", detach=True, name="py")
        result = box.exec_run(["sh", "-c", "echo $HOSTNAME"])
        assert (result.exit_code, result.output) == (0, f"{box.id[:12]}\n".encode())
        box.remove(force=True)
    finally:
        client.close()


def test_container_environment_and_files(daemon, busybox):
    out = daemon.docker("run", "--rm", "--name", "envy", "-e", "FOO=bar", "-w", "/tmp/work",
                        "--hostname", "box1", "busybox", "sh", "-c",
                        "echo $FOO; pwd; hostname; cat /etc/hostname; echo $PATH;"
                        " grep -c localhost /etc/hosts; grep nameserver /etc/resolv.conf").stdout
    lines = out.splitlines()
    assert lines[:5] == ["bar", "/tmp/work", "box1", "box1",
                         "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert int(lines[5]) >= 2
    assert not any(line.split()[1].startswith("127.") for line in lines[6:])


def test_user_read_only_init_and_caps(daemon, busybox):
    assert daemon.docker("run", "--rm", "-u", "daemon", "busybox", "id").stdout.startswith(
        "uid=1(daemon) gid=1(daemon)")
    assert daemon.docker("run", "--rm", "-u", "65534:10", "busybox", "id", "-u").stdout == "65534\n"
    proc = daemon.docker("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert proc.returncode == 1 and "Read-only file system" in proc.stderr
    # --tmpfs gives a writable place in a read-only rootfs.
    daemon.docker("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox",
                  "touch", "/scratch/x")
    init = daemon.docker("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout
    assert init.split("\0")[:3] == ["/sbin/docker-init", "--", "cat"]
    # CAP_NET_RAW is in Docker's default set; dropping it shows in the bounding set.
    caps = daemon.docker("run", "--rm", "--cap-drop", "NET_RAW", "busybox", "sh", "-c",
                         "grep CapBnd /proc/self/status").stdout.split()[1]
    assert int(caps, 16) & (1 << 13) == 0
    caps = daemon.docker("run", "--rm", "busybox", "grep", "CapBnd",
                         "/proc/self/status").stdout.split()[1]
    assert int(caps, 16) & (1 << 13)


def test_network_none_has_only_loopback(daemon, busybox):
    out = daemon.docker("run", "--rm", "--network", "none", "busybox", "ls",
                        "/sys/class/net").stdout.split()
    assert out == ["lo"]
    out = daemon.docker("run", "--rm", "--network", "host", "busybox", "ls",
                        "/sys/class/net").stdout.split()
    assert sorted(out) == sorted(os.listdir("/sys/class/net"))


def test_attach_and_detach_keys(daemon, busybox):
    """`docker attach` to a running tty container, then ctrl-p ctrl-q: the
    client leaves, the container keeps running."""
    import pty
    import select

    daemon.docker("run", "-dit", "--name", "shell", "busybox", "sh")
    env = daemon.env
    env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
    master, slave = pty.openpty()
    proc = subprocess.Popen(["docker", "attach", "shell"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(needle: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while needle not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    return

    try:
        os.write(master, b"echo attached-$((1+1))\n")
        read_until(b"attached-2")
        assert b"attached-2" in seen
        os.write(master, b"\x10\x11")
        proc.wait(30)  # the CLI leaves (its exit status for a detach is its own choice)
        read_until(b"read escape sequence")
    finally:
        proc.kill()
        os.close(master)
    assert b"read escape sequence" in seen
    assert inspect(daemon, "shell")["State"]["Running"]
    daemon.docker("rm", "-f", "shell")


def test_seccomp_profile(daemon, busybox):
    def mode(*args: str) -> str:
        return daemon.docker("run", "--rm", *args, "busybox", "grep", "Seccomp:",
                             "/proc/self/status").stdout.split()[1]

    assert mode() == "2"  # Docker's default profile, as a filter
    assert mode("--security-opt", "seccomp=unconfined") == "0"
    assert mode("--privileged") == "0"
    # mount(2) needs CAP_SYS_ADMIN, and the profile lets it through once granted.
    assert daemon.docker("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
                         "mkdir /m && mount -t tmpfs x /m && echo mounted").stdout == "mounted\n"
    profile = daemon.root.parent / "profile.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    proc = daemon.docker("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox",
                         "true", check=False)
    assert proc.returncode == 125
    assert "custom seccomp profiles are not supported" in proc.stderr
