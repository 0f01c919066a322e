"""Auto-start: with nothing on the socket, the CLI starts berthd for that root."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from berth_cli import autostart

VENV_BIN = os.path.dirname(sys.executable)


def berthd_pids(root) -> list[int]:
    """PIDs of berthd processes serving this data root (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"berthd") for a in argv[:2]) and b"--root" in argv:
            i = argv.index(b"--root")
            if i + 1 < len(argv) and argv[i + 1] == str(root).encode():
                pids.append(int(entry))
    return pids


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(200):  # the daemon is not our child: poll until it is gone
        if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def fresh(workdir):
    """A data root and socket nobody serves yet; any berthd started for it is stopped."""
    root, sock = workdir / "root", workdir / "b.sock"
    env = dict(os.environ, BERTH_ROOT=str(root), BERTH_HOST=f"unix://{sock}",
               PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    env.pop("BERTH_NO_AUTOSTART", None)
    yield root, sock, env
    for pid in berthd_pids(root):
        stop(pid)


def _fake_berthd(workdir, body: str) -> str:
    path = workdir / "fake-berthd"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_daemon_that_dies_is_reported_with_its_log(run_cli, workdir, monkeypatch):
    fake = _fake_berthd(workdir, 'echo "args: $@"\n'
                        f'{sys.executable} -c "import os; print(\'own session:\', os.getsid(0) == os.getppid())"\n'
                        'echo "boom: cannot open the metadata db" >&2\nexit 3\n')
    monkeypatch.setattr(autostart, "find_berthd", lambda environ: fake)
    root, host = workdir / "root", f"unix://{workdir}/s.sock"
    r = run_cli("images", host=host, env={"BERTH_NO_AUTOSTART": "", "BERTH_ROOT": str(root)})
    assert r.code == 1
    log = root / "berthd.log"
    assert r.err.startswith(f"berthd exited with status 3 before answering on {host}; see {log}:\n")
    assert r.err.rstrip().endswith("boom: cannot open the metadata db")
    text = log.read_text()
    assert f"args: --root {root} --host {host}\n" in text
    assert "own session: True\n" in text


def test_no_berthd_to_start(run_cli, workdir, monkeypatch):
    monkeypatch.setattr(autostart, "find_berthd", lambda environ: None)
    r = run_cli("images", host=f"unix://{workdir}/s.sock", env={"BERTH_NO_AUTOSTART": ""})
    assert (r.code, r.err) == (1, f"Cannot connect to the berth daemon at unix://{workdir}/s.sock, and no "
                                  "berthd executable was found next to python or on PATH to start one\n")


def test_a_root_that_cannot_be_created(run_cli, workdir):
    (workdir / "afile").write_text("")
    r = run_cli("images", host=f"unix://{workdir}/s.sock",
                env={"BERTH_NO_AUTOSTART": "", "BERTH_ROOT": str(workdir / "afile" / "root")})
    assert r.code == 1
    assert r.err == (f"Cannot connect to the berth daemon at unix://{workdir}/s.sock, and cannot start one "
                     f"with data root {workdir}/afile/root: Not a directory\n")


def test_first_command_starts_berthd_in_the_background(fresh):
    root, sock, env = fresh
    assert not berthd_pids(root)
    proc = subprocess.run([f"{VENV_BIN}/berth", "version"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\nServer: berth\n Engine:\n" in proc.stdout
    pids = berthd_pids(root)
    assert len(pids) == 1
    # detached: its own session, not a child of the finished CLI
    assert os.getsid(pids[0]) == pids[0]
    assert (root / "berthd.log").exists()
    # the next command talks to the same daemon
    proc = subprocess.run([f"{VENV_BIN}/berth", "images", "-q"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "")
    assert berthd_pids(root) == pids


def test_concurrent_first_commands_share_one_daemon(fresh):
    root, sock, env = fresh
    procs = [subprocess.Popen([f"{VENV_BIN}/berth", "info", "--format", "{{.DockerRootDir}}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert all(out == f"{root}\n" for out, _ in results)
    assert len(berthd_pids(root)) == 1


def test_autostart_can_be_disabled(fresh):
    root, sock, env = fresh
    env["BERTH_NO_AUTOSTART"] = "1"
    proc = subprocess.run([f"{VENV_BIN}/berth", "images"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == f"Cannot connect to the berth daemon at unix://{sock}. Is the berth daemon running?\n"
    assert not berthd_pids(root) and not root.exists()
