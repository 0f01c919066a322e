"""Proof with real peers: berth against Debian's docker-registry (with and
without htpasswd), skopeo against berth's registry server, the docker CLI
through berthd's socket, and a stock dockerd (private, started and removed
here) pushing to and pulling from berth's server."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from regkit import (Image, make_image, skopeo_copy, write_oci_layout)

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def _busybox_image(rootfs: Path) -> Image:
    """The example busybox rootfs as a one-layer registry image."""
    raw = rootfs.read_bytes()
    layer = gzip.compress(raw, 1, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    }).encode()
    return Image(manifest, "application/vnd.oci.image.manifest.v1+json", config, [layer],
                 [], [])


def _seed(workdir: Path, registry_address: str, repo: str, image: Image, *extra: str) -> None:
    layout = write_oci_layout(workdir / f"layout-{repo.replace('/', '-')}", image, "v1")
    skopeo_copy(f"oci:{layout}:v1", f"docker://{registry_address}/{repo}:v1", *extra)


def _skopeo_inspect(reference: str, *extra: str) -> dict:
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _docker_binaries() -> list[str]:
    found = []
    for candidate in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            if os.path.realpath(candidate) not in {os.path.realpath(f) for f in found}:
                found.append(candidate)
    return found


# -- berth with Debian's docker-registry -----------------------------------------------------

def test_berth_pull_and_push_with_distribution(daemon, distribution, workdir):
    image = make_image([{"etc/hello": b"from distribution\n"}, {"opt/blob": os.urandom(30_000)}])
    _seed(workdir, distribution.address, "seed/app", image)
    ref = f"{distribution.address}/seed/app:v1"
    out = daemon.berth("pull", ref).stdout
    assert "v1: Pulling from seed/app" in out
    assert f"Status: Downloaded newer image for {ref}" in out
    images = daemon.berth("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}").stdout
    assert f"{distribution.address}/seed/app:v1 {image.digest} {image.config_digest[7:19]}" in images
    daemon.berth("tag", ref, f"{distribution.address}/copy/app:v2")
    out = daemon.berth("push", f"{distribution.address}/copy/app:v2").stdout
    assert f"v2: digest: {image.digest} size: {len(image.manifest)}" in out
    assert "Mounted from seed/app" in out
    info = _skopeo_inspect(f"{distribution.address}/copy/app:v2")
    assert info["Digest"] == image.digest
    # and back: rmi everything, pull the pushed copy by digest
    daemon.berth("rmi", ref, f"{distribution.address}/copy/app:v2")
    out = daemon.berth("pull", "-q", f"{distribution.address}/copy/app@{image.digest}").stdout
    assert out.strip() == f"{distribution.address}/copy/app@{image.digest}"


def test_berth_login_pull_push_with_distribution_htpasswd(daemon, distribution_auth, workdir):
    image = make_image([{"etc/secret": b"classified\n"}])
    _seed(workdir, distribution_auth.address, "private/app", image, "--dest-creds", "alice:s3cret")
    ref = f"{distribution_auth.address}/private/app:v1"
    denied = daemon.berth("pull", ref, check=False)
    assert denied.returncode == 1
    assert "no basic auth credentials" in denied.stderr
    assert "pull access denied for" in denied.stderr
    bad = daemon.berth("login", "-u", "alice", "--password-stdin", distribution_auth.address,
                       input="wrong\n", check=False)
    assert bad.returncode == 1
    assert "401 Unauthorized" in bad.stderr
    config_dir = Path(daemon.env["HOME"]) / ".berth"
    env_config = daemon.root.parent / "berth-config"
    login = daemon.berth("--config", str(env_config), "login", "-u", "alice", "--password-stdin",
                         distribution_auth.address, input="s3cret\n")
    assert login.stdout.strip() == "Login Succeeded"
    saved = json.loads((env_config / "config.json").read_text())
    assert saved["auths"][distribution_auth.address]["auth"] == base64.b64encode(b"alice:s3cret").decode()
    assert oct((env_config / "config.json").stat().st_mode & 0o777) == "0o600"
    assert not (config_dir / "config.json").exists() or distribution_auth.address not in (
        config_dir / "config.json").read_text()
    out = daemon.berth("--config", str(env_config), "pull", ref).stdout
    assert "Status: Downloaded newer image" in out
    daemon.berth("tag", ref, f"{distribution_auth.address}/private/copy:v1")
    daemon.berth("--config", str(env_config), "push", f"{distribution_auth.address}/private/copy:v1")
    assert _skopeo_inspect(f"{distribution_auth.address}/private/copy:v1",
                           "--creds", "alice:s3cret")["Digest"] == image.digest
    out = daemon.berth("--config", str(env_config), "logout", distribution_auth.address).stdout
    assert out.strip() == f"Removing login credentials for {distribution_auth.address}"
    assert distribution_auth.address not in json.loads((env_config / "config.json").read_text())["auths"]
    again = daemon.berth("--config", str(env_config), "logout", distribution_auth.address).stdout
    assert again.strip() == f"Not logged in to {distribution_auth.address}"


# -- skopeo with berth's registry server ---------------------------------------------------------

def test_skopeo_copy_to_and_from_berth_registry(berth_registry, workdir):
    image = make_image([{"a/b/c": b"skopeo\n"}, {"d": os.urandom(10_000)}])
    _seed(workdir, berth_registry.address, "sk/app", image)
    info = _skopeo_inspect(f"{berth_registry.address}/sk/app:v1")
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    out = workdir / "copied"
    skopeo_copy(f"docker://{berth_registry.address}/sk/app:v1", f"oci:{out}:copied")
    for digest, data in image.blobs.items():
        assert (out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data
    # registry to registry (skopeo mounts nothing across, it uploads)
    skopeo_copy(f"docker://{berth_registry.address}/sk/app:v1",
                f"docker://{berth_registry.address}/sk/other:v2")
    assert _skopeo_inspect(f"{berth_registry.address}/sk/other:v2")["Digest"] == image.digest
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false",
                           f"docker://{berth_registry.address}/sk/app"], capture_output=True, text=True)
    assert json.loads(tags.stdout)["Tags"] == ["v1"]
    subprocess.run(["skopeo", "delete", "--tls-verify=false",
                    f"docker://{berth_registry.address}/sk/app:v1"], check=True, capture_output=True)
    gone = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                           f"docker://{berth_registry.address}/sk/app:v1"], capture_output=True, text=True)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr


def test_skopeo_with_htpasswd(berth_registry_auth, workdir):
    image = make_image([{"x": b"y"}])
    layout = write_oci_layout(workdir / "layout", image, "v1")
    proc = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                           f"docker://{berth_registry_auth.address}/auth/app:v1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "authentication required" in proc.stderr or "unauthorized" in proc.stderr.lower()
    skopeo_copy(f"oci:{layout}:v1", f"docker://{berth_registry_auth.address}/auth/app:v1",
                "--dest-creds", "alice:s3cret")
    assert _skopeo_inspect(f"{berth_registry_auth.address}/auth/app:v1",
                           "--creds", "bob:hunter2")["Digest"] == image.digest


# -- the docker CLI through berthd ---------------------------------------------------------------------

@pytest.fixture(params=_docker_binaries() or [None], ids=lambda b: os.path.basename(os.path.dirname(b or "x/none")))
def docker_cli(request, daemon):
    if request.param is None:
        pytest.skip("no docker CLI installed")
    binary = request.param

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = daemon.env
        env["DOCKER_CONFIG"] = str(daemon.root.parent / "docker-config")
        env.pop("DOCKER_API_VERSION", None)
        proc = subprocess.run([binary, *args], env=env, input=input, capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc
    return run


def test_docker_pull_and_push_through_berthd(docker_cli, berth_registry, workdir):
    image = make_image([{"etc/motd": b"hi from berth\n"}, {"bin/data": os.urandom(20_000)}])
    _seed(workdir, berth_registry.address, "dk/app", image)
    out = docker_cli("pull", f"{berth_registry.address}/dk/app:v1").stdout
    assert "v1: Pulling from dk/app" in out
    assert f"Digest: {image.digest}" in out
    listing = docker_cli("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout
    assert f"{berth_registry.address}/dk/app v1 {image.digest}" in listing
    missing = docker_cli("pull", f"{berth_registry.address}/dk/app:nope", check=False)
    assert missing.returncode == 1
    assert (f"manifest for {berth_registry.address}/dk/app:nope not found: manifest unknown"
            in missing.stderr)
    docker_cli("tag", f"{berth_registry.address}/dk/app:v1", f"{berth_registry.address}/dk/pushed:v2")
    out = docker_cli("push", f"{berth_registry.address}/dk/pushed:v2").stdout
    assert f"The push refers to repository [{berth_registry.address}/dk/pushed]" in out
    assert f"v2: digest: {image.digest}" in out
    assert _skopeo_inspect(f"{berth_registry.address}/dk/pushed:v2")["Digest"] == image.digest


def test_docker_login_and_private_pull_through_berthd(docker_cli, distribution_auth, workdir):
    image = make_image([{"etc/private": b"p\n"}])
    _seed(workdir, distribution_auth.address, "team/app", image, "--dest-creds", "bob:hunter2")
    ref = f"{distribution_auth.address}/team/app:v1"
    denied = docker_cli("pull", ref, check=False)
    assert denied.returncode != 0
    bad = docker_cli("login", "-u", "bob", "--password-stdin", distribution_auth.address,
                     input="wrong", check=False)
    assert bad.returncode != 0
    assert "401 Unauthorized" in bad.stderr
    out = docker_cli("login", "-u", "bob", "--password-stdin", distribution_auth.address, input="hunter2")
    assert "Login Succeeded" in out.stdout
    docker_cli("pull", ref)
    docker_cli("tag", ref, f"{distribution_auth.address}/team/copy:v1")
    docker_cli("push", f"{distribution_auth.address}/team/copy:v1")
    assert _skopeo_inspect(f"{distribution_auth.address}/team/copy:v1",
                           "--creds", "bob:hunter2")["Digest"] == image.digest


def test_docker_run_pulls_a_missing_image(docker_cli, daemon, berth_registry, workdir, busybox_rootfs):
    _seed(workdir, berth_registry.address, "lib/busybox", _busybox_image(busybox_rootfs))
    ref = f"{berth_registry.address}/lib/busybox:v1"
    proc = docker_cli("run", "--rm", ref, "echo", "pulled and ran", check=False)
    assert f"Unable to find image '{ref}' locally" in proc.stderr
    assert "Status: Downloaded newer image" in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pulled and ran"
    assert docker_cli("images", "-q", ref).stdout.strip()


def test_berth_run_pulls_a_missing_image(daemon, berth_registry, workdir, busybox_rootfs):
    _seed(workdir, berth_registry.address, "lib/busybox", _busybox_image(busybox_rootfs))
    ref = f"{berth_registry.address}/lib/busybox:v1"
    proc = daemon.berth("run", "--rm", ref, "cat", "/etc/hostname", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Status: Downloaded newer image" in proc.stderr
    never = daemon.berth("run", "--rm", "--pull", "never", f"{berth_registry.address}/lib/absent:v1",
                         "true", check=False)
    assert never.returncode == 125


# -- stock dockerd with berth's registry ---------------------------------------------------------------

@pytest.fixture
def stock_dockerd(private_dockerd, berth_registry):
    return private_dockerd("--insecure-registry", berth_registry.address)


def test_stock_dockerd_pushes_to_and_pulls_from_berth_registry(stock_dockerd, berth_registry, workdir):
    image = make_image([{"etc/from": b"berth registry\n"}, {"lib/x": os.urandom(25_000)}])
    # Docker schema2 this time (skopeo converts), the type dockerd pushes itself.
    _seed(workdir, berth_registry.address, "stock/app", image, "--format", "v2s2")
    seeded = _skopeo_inspect(f"{berth_registry.address}/stock/app:v1")
    out = stock_dockerd.docker("pull", f"{berth_registry.address}/stock/app:v1").stdout
    assert f"Digest: {seeded['Digest']}" in out
    stock_dockerd.docker("tag", f"{berth_registry.address}/stock/app:v1",
                         f"{berth_registry.address}/stock/pushed:v2")
    out = stock_dockerd.docker("push", f"{berth_registry.address}/stock/pushed:v2").stdout
    assert "Mounted from stock/app" in out or "Layer already exists" in out or "Pushed" in out
    pushed = _skopeo_inspect(f"{berth_registry.address}/stock/pushed:v2")
    assert f"v2: digest: {pushed['Digest']} size:" in out
    assert len(pushed["Layers"]) == 2
    stock_dockerd.docker("rmi", f"{berth_registry.address}/stock/app:v1",
                         f"{berth_registry.address}/stock/pushed:v2")
    out = stock_dockerd.docker("pull", f"{berth_registry.address}/stock/pushed:v2").stdout
    assert f"Digest: {pushed['Digest']}" in out
