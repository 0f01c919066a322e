"""The registry commands of the berth CLI, in process against a scripted
Engine API: what they send (paths, parameters, X-Registry-Auth, /auth
bodies), what they print, and the config.json they keep."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cli"))

from cli_fakeapi import FakeAPI, Reply  # noqa: E402

from berth_cli.commands.registry import display_progress, progress_string  # noqa: E402
from berth_cli.env import Env, Stream  # noqa: E402
from berth_cli.main import run  # noqa: E402

PULL_STREAM = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 500, "total": 1000},
     "progress": "[=====>   ] 500B/1kB", "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:" + "d" * 64},
    {"status": "Status: Downloaded newer image for busybox:latest"},
]


def _stream(messages) -> Reply:
    return Reply(body=b"".join(json.dumps(m).encode() + b"\r\n" for m in messages),
                 content_type="application/json")


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out.decode(), err.decode()


@pytest.fixture
def api(workdir):
    fake = FakeAPI(str(workdir / "api.sock"))
    yield fake
    fake.close()


@pytest.fixture
def cli(workdir, api):
    def runner(*argv, stdin: bytes = b"", stdin_tty=False, stdout_tty=False, env=None) -> Result:
        environ = {"HOME": str(workdir), "PATH": os.environ.get("PATH", ""),
                   "BERTH_NO_AUTOSTART": "1", "BERTH_HOST": f"unix://{api.socket_path}",
                   "BERTH_CONFIG": str(workdir / "berth-config"),
                   "DOCKER_CONFIG": str(workdir / "docker-config")}
        environ.update(env or {})
        out, err = io.BytesIO(), io.BytesIO()
        code = run(list(argv), Env(io.BytesIO(stdin), out, err, environ, stdin_tty=stdin_tty,
                                   stdout_tty=stdout_tty))
        return Result(code, out.getvalue(), err.getvalue())
    return runner


def _auth_header(request) -> dict:
    raw = request.headers["X-Registry-Auth"]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def _config(workdir: Path, name: str = "berth-config") -> dict:
    return json.loads((workdir / name / "config.json").read_text())


def test_pull_sends_the_reference_and_anonymous_auth(cli, api):
    api.route("POST", "/images/create", _stream(PULL_STREAM))
    r = cli("pull", "busybox")
    assert r.code == 0, r.err
    request = api.last("POST", "/images/create")
    assert request.param("fromImage") == "docker.io/library/busybox"
    assert request.param("tag") == "latest"
    assert _auth_header(request) == {}
    assert r.out.splitlines() == [
        "Using default tag: latest", "latest: Pulling from library/busybox",
        "aaa: Pulling fs layer", "bbb: Pulling fs layer", "aaa: Pull complete", "bbb: Pull complete",
        "Digest: sha256:" + "d" * 64, "Status: Downloaded newer image for busybox:latest"]


def test_pull_options(cli, api):
    api.route("POST", "/images/create", _stream(PULL_STREAM))
    r = cli("pull", "-q", "--platform", "linux/arm64", "localhost:5000/app@sha256:" + "a" * 64)
    assert r.code == 0
    assert r.out == "localhost:5000/app@sha256:" + "a" * 64 + "\n"
    request = api.last("POST", "/images/create")
    assert (request.param("fromImage"), request.param("tag"), request.param("platform")) == (
        "localhost:5000/app", "sha256:" + "a" * 64, "linux/arm64")
    r = cli("pull", "-a", "localhost:5000/app")
    assert r.code == 0
    assert api.last("POST", "/images/create").param("tag") is None
    r = cli("pull", "-a", "localhost:5000/app:v1")
    assert r.code == 1 and "tag can't be used with --all-tags/-a" in r.err
    r = cli("pull", "Upper/Case")
    assert r.code == 1 and "must be lowercase" in r.err


def test_pull_errors(cli, api):
    api.route("POST", "/images/create", Reply(404, json_body={
        "message": "manifest for x:v9 not found: manifest unknown: manifest unknown"}))
    r = cli("pull", "x:v9")
    assert r.code == 1
    assert r.err.strip() == ("Error response from daemon: manifest for x:v9 not found: "
                             "manifest unknown: manifest unknown")
    api.route("POST", "/images/create", _stream(PULL_STREAM[:3] + [
        {"errorDetail": {"message": "layer aaa failed verification"}, "error": "layer aaa failed verification"}]))
    for quiet in ([], ["-q"]):
        r = cli("pull", *quiet, "busybox:latest")
        assert r.code == 1
        assert "layer aaa failed verification" in r.err


def test_progress_on_a_terminal_redraws_each_layer():
    out = io.BytesIO()
    display_progress(PULL_STREAM, Stream(out, tty=True), True)
    text = out.getvalue().decode()
    assert "\x1b[2K\r" in text            # lines cleared and redrawn
    assert "\x1b[2A" in text and "\x1b[2B" in text  # cursor moved to layer aaa and back
    assert "aaa: Downloading [" in text
    assert "500B/1kB" in text
    assert text.endswith("Status: Downloaded newer image for busybox:latest\n")
    assert progress_string({"current": 500, "total": 1000}).endswith("     500B/1kB")
    assert progress_string({"current": 0}) == ""
    assert progress_string({"current": 2_000_000}) == "     2MB"


def test_push_paths_and_options(cli, api):
    api.route("POST", "/images/localhost:5000/app/push", _stream([
        {"status": "The push refers to repository [localhost:5000/app]"},
        {"status": "Preparing", "progressDetail": {}, "id": "aaa"},
        {"status": "Pushed", "progressDetail": {}, "id": "aaa"},
        {"status": "latest: digest: sha256:" + "e" * 64 + " size: 528"},
        {"progressDetail": {}, "aux": {"Tag": "latest", "Digest": "sha256:" + "e" * 64, "Size": 528}}]))
    r = cli("push", "localhost:5000/app")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0] == "Using default tag: latest"
    assert "aaa: Pushed" in r.out
    assert api.last("POST", "/images/localhost:5000/app/push").param("tag") == "latest"
    api.route("POST", "/berth/images/localhost:5000/app/push", _stream([{"status": "ok"}]))
    r = cli("push", "--compression", "zstd", "--chunk-size", "1048576", "localhost:5000/app:v2")
    assert r.code == 0, r.err
    request = api.last("POST", "/berth/images/localhost:5000/app/push")
    assert (request.param("tag"), request.param("compression"), request.param("chunk_size")) == (
        "v2", "zstd", "1048576")
    r = cli("push", "--compression", "brotli", "localhost:5000/app")
    assert r.code == 125 and "must be gzip or zstd" in r.err


def test_login_stores_docker_compatible_credentials(cli, api, workdir):
    api.route("POST", "/auth", Reply(json_body={"Status": "Login Succeeded", "IdentityToken": ""}))
    r = cli("login", "-u", "alice", "--password-stdin", "localhost:5000", stdin=b"s3cret\n")
    assert r.code == 0, r.err
    assert r.out == "Login Succeeded\n"
    assert "stored unencrypted" in r.err
    body = json.loads(api.last("POST", "/auth").body)
    assert body == {"username": "alice", "password": "s3cret", "serveraddress": "localhost:5000"}
    path = workdir / "berth-config" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _config(workdir) == {"auths": {"localhost:5000": {
        "auth": base64.b64encode(b"alice:s3cret").decode()}}}
    # the saved credentials go with pulls from that registry only
    api.route("POST", "/images/create", _stream(PULL_STREAM))
    cli("pull", "localhost:5000/app:v1")
    assert _auth_header(api.last("POST", "/images/create"))["username"] == "alice"
    cli("pull", "other.example/app:v1")
    assert _auth_header(api.last("POST", "/images/create")) == {}
    r = cli("logout", "localhost:5000")
    assert r.out == "Removing login credentials for localhost:5000\n"
    assert _config(workdir) == {"auths": {}}
    assert cli("logout", "localhost:5000").out == "Not logged in to localhost:5000\n"


def test_login_keeps_other_settings_and_hub_key(cli, api, workdir):
    (workdir / "berth-config").mkdir()
    (workdir / "berth-config" / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x"}))
    api.route("POST", "/auth", Reply(json_body={"Status": "Login Succeeded", "IdentityToken": "tok"}))
    r = cli("login", "-u", "bob", "-p", "pw")
    assert r.code == 0
    assert "WARNING! Using --password via the CLI is insecure" in r.err
    assert json.loads(api.last("POST", "/auth").body)["serveraddress"] == "https://index.docker.io/v1/"
    saved = _config(workdir)
    assert saved["detachKeys"] == "ctrl-x"
    # An identity token replaces the password.
    assert saved["auths"]["https://index.docker.io/v1/"] == {
        "auth": base64.b64encode(b"bob:").decode(), "identitytoken": "tok"}


def test_login_failures(cli, api, workdir):
    r = cli("login", "localhost:5000")
    assert r.code == 1
    assert "Cannot perform an interactive login from a non TTY device" in r.err
    r = cli("login", "--password-stdin", "localhost:5000", stdin=b"pw")
    assert r.code == 1 and "Must provide --username with --password-stdin" in r.err
    api.route("POST", "/auth", Reply(401, json_body={
        "message": "login attempt to http://localhost:5000/v2/ failed with status: 401 Unauthorized"}))
    r = cli("login", "-u", "alice", "--password-stdin", "localhost:5000", stdin=b"bad")
    assert r.code == 1
    assert r.err.strip().endswith("failed with status: 401 Unauthorized")
    assert not (workdir / "berth-config" / "config.json").exists()


def test_docker_credentials_are_read_as_a_fallback(cli, api, workdir):
    (workdir / "docker-config").mkdir()
    (workdir / "docker-config" / "config.json").write_text(json.dumps({"auths": {
        "https://registry.example:5000/v1/": {"auth": base64.b64encode(b"carol:pw").decode()}}}))
    api.route("POST", "/images/create", _stream(PULL_STREAM))
    cli("pull", "registry.example:5000/app:v1")
    assert _auth_header(api.last("POST", "/images/create")) == {
        "serveraddress": "https://registry.example:5000/v1/", "username": "carol", "password": "pw"}


def test_credential_helper(cli, api, workdir):
    bindir = workdir / "bin"
    bindir.mkdir()
    store = workdir / "helper-store.json"
    helper = bindir / "docker-credential-fake"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
if action == "store":
    item = json.load(sys.stdin)
    data[item["ServerURL"]] = item
    json.dump(data, open(path, "w"))
elif action == "get":
    url = sys.stdin.read().strip()
    if url not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(data[url]))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    (workdir / "berth-config").mkdir()
    (workdir / "berth-config" / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    api.route("POST", "/auth", Reply(json_body={"Status": "Login Succeeded"}))
    r = cli("login", "-u", "dave", "--password-stdin", "reg.example", stdin=b"pw", env=env)
    assert r.code == 0, r.err
    assert "stored unencrypted" not in r.err
    assert json.load(open(store))["reg.example"] == {"ServerURL": "reg.example", "Username": "dave",
                                                      "Secret": "pw"}
    assert "auths" not in _config(workdir)
    api.route("POST", "/images/create", _stream(PULL_STREAM))
    cli("pull", "reg.example/app:v1", env=env)
    assert _auth_header(api.last("POST", "/images/create"))["password"] == "pw"
    assert cli("logout", "reg.example", env=env).code == 0
    assert json.load(open(store)) == {}


def test_run_uses_the_saved_credentials(cli, workdir):
    from berth_cli.commands.registry import encoded_auth_for
    (workdir / "berth-config").mkdir()
    (workdir / "berth-config" / "config.json").write_text(json.dumps({"auths": {
        "localhost:5000": {"auth": base64.b64encode(b"erin:pw").decode()}}}))

    class FakeCli:
        config_dir = str(workdir / "berth-config")
        env = Env(io.BytesIO(), io.BytesIO(), io.BytesIO(), {"HOME": str(workdir),
                                                             "DOCKER_CONFIG": str(workdir / "none")})

    header = encoded_auth_for(FakeCli(), "localhost:5000")
    assert json.loads(base64.urlsafe_b64decode(header))["username"] == "erin"
    assert encoded_auth_for(FakeCli(), "docker.io") == "e30="
