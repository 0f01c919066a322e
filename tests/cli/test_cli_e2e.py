"""The berth CLI against a real berthd (the `daemon` fixture): what a user sees."""

import json
import os
import select
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

BERTH = os.path.join(os.path.dirname(sys.executable), "berth")


@pytest.fixture
def busybox(daemon, busybox_rootfs):
    """The daemon with busybox:latest imported through the CLI; yields the image ID."""
    r = daemon.berth("import", "--change", 'CMD ["sh"]', "-m", "from the tests", str(busybox_rootfs),
                     "busybox:latest")
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, r.stdout
    return image_id


def test_import_and_list(daemon, busybox):
    short = busybox[7:19]
    lines = daemon.berth("images").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED ")
    assert lines[1].startswith(f"busybox      latest    {short}   ")
    assert len(lines) == 2
    assert daemon.berth("images", "-q").stdout == f"{short}\n"
    assert daemon.berth("image", "ls", "-q", "--no-trunc").stdout == f"{busybox}\n"
    assert daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout == f"busybox:latest {short}\n"
    row = json.loads(daemon.berth("images", "--format", "json").stdout)
    assert (row["Repository"], row["Tag"], row["ID"]) == ("busybox", "latest", short)
    assert row["Size"].endswith("MB")


def test_filters(daemon, busybox):
    assert daemon.berth("images", "-q", "--filter", "reference=busybox").stdout == f"{busybox[7:19]}\n"
    assert daemon.berth("images", "-q", "busybox:latest").stdout == f"{busybox[7:19]}\n"
    assert daemon.berth("images", "-q", "--filter", "reference=nothing*").stdout == ""
    assert daemon.berth("images", "-q", "--filter", "dangling=true").stdout == ""


def test_inspect(daemon, busybox):
    r = daemon.berth("image", "inspect", "busybox")
    assert r.stdout.startswith("[\n    {\n")
    (obj,) = json.loads(r.stdout)
    assert obj["Id"] == busybox and obj["RepoTags"] == ["busybox:latest"]
    r = daemon.berth("image", "inspect", "--format", "{{.Id}} {{json .Config.Cmd}} {{.Comment}}", "busybox:latest")
    assert r.stdout == f'{busybox} ["sh"] from the tests\n'
    assert daemon.berth("inspect", "-f", "{{.ID}}", busybox[7:19]).stdout == f"{busybox}\n"


def test_tag_and_rmi(daemon, busybox):
    daemon.berth("tag", "busybox", "localhost:5000/team/box:v1")
    daemon.berth("image", "tag", busybox, "mybox")
    listed = daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(listed) == ["busybox:latest", "localhost:5000/team/box:v1", "mybox:latest"]
    r = daemon.berth("rmi", "mybox", "localhost:5000/team/box:v1")
    assert r.stdout == "Untagged: mybox:latest\nUntagged: localhost:5000/team/box:v1\n"
    assert daemon.berth("images", "-q").stdout == f"{busybox[7:19]}\n"


def test_rmi_of_the_last_tag_deletes_the_image(daemon, busybox):
    r = daemon.berth("rmi", "busybox")
    assert r.stdout.splitlines()[0] == "Untagged: busybox:latest"
    assert f"Deleted: {busybox}" in r.stdout.splitlines()
    assert daemon.berth("images", "-qa").stdout == ""


def test_missing_images(daemon, busybox):
    r = daemon.berth("image", "inspect", "nope", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "[]\n", "Error: No such image: nope\n")
    r = daemon.berth("rmi", "nope", "busybox", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("Error response from daemon: No such image: nope")
    assert r.stdout.startswith("Untagged: busybox:latest\n")  # rmi went on with the next one
    r = daemon.berth("history", "nope", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: No such image: nope")
    r = daemon.berth("tag", "nope", "other", check=False)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: No such image: nope")
    r = daemon.berth("save", "-o", str(daemon.root.parent / "x.tar"), "nope", check=False)
    assert r.returncode == 1 and not (daemon.root.parent / "x.tar").exists()


def test_history(daemon, busybox):
    lines = daemon.berth("history", "busybox").stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(busybox[7:19] + "   ")
    assert lines[1].endswith("from the tests")
    assert daemon.berth("history", "-q", "busybox").stdout == f"{busybox[7:19]}\n"
    size = daemon.berth("history", "--format", "{{.Size}}", "-H=false", "busybox").stdout.strip()
    assert size.isdigit() and int(size) > 1_000_000


def test_save_load_round_trip(daemon, busybox):
    daemon.berth("tag", "busybox", "second:1")
    archive = daemon.root.parent / "images.tar"
    r = daemon.berth("save", "-o", str(archive), "busybox", "second:1")
    assert (r.stdout, r.stderr) == ("", "")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["busybox:latest", "second:1"]
    daemon.berth("rmi", "busybox", "second:1")
    assert daemon.berth("images", "-qa").stdout == ""
    r = daemon.berth("load", "-i", str(archive))
    assert sorted(r.stdout.splitlines()) == ["Loaded image: busybox:latest", "Loaded image: second:1"]
    assert daemon.berth("image", "inspect", "-f", "{{.Id}}", "busybox", "second:1").stdout == f"{busybox}\n" * 2


def test_save_to_stdout_and_load_from_stdin(daemon, busybox):
    r = daemon.berth("save", "busybox", input=b"")
    assert r.stdout[257:262] == b"ustar"  # a tar stream on stdout
    daemon.berth("rmi", "busybox")
    r = daemon.berth("load", input=r.stdout)
    assert r.stdout == b"Loaded image: busybox:latest\n"
    assert daemon.berth("images", "-q", "--no-trunc").stdout == f"{busybox}\n"


def test_import_from_stdin(daemon, busybox_rootfs):
    r = daemon.berth("import", "-", "piped:1", input=busybox_rootfs.read_bytes())
    assert r.stdout.startswith(b"sha256:")
    assert daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "piped:1\n"


def test_bad_archives_are_refused_cleanly(daemon, busybox):
    junk = daemon.root.parent / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    r = daemon.berth("load", "-i", str(junk), check=False)
    assert r.returncode == 1 and r.stderr.strip()
    r = daemon.berth("import", str(junk), "junk:1", check=False)
    assert r.returncode == 1 and r.stderr.strip()
    listed = daemon.berth("images", "-a", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert listed == "busybox:latest\n"


def test_prune(daemon, busybox, busybox_rootfs):
    dangling = daemon.berth("import", str(busybox_rootfs)).stdout.strip()  # no tag: dangling
    listed = daemon.berth("images", "--filter", "dangling=true", "-q", "--no-trunc").stdout
    assert listed == f"{dangling}\n"
    r = daemon.berth("image", "prune", input="n\n")
    assert r.stdout.endswith("Are you sure you want to continue? [y/N] ")
    assert daemon.berth("images", "-qa", "--no-trunc").stdout.count("sha256:") == 2
    r = daemon.berth("image", "prune", "-f")
    assert r.stdout.startswith("Deleted Images:\n")
    assert f"deleted: {dangling}" in r.stdout
    assert "\nTotal reclaimed space: " in r.stdout
    assert daemon.berth("images", "-qa", "--no-trunc").stdout == f"{busybox}\n"
    r = daemon.berth("system", "prune", "-a", "-f")
    assert f"deleted: {busybox}" in r.stdout
    assert daemon.berth("images", "-qa").stdout == ""


def test_system_df(daemon, busybox):
    lines = daemon.berth("system", "df").stdout.splitlines()
    assert lines[0] == "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
    assert lines[1].split()[:3] == ["Images", "1", "0"]
    assert lines[1].endswith("(100%)")
    verbose = daemon.berth("system", "df", "-v").stdout
    assert verbose.startswith("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID ")
    assert f"\nbusybox      latest    {busybox[7:19]}   " in verbose


def test_version_and_info(daemon):
    r = daemon.berth("version")
    assert r.stdout.startswith("Client: berth\n Version:           0.1.0\n")
    assert "\nServer: " in r.stdout and "  API version:      1.41" in r.stdout
    assert daemon.berth("version", "--format", "{{.Server.APIVersion}}").stdout == "1.41\n"
    r = daemon.berth("info")
    assert " Images: 0\n" in r.stdout and f" Docker Root Dir: {daemon.root}\n" in r.stdout
    assert daemon.berth("info", "--format", "{{.Images}}").stdout == "0\n"


def test_events_history_window(daemon, busybox):
    daemon.berth("tag", "busybox", "evt:1")
    until = str(time.time() + 1)
    r = daemon.berth("events", "--since", "5m", "--until", until, "--filter", "type=image",
                     "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert "tag evt:1" in r.stdout.splitlines()
    pretty = daemon.berth("events", "--since", "5m", "--until", until).stdout.splitlines()
    assert any(" image tag " in line and line.endswith("(name=evt:1)") for line in pretty)


def test_events_stream_live(daemon, busybox):
    proc = subprocess.Popen([BERTH, "events", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
                            env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # events streams from the moment it connects; retag until one shows up
        seen = b""
        for attempt in range(50):
            daemon.berth("tag", "busybox", f"live:{attempt}")
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
                if b"tag live:" in seen:
                    break
        assert b"tag live:" in seen, (seen, proc.poll())
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(10)


# -- side by side with the docker CLI ---------------------------------------------------

PARITY = [
    ["images", "-q"],
    ["images", "--no-trunc", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.CreatedAt}}"],
    ["images", "--digests", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.Size}}"],
    ["images", "--format", "{{.ID}} {{.VirtualSize}} {{.Containers}} {{.SharedSize}} {{.UniqueSize}}"],
    ["images", "--filter", "reference=busy*", "--format", "table {{.Repository}}\t{{.Size}}"],
    ["history", "-H=false", "busybox"],
    ["history", "--no-trunc", "-H=false", "--format", "table {{.ID}}\t{{.CreatedAt}}\t{{.Size}}", "busybox"],
    ["image", "inspect", "busybox"],
    ["image", "inspect", "-f", "{{.Id}} {{.Config.Cmd}} {{json .RootFS}} {{.Size}}", "busybox"],
    ["system", "df"],
    ["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}"],
    ["info", "--format", "{{.Images}} {{.Driver}} {{.DockerRootDir}}"],
    ["rmi", "nope"],
    ["tag", "busybox", "Upper"],
]


@pytest.mark.parametrize("argv", PARITY, ids=" ".join)
def test_same_output_as_the_docker_cli(daemon, busybox, argv):
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    docker = daemon.docker(*argv, check=False)
    berth = daemon.berth(*argv, check=False)
    assert (berth.returncode, berth.stdout, berth.stderr) == (docker.returncode, docker.stdout, docker.stderr)
