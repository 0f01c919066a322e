"""The container commands users run in loops stay lean: `run`, `ps`, `logs`, `exec`,
`stop` and `volume ls` import no heavy module (asserted on the modules imported,
not on milliseconds: timings belong in benchmarks/)."""

import os
import subprocess
import sys

import pytest
from fakeengine import FakeContainer, Hijack, Reply, frame

HEAVY = {"json", "re", "enum", "socket", "subprocess", "argparse", "http", "http.client", "email",
         "urllib", "urllib.parse", "dataclasses", "inspect", "typing", "pathlib", "shutil", "tempfile",
         "logging", "datetime", "platform", "locale", "ssl", "selectors", "threading", "signal"}
CID = "f" * 64


def _imported(argv, env) -> set[str]:
    berth = os.path.join(os.path.dirname(sys.executable), "berth")
    proc = subprocess.run([berth, *argv], env=dict(env, PYTHONPROFILEIMPORTTIME="1"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture
def env(engine):
    FakeContainer(engine, CID, frames=[(1, b"hi\n")])
    engine.route("GET", "/containers/json", Reply(json_body=[{"Id": CID, "Names": ["/x"], "Image": "busybox",
                                                              "Command": "sh", "Created": 1, "State": "running",
                                                              "Status": "Up 1 second"}]))
    engine.route("GET", f"/containers/{CID}/logs", Reply(body=frame(1, b"log\n")))
    engine.route("POST", "/containers/x/stop", Reply(204))
    engine.route("GET", "/volumes", Reply(json_body={"Volumes": [{"Name": "v", "Driver": "local"}]}))
    engine.route("POST", f"/containers/{CID}/exec", Reply(201, {"Id": "e"}))
    engine.route("POST", "/exec/e/start", lambda r: Hijack(lambda sock, reader: sock.close()))
    engine.route("GET", "/exec/e/json", Reply(json_body={"ExitCode": 0}))
    environ = dict(os.environ, BERTH_HOST=engine.host, BERTH_NO_AUTOSTART="1")
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return environ


@pytest.mark.parametrize("argv", [["run", "--rm", "busybox", "echo", "hi"], ["ps"], ["ps", "-q"],
                                  ["logs", CID], ["exec", CID, "true"], ["stop", "x"], ["volume", "ls"]],
                         ids=" ".join)
def test_container_commands_import_nothing_heavy(env, argv):
    imported = _imported(argv, env)
    assert not imported & HEAVY, sorted(imported & HEAVY)
    assert not any(m == "berth" or m.startswith("berth.") for m in imported)


def test_run_loads_only_what_it_uses(env):
    imported = _imported(["run", "--rm", "busybox", "echo", "hi"], env)
    assert "berth_cli.commands.run" in imported
    for module in ("containers", "cp", "stats", "volumes", "system", "images", "registry", "exec"):
        assert f"berth_cli.commands.{module}" not in imported
    assert "berth_cli.reference" not in imported  # the reference grammar only when it is needed
