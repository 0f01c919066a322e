"""§7: the docker CLI (DOCKER_HOST=unix://<berth socket>) against berthd."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time

import pytest


def test_version_negotiates(docker):
    out = docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}} {{.Client.APIVersion}}")
    server_api, server_os, client_api = out.stdout.split()
    assert server_api == "1.41"
    assert server_os == "linux"
    # A newer client downgrades to the daemon's version, an older one keeps its own.
    assert client_api == "1.41"
    plain = docker("version").stdout
    assert "Server: berth" in plain
    assert "API version:      1.41 (minimum version 1.24)" in plain


def test_info(docker, daemon):
    out = docker("info", "--format", "{{.DockerRootDir}}|{{.Driver}}|{{.OSType}}|{{.Images}}")
    assert out.stdout.strip() == f"{daemon.root}|overlay2|linux|0"


def test_import_and_list(docker, busybox):
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    assert listing == [f"busybox:latest {busybox.removeprefix('sha256:')[:12]}"]
    assert docker("images", "-q", "--no-trunc").stdout.split() == [busybox]


def test_image_inspect(docker, busybox):
    [image] = json.loads(docker("image", "inspect", "busybox").stdout)
    assert image["Id"] == busybox
    assert image["RepoTags"] == ["busybox:latest"]
    assert image["Os"] == "linux"
    assert image["RootFS"]["Type"] == "layers" and len(image["RootFS"]["Layers"]) == 1
    assert docker("image", "inspect", "--format", "{{.Id}}", busybox[7:19]).stdout.strip() == busybox


def test_missing_image_errors(docker):
    for args in (("image", "inspect", "nosuch"), ("rmi", "nosuch"), ("tag", "nosuch", "other")):
        proc = docker(*args, check=False)
        assert proc.returncode != 0
        assert "No such image: nosuch" in proc.stderr
        assert '{"message"' not in proc.stderr  # decoded, not dumped raw


def test_tag_and_rmi(docker, busybox):
    docker("tag", "busybox", "example.com/team/bb:v1")
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(tags) == ["busybox:latest", "example.com/team/bb:v1"]
    [image] = json.loads(docker("image", "inspect", "example.com/team/bb:v1").stdout)
    assert image["Id"] == busybox

    out = docker("rmi", "example.com/team/bb:v1").stdout
    assert "Untagged: example.com/team/bb:v1" in out
    assert "Deleted" not in out  # busybox:latest still holds the image
    out = docker("rmi", "busybox").stdout
    assert "Untagged: busybox:latest" in out
    assert f"Deleted: {busybox}" in out
    assert docker("images", "-q").stdout.strip() == ""


def test_save_and_load_file(docker, busybox, workdir):
    archive = workdir / "busybox.tar"
    docker("save", "-o", str(archive), "busybox:latest")
    assert archive.stat().st_size > 0
    docker("rmi", "busybox")
    out = docker("load", "-i", str(archive)).stdout
    assert "Loaded image: busybox:latest" in out
    assert docker("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip() == busybox


def test_save_pipe_load(docker, busybox):
    docker("tag", "busybox", "piped:1")
    archive = docker("save", "piped:1", input=b"").stdout
    docker("rmi", "piped:1", "busybox")
    out = docker("load", input=archive).stdout
    assert b"Loaded image: piped:1" in out
    assert docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == ["piped:1"]


def test_load_garbage_fails_cleanly(docker):
    proc = docker("load", input=b"this is not a tar archive" * 100, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip()
    assert docker("images", "-q").stdout.strip() == ""


def test_import_from_stdin_with_changes(docker, busybox_rootfs):
    image_id = docker("import", "-c", 'CMD ["/bin/sh", "-c", "echo hi"]', "-c", "ENV A=1",
                      "-m", "from stdin", "-", "stdin:v1", input=busybox_rootfs.read_bytes()).stdout.decode().strip()
    [image] = json.loads(docker("image", "inspect", "stdin:v1").stdout)
    assert image["Id"] == image_id
    assert image["Config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert "A=1" in image["Config"]["Env"]
    history = docker("history", "--format", "{{.Comment}}", "stdin:v1").stdout
    assert "from stdin" in history


@pytest.fixture
def http_file(workdir, busybox_rootfs):
    """busybox_rootfs served over HTTP on 127.0.0.1 (an import URL)."""
    (workdir / "www").mkdir()
    (workdir / "www" / "rootfs.tar").write_bytes(busybox_rootfs.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(workdir / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_from_url(docker, http_file):
    out = docker("import", f"{http_file}/rootfs.tar", "fromurl:1").stdout
    image_id = out.strip().splitlines()[-1]
    assert image_id.startswith("sha256:")
    assert docker("image", "inspect", "--format", "{{.Id}}", "fromurl:1").stdout.strip() == image_id
    proc = docker("import", f"{http_file}/missing.tar", "fromurl:2", check=False)
    assert proc.returncode != 0
    assert "404" in proc.stderr
    assert "fromurl:2" not in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout


def test_events_report_tagging(docker, busybox):
    docker("tag", "busybox", "evt:1")
    docker("rmi", "evt:1")
    # A window that ends now: the daemon replays its history and closes the stream.
    out = docker("events", "--since", "0", "--until", f"{time.time():.9f}", "--filter", "type=image",
                 "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    lines = out.stdout.splitlines()
    assert "image tag evt:1" in lines
    assert f"image untag {busybox}" in lines  # Docker names the image by ID here


def test_history_df_and_prune(docker, busybox):
    history = docker("history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "busybox").stdout
    assert history.splitlines()[0].startswith(busybox)
    df = docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout.splitlines()
    assert "Images 1" in df
    docker("tag", "busybox", "keep:1")
    assert docker("images", "--filter", "reference=keep", "--format", "{{.Repository}}").stdout.split() == ["keep"]
    assert docker("images", "--filter", "dangling=true", "-q").stdout.strip() == ""
    # Tagged images survive a plain prune; -a removes every unused image.
    out = docker("image", "prune", "-f").stdout
    assert "Total reclaimed space: 0B" in out
    out = docker("image", "prune", "-a", "-f").stdout
    assert f"deleted: {busybox}" in out
    assert docker("images", "-q").stdout.strip() == ""


def test_malformed_filter_is_reported(docker):
    proc = docker("images", "--filter", "colour=red", check=False)
    assert proc.returncode != 0
    assert "invalid filter 'colour'" in proc.stderr


def test_events_stream_live(docker, busybox):
    import select
    import subprocess

    env = docker.daemon.env
    env["DOCKER_CONFIG"] = str(docker.daemon.root.parent / "docker-config")
    watcher = subprocess.Popen([docker.binary, "events", "--filter", "event=tag",
                                "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Tag until the watcher has connected and reports it (it may subscribe late).
        line = ""
        for attempt in range(100):
            docker("tag", "busybox", f"live:{attempt}")
            ready, _, _ = select.select([watcher.stdout], [], [], 0.2)
            if ready:
                line = watcher.stdout.readline().strip()
                break
        assert line.startswith("tag live:"), (line, watcher.poll())
    finally:
        watcher.terminate()
        watcher.wait(10)
