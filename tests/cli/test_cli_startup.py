"""Start-up hygiene: a listing or --help must not pull heavy modules in.

Asserted on which modules get imported (stable), not on milliseconds (benchmarks/).
"""

import os
import subprocess
import sys

import pytest
from cli_fakeapi import Reply

# Each of these costs milliseconds per run, or drags in more modules that do.
HEAVY = {"json", "re", "enum", "socket", "subprocess", "argparse", "http", "http.client", "email",
         "urllib", "urllib.parse", "dataclasses", "inspect", "typing", "pathlib", "shutil",
         "tempfile", "logging", "datetime", "platform", "locale", "ssl", "selectors", "threading"}


def _imported(argv, env) -> set[str]:
    env = dict(env, PYTHONPROFILEIMPORTTIME="1")
    berth = os.path.join(os.path.dirname(sys.executable), "berth")
    proc = subprocess.run([berth, *argv], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.fixture
def env(fake_api):
    fake_api.route("GET", "/images/json", Reply(json_body=[
        {"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest"], "RepoDigests": [],
         "Created": 1, "Size": 1, "SharedSize": -1, "Containers": -1}]))
    fake_api.route("GET", "/images/busybox/json", Reply(json_body={"Id": "sha256:" + "a" * 64, "Size": 1}))
    environ = dict(os.environ, BERTH_HOST=fake_api.host, BERTH_NO_AUTOSTART="1")
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return environ


@pytest.mark.parametrize("argv", [["images"], ["images", "-q"], ["image", "inspect", "busybox"], ["--help"], ["-v"]])
def test_common_commands_import_nothing_heavy(env, argv):
    imported = _imported(argv, env)
    assert "berth_cli.main" in imported
    assert not imported & HEAVY, sorted(imported & HEAVY)
    assert not any(m == "berth" or m.startswith("berth.") for m in imported)


def test_only_the_invoked_command_group_is_loaded(env):
    imported = _imported(["images", "-q"], env)
    assert "berth_cli.commands.images" in imported
    assert "berth_cli.commands.system" not in imported
    assert "berth_cli.autostart" not in imported


@pytest.mark.parametrize("argv", [["-v"], ["create", "busybox", "true"]])
def test_run_path_does_not_import_os(env, fake_api, argv):
    # os costs a quarter of the interpreter's own start (its ABCs); `run` and
    # `create` take what they need from posix (berth_cli.lean_os).
    fake_api.route("POST", "/containers/create", Reply(status=201, json_body={"Id": "c" * 64, "Warnings": []}))
    imported = _imported(argv, env)
    assert "berth_cli.main" in imported
    assert not imported & {"os", "__future__"}, sorted(imported & {"os", "__future__"})
