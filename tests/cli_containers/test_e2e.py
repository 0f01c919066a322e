"""The container and volume commands against a real berthd and real containers:
what a user sees on stdout and stderr, and the exit codes."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import tarfile
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

BERTH = os.path.join(os.path.dirname(sys.executable), "berth")


def test_run_output_and_exit_codes(daemon, busybox):
    r = daemon.berth("run", "--rm", "busybox", "echo", "hi")
    assert (r.stdout, r.stderr) == ("hi\n", "")
    r = daemon.berth("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = daemon.berth("run", "--rm", "busybox", "nosuchcommand", check=False)
    assert r.returncode == 127
    assert r.stderr.startswith("berth: Error response from daemon: ")
    assert "executable file not found" in r.stderr
    assert r.stderr.endswith("\n\nRun 'berth run --help' for more information\n")
    r = daemon.berth("run", "--rm", "busybox", "/etc", check=False)
    assert r.returncode == 126
    r = daemon.berth("run", "--rm", "--memory", "1k", "busybox", "true", check=False)
    assert r.returncode == 125 and r.stderr.startswith("berth: Error response from daemon: ")
    # --rm containers are gone whatever happened to them
    assert daemon.berth("ps", "-aq").stdout == ""


def test_run_options_reach_the_process(daemon, busybox, workdir):
    (workdir / "envfile").write_text("FROM_FILE=yes\n# comment\n")
    r = daemon.berth("run", "--rm", "-e", "A=1", "--env-file", str(workdir / "envfile"), "-w", "/made/here",
                     "-u", "1:2", "--hostname", "boxy", "busybox", "sh", "-c",
                     'echo "$A $FROM_FILE"; pwd; id -u; id -g; hostname')
    assert r.stdout == "1 yes\n/made/here\n1\n2\nboxy\n"
    r = daemon.berth("run", "--rm", "--entrypoint", "echo", "busybox", "from", "entrypoint")
    assert r.stdout == "from entrypoint\n"
    r = daemon.berth("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert r.returncode == 1 and "Read-only file system" in r.stderr


def test_stdin_is_piped_and_closed(daemon, busybox):
    r = daemon.berth("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input="line 1\nline 2\n")
    assert r.stdout == "line 1\nline 2\ndone\n"
    data = os.urandom(3 << 20)  # more than any pipe holds: input and output must flow together
    r = subprocess.run([BERTH, "run", "--rm", "-i", "busybox", "cat"], input=data, capture_output=True,
                       env=daemon.env, timeout=120)
    assert r.returncode == 0 and r.stdout == data


def test_detached_logs_exec_stop_rm(daemon, busybox):
    cid = daemon.berth("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                       "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 20
    while "out 5" not in daemon.berth("logs", "ticker").stdout:
        assert time.monotonic() < deadline, "no logs"
        time.sleep(0.1)
    r = daemon.berth("logs", "--tail", "4", "ticker")  # the last 4 records, stdout and stderr together
    out, err = r.stdout.splitlines(), r.stderr.splitlines()
    assert len(out) + len(err) == 4 and len(out) >= 1 and len(err) >= 1
    assert all(line.startswith("out ") for line in out) and all(line.startswith("err ") for line in err)
    follow = subprocess.Popen([BERTH, "logs", "-f", "--tail", "1", "ticker"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=daemon.env)
    try:
        first = follow.stdout.readline().decode()
        later = follow.stdout.readline().decode()
        assert first.startswith("out ") and later.startswith("out ")
        assert int(later.split()[1]) > int(first.split()[1])
    finally:
        follow.kill()
        follow.wait()
    r = daemon.berth("exec", "ticker", "sh", "-c", "echo from exec; echo to err >&2; exit 7", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (7, "from exec\n", "to err\n")
    assert daemon.berth("exec", "-e", "X=y", "-w", "/tmp", "ticker", "sh", "-c", 'echo $X; pwd').stdout == "y\n/tmp\n"
    listed = daemon.berth("ps", "--format", "{{.ID}} {{.Names}} {{.State}} {{.Command}}").stdout
    assert listed == f"{cid[:12]} ticker running \"sh -c 'i=0; while t…\"\n"
    assert daemon.berth("stop", "-t", "1", "ticker").stdout == "ticker\n"
    assert daemon.berth("inspect", "--format", "{{.State.Status}} {{.State.Running}}", cid).stdout == "exited false\n"
    r = daemon.berth("exec", "ticker", "true", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
    assert daemon.berth("rm", "ticker").stdout == "ticker\n"
    r = daemon.berth("rm", "ticker", check=False)
    assert (r.returncode, r.stderr) == (1, "Error response from daemon: No such container: ticker\n")


def test_ps_listing_and_filters(daemon, busybox):
    a = daemon.berth("create", "--name", "first", "-l", "role=db", "busybox", "true").stdout.strip()
    b = daemon.berth("run", "-d", "--name", "second", "busybox", "sleep", "60").stdout.strip()
    lines = daemon.berth("ps").stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(lines) == 2 and lines[1].startswith(b[:12] + "   busybox   \"sleep 60\"")
    assert lines[1].endswith("second") and "Up " in lines[1]
    assert set(daemon.berth("ps", "-aq").stdout.split()) == {a[:12], b[:12]}
    assert daemon.berth("ps", "-a", "--filter", "label=role=db", "--format", "{{.Names}}").stdout == "first\n"
    assert daemon.berth("ps", "-a", "-f", "status=created", "-q", "--no-trunc").stdout == a + "\n"
    assert daemon.berth("ps", "-a", "-f", "name=sec", "--format", "{{.Names}}").stdout == "second\n"
    assert daemon.berth("ps", "-l", "--format", "{{.Names}}").stdout == "second\n"
    rows = [json.loads(line) for line in daemon.berth("ps", "-a", "--format", "json").stdout.splitlines()]
    assert {row["Names"]: row["State"] for row in rows} == {"first": "created", "second": "running"}
    status = daemon.berth("ps", "-a", "-f", "name=first", "--format", "{{.Status}}").stdout
    assert status == "Created\n"
    r = daemon.berth("rm", "second", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ") and "force remove" in r.stderr
    assert daemon.berth("rm", "-f", "second", "first").stdout == "second\nfirst\n"


def test_inspect_and_errors(daemon, busybox):
    daemon.berth("create", "--name", "box", "-e", "K=V", "busybox", "sh")
    r = daemon.berth("inspect", "--format", "{{.Name}} {{.Config.Image}} {{index .Config.Env 0}}", "box")
    assert r.stdout == "/box busybox K=V\n"
    assert json.loads(daemon.berth("container", "inspect", "box").stdout)[0]["Name"] == "/box"
    r = daemon.berth("inspect", "--format", "{{.Driver}}", "nosuch", check=False)
    assert (r.returncode, r.stderr) == (1, "Error: No such object: nosuch\n")
    r = daemon.berth("create", "--name", "box", "busybox", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
    assert "box" in r.stderr and "already in use" in r.stderr
    r = daemon.berth("run", "--name", "box", "busybox", check=False)
    assert r.returncode == 125 and "already in use" in r.stderr
    assert daemon.berth("ps", "-aq").stdout.count("\n") == 1  # nothing half-created
    r = daemon.berth("run", "--pull", "never", "nosuch:1", check=False)
    assert (r.returncode, r.stderr) == (125, "berth: Error response from daemon: No such image: nosuch:1\n\n"
                                              "Run 'berth run --help' for more information\n")
    r = daemon.berth("run", "--bogus", "busybox", check=False)
    assert r.returncode == 125 and r.stderr.startswith("unknown flag: --bogus\n")
    assert daemon.berth("ps", "-aq").stdout.count("\n") == 1


def test_missing_image_is_pulled_then_reported(daemon, busybox):
    r = daemon.berth("run", "127.0.0.1:1/nosuch", check=False, timeout=120)
    assert r.returncode == 125
    assert r.stderr.startswith("Unable to find image '127.0.0.1:1/nosuch:latest' locally\n")
    assert "Run 'berth run --help' for more information" in r.stderr
    assert daemon.berth("ps", "-aq").stdout == ""


def test_cp_round_trip(daemon, busybox, workdir):
    daemon.berth("run", "-d", "--name", "files", "busybox", "sleep", "60")
    src = workdir / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "sub" / "deep.bin").write_bytes(os.urandom(70000))
    os.symlink("top.txt", src / "link")
    daemon.berth("cp", str(src), "files:/tmp/")
    assert daemon.berth("exec", "files", "cat", "/tmp/tree/top.txt").stdout == "top\n"
    assert daemon.berth("exec", "files", "readlink", "/tmp/tree/link").stdout == "top.txt\n"
    daemon.berth("cp", "files:/tmp/tree", str(workdir / "back"))
    assert (workdir / "back" / "top.txt").read_text() == "top\n"
    assert (workdir / "back" / "sub" / "deep.bin").read_bytes() == (src / "sub" / "deep.bin").read_bytes()
    assert os.readlink(workdir / "back" / "link") == "top.txt"
    daemon.berth("cp", str(src / "top.txt"), "files:/etc/renamed")
    assert daemon.berth("exec", "files", "cat", "/etc/renamed").stdout == "top\n"
    r = subprocess.run([BERTH, "cp", "files:/etc/renamed", "-"], capture_output=True, env=daemon.env, timeout=60)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        assert tar.getnames() == ["renamed"]
    r = daemon.berth("cp", "files:/nope", str(workdir), check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
    changes = daemon.berth("diff", "files").stdout.splitlines()
    assert "A /tmp/tree" in changes and "A /etc/renamed" in changes
    daemon.berth("rm", "-f", "files")


def test_volumes(daemon, busybox):
    assert daemon.berth("volume", "create", "--label", "k=v", "data").stdout == "data\n"
    daemon.berth("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert daemon.berth("run", "--rm", "-v", "data:/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    assert daemon.berth("volume", "ls").stdout == "DRIVER    VOLUME NAME\nlocal     data\n"
    assert daemon.berth("volume", "ls", "-f", "label=k=v", "-q").stdout == "data\n"
    assert daemon.berth("volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Labels}}", "data").stdout == \
        "data local map[k:v]\n"
    daemon.berth("create", "--name", "user", "-v", "data:/data", "busybox")
    r = daemon.berth("volume", "rm", "data", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")
    daemon.berth("rm", "user")
    assert daemon.berth("volume", "rm", "data").stdout == "data\n"
    daemon.berth("volume", "create", "loose")
    r = daemon.berth("volume", "prune", "-a", "-f")
    assert r.stdout == "Deleted Volumes:\nloose\n\nTotal reclaimed space: 0B\n"
    assert daemon.berth("volume", "ls", "-q").stdout == ""


def _set_size(fd: int, rows: int, columns: int) -> None:
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _pty_session(argv, env, keys: list, timeout: float = 30) -> tuple[int, bytes]:
    """Run argv on a 24x80 pseudo-terminal, typing each of ``keys`` (or calling it
    with the terminal's fd) once the output has settled, or once it shows ``x``
    for a key given as (x, key); the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    _set_size(fd, 24, 80)
    shown = b""
    deadline = time.monotonic() + timeout

    def drain(quiet: float) -> bool:
        nonlocal shown
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], quiet)
            if not ready:
                return True
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            shown += data
        return False

    try:
        typed_at = 0  # what the terminal showed when the last key went in
        for key in keys:
            if isinstance(key, tuple):
                expected, key = key
                while expected not in shown[typed_at:] and drain(0.1):
                    pass
            if not drain(0.5):
                break
            typed_at = len(shown)
            if callable(key):
                key(fd)
            else:
                os.write(fd, key)
        while drain(0.5):
            pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown


def test_run_interactive_tty(daemon, busybox):
    code, shown = _pty_session([BERTH, "run", "--rm", "-it", "busybox", "sh"], daemon.env,
                               [(b"/ # ", b"echo tty is $(tty); stty size\r"), lambda fd: _set_size(fd, 33, 101),
                                b"stty size; exit 6\r"])
    assert code == 6
    assert b"tty is /dev/pts/0\r\n24 80\r\n" in shown  # the terminal's size from the start
    assert b"\r\n33 101\r\n" in shown  # and its changes (SIGWINCH -> /resize)


def test_detach_keys_leave_the_container_running(daemon, busybox):
    code, shown = _pty_session([BERTH, "run", "-it", "--name", "stay", "busybox", "sh"], daemon.env,
                               [(b"/ # ", b"echo before\r"), (b"before", b"\x10"), b"\x11"])
    assert code == 0 and b"before" in shown
    assert daemon.berth("inspect", "-f", "{{.State.Running}}", "stay").stdout == "true\n"
    daemon.berth("rm", "-f", "stay")


def test_exec_and_attach_on_a_terminal(daemon, busybox):
    daemon.berth("run", "-dit", "--name", "shell", "busybox", "sh")
    code, shown = _pty_session([BERTH, "exec", "-it", "shell", "sh"], daemon.env,
                               [(b"/ # ", b"echo exec on $(tty)\r"), b"exit 3\r"])
    assert code == 3 and b"exec on /dev/pts/" in shown
    code, shown = _pty_session([BERTH, "attach", "shell"], daemon.env,
                               [b"echo attached here\r", (b"attached here", b"\x10"), b"\x11"])
    assert b"attached here\r\n" in shown
    assert (code, shown.endswith(b"read escape sequence\r\n") or shown.endswith(b"read escape sequence\n")) == (1, True)
    assert daemon.berth("inspect", "-f", "{{.State.Running}}", "shell").stdout == "true\n"
    r = daemon.berth("attach", "shell", check=False)  # its stdin is not a terminal
    assert (r.returncode, r.stderr) == (1, "the input device is not a TTY\n")
    daemon.berth("rm", "-f", "shell")
