"""/_ping, /version, /info and the API-wide rules: version prefix, unknown
routes, wrong methods, malformed query values, error bodies."""

from __future__ import annotations

import os

import pytest


def assert_error(reply, status: int, fragment: str) -> None:
    assert reply.status == status, reply.body
    # Exactly this: the Go client decodes the message only for this value.
    assert reply.headers["Content-Type"] == "application/json"
    message = reply.json()["message"]
    assert fragment in message, message


def test_ping_get_and_head(api):
    reply = api.get("/_ping")
    assert reply.status == 200
    assert reply.body == b"OK"
    for reply in (reply, api.request("HEAD", "/_ping")):
        assert reply.headers["API-Version"] == "1.41"
        assert reply.headers["OSType"] == "linux"
        assert reply.headers["Docker-Experimental"] == "false"
        assert reply.headers["Builder-Version"] == "1"
        assert "no-cache" in reply.headers["Cache-Control"]
        assert reply.headers["Pragma"] == "no-cache"
    assert api.request("HEAD", "/_ping").body == b""


def test_version(api):
    reply = api.get("/version")
    assert reply.status == 200
    body = reply.json()
    assert body["ApiVersion"] == "1.41"
    assert body["MinAPIVersion"] == "1.24"
    assert body["Os"] == "linux"
    assert body["KernelVersion"] == os.uname().release
    assert body["Arch"] in ("amd64", "arm64") or body["Arch"] == os.uname().machine
    engine = [c for c in body["Components"] if c["Name"] == "Engine"]
    assert engine and engine[0]["Version"] == body["Version"]
    assert engine[0]["Details"]["ApiVersion"] == "1.41"


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.40", "/v1.41"])
def test_supported_version_prefixes(api, prefix):
    assert api.get(f"{prefix}/_ping").status == 200
    assert api.get(f"{prefix}/version").json()["ApiVersion"] == "1.41"


def test_version_too_new(api):
    assert_error(api.get("/v1.42/version"), 400,
                 "client version 1.42 is too new. Maximum supported API version is 1.41")


def test_version_too_old(api):
    assert_error(api.get("/v1.12/images/json"), 400,
                 "client version 1.12 is too old. Minimum supported API version is 1.24")


@pytest.mark.parametrize("path", ["/nope", "/v1.41/nope", "/vabc/_ping", "/images", "/v1.41/"])
def test_unknown_route(api, path):
    reply = api.get(path)
    assert reply.status == 404
    assert reply.json() == {"message": "page not found"}


def test_wrong_method(api):
    reply = api.post("/info")
    assert_error(reply, 405, "method POST is not allowed on /info")
    assert_error(api.delete("/v1.41/version"), 405, "DELETE")


def test_every_answer_carries_the_api_headers(api):
    for reply in (api.get("/nope"), api.get("/v1.99/_ping"), api.get("/info")):
        assert reply.headers["Api-Version"] == "1.41"
        assert reply.headers["Ostype"] == "linux"
        assert reply.headers["Server"].startswith("berth/")


def test_info(api, daemon):
    body = api.get("/v1.41/info").json()
    assert body["DockerRootDir"] == str(daemon.root)
    assert body["Driver"] == "overlay2"
    assert body["OSType"] == "linux"
    assert body["Images"] == 0
    assert body["Containers"] == body["ContainersRunning"] == 0
    assert body["NCPU"] == os.cpu_count()
    assert body["MemTotal"] > 0
    assert body["KernelVersion"] == os.uname().release
    assert body["Architecture"] == os.uname().machine
    assert body["CgroupDriver"] == "cgroupfs"
    expected_cgroup = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    assert body["CgroupVersion"] == expected_cgroup
    assert body["ServerVersion"] == api.get("/version").json()["Version"]
    assert body["Swarm"]["LocalNodeState"] == "inactive"
    assert body["ID"]


def test_engine_id_survives_restart(api, daemon):
    first = api.get("/info").json()["ID"]
    daemon.stop()
    daemon.start()
    assert api.get("/info").json()["ID"] == first


@pytest.mark.parametrize("filters, fragment", [
    ("%7Bbad", "invalid filters: '{bad' is not valid JSON"),
    ("%5B%5D", "invalid filters: expected a JSON object"),
    ("%7B%22dangling%22%3A5%7D", "the value of filter 'dangling' must be"),
])
def test_malformed_filters(api, filters, fragment):
    assert_error(api.get(f"/images/json?filters={filters}"), 400, fragment)
    assert_error(api.post(f"/v1.41/images/prune?filters={filters}"), 400, fragment)


def test_malformed_boolean(api):
    assert_error(api.get("/images/json?all=maybe"), 400,
                 "invalid value for query parameter 'all': 'maybe' is not a boolean")
    assert_error(api.delete("/images/busybox?force=sure"), 400, "'force'")


def test_system_df_empty(api):
    body = api.get("/system/df").json()
    assert body["LayersSize"] == 0
    assert body["Images"] == []
    assert body["Containers"] == [] and body["Volumes"] == [] and body["BuildCache"] == []
