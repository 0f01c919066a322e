"""The network endpoints over raw HTTP: Docker's shapes and status codes."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse

import pytest

from netkit import IMAGE


def _q(filters: dict) -> str:
    return urllib.parse.quote(json.dumps(filters))


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("berth", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@pytest.fixture
def api(net):
    def call(method: str, path: str, body=None):
        conn = _Conn(str(net.socket))
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, "/v1.41" + path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw.strip() else None), resp.headers
        finally:
            conn.close()
    return call


def test_create_inspect_list_delete_shapes(net, api):
    status, body, headers = api("POST", "/networks/create", {
        "Name": "shape", "Driver": "bridge", "CheckDuplicate": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": net.plan.subnet(0)}], "Options": {}},
        "Options": {"com.docker.network.bridge.enable_icc": "true"}, "Labels": {"k": "v"}})
    assert status == 201 and set(body) == {"Id", "Warning"} and body["Warning"] == ""
    assert headers["Content-Type"] == "application/json"
    nid = body["Id"]
    status, info, _ = api("GET", f"/networks/{nid[:8]}")
    assert status == 200
    assert set(info) >= {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM",
                         "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
                         "Containers", "Options", "Labels"}
    assert info["IPAM"] == {"Driver": "default", "Options": None,
                            "Config": [{"Subnet": net.plan.subnet(0),
                                        "Gateway": net.plan.subnet(0).replace(".0/24", ".1")}]}
    assert info["Labels"] == {"k": "v"} and info["Containers"] == {}
    status, listed, _ = api("GET", "/networks?filters=" + _q({"label": {"k=v": True}}))
    assert status == 200 and [n["Name"] for n in listed] == ["shape"]
    status, listed, _ = api("GET", "/networks?filters=" + _q({"type": ["builtin"]}))
    assert sorted(n["Name"] for n in listed) == ["bridge", "host", "none"]
    status, listed, _ = api("GET", "/networks?filters=" + _q({"dangling": ["true"]}))
    assert [n["Name"] for n in listed] == ["shape"]
    status, _, _ = api("DELETE", f"/networks/{nid}")
    assert status == 204
    status, body, _ = api("GET", f"/networks/{nid}")
    assert status == 404 and body == {"message": f"network {nid} not found"}


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "invalid JSON"),
    ({"Driver": "bridge"}, 400, "network name is required"),
    ({"Name": "bad/name"}, 400, "invalid network name"),
    ({"Name": "x1", "IPAM": {"Config": [{"Subnet": "10.0.0/24"}]}}, 400, "invalid CIDR address"),
    ({"Name": "x2", "IPAM": {"Driver": "other"}}, 404, 'plugin "other" not found'),
    ({"Name": "x3", "EnableIPv6": True}, 400, "IPv6"),
    ({"Name": "x4", "Ingress": True}, 403, "swarm"),
    ({"Name": "x5", "Options": ["not", "a", "map"]}, 400, "invalid Options"),
])
def test_bad_create_requests(api, body, status, message):
    got, reply, _ = api("POST", "/networks/create", body)
    assert got == status and message in reply["message"], reply


def test_conflicts(net, api):
    assert api("POST", "/networks/create", {"Name": "twice"})[0] == 201
    status, body, _ = api("POST", "/networks/create", {"Name": "twice"})
    assert status == 409 and body["message"] == "network with name twice already exists"
    status, body, _ = api("POST", "/networks/create",
                          {"Name": "over", "IPAM": {"Config": [{"Subnet": net.plan.bip
                                                                .replace(".1/24", ".0/24")}]}})
    assert status == 403 and "Pool overlaps" in body["message"]
    status, body, _ = api("DELETE", "/networks/host")
    assert status == 403 and "pre-defined" in body["message"]


def test_connect_and_disconnect_bodies(net, api):
    net.berth("run", "-d", "--name", "target", IMAGE, "sleep", "300")
    assert api("POST", "/networks/create", {"Name": "cn"})[0] == 201
    status, body, _ = api("POST", "/networks/cn/connect",
                          {"Container": "target", "EndpointConfig": {"Aliases": ["t1"]}})
    assert status == 200 and body is None
    _, info, _ = api("GET", "/networks/cn")
    (entry,) = info["Containers"].values()
    assert entry["Name"] == "target" and entry["IPv4Address"].endswith("/24")
    status, body, _ = api("POST", "/networks/cn/connect", {"EndpointConfig": {}})
    assert status == 400 and "Container" in body["message"]
    status, body, _ = api("POST", "/networks/nope/connect", {"Container": "target"})
    assert status == 404 and body["message"] == "network nope not found"
    status, body, _ = api("POST", "/networks/cn/disconnect", {"Container": "target", "Force": False})
    assert status == 200
    status, body, _ = api("POST", "/networks/cn/disconnect", {"Container": "target"})
    assert status == 403 and "is not connected" in body["message"]
    status, body, _ = api("POST", "/networks/prune?filters=" + _q({"label": ["none=here"]}))
    assert status == 200 and body == {"NetworksDeleted": None}
    status, body, _ = api("POST", "/networks/prune")
    assert status == 200 and body == {"NetworksDeleted": ["cn"]}


def test_container_inspect_and_list_network_fields(net, api):
    net.berth("run", "-d", "--name", "seen", "-p", "127.0.0.1::80", "--expose", "81", IMAGE,
              "sleep", "300")
    _, info, _ = api("GET", "/containers/seen/json")
    ns = info["NetworkSettings"]
    assert ns["IPAddress"] and ns["Gateway"] == net.plan.bip.split("/")[0]
    assert ns["SandboxKey"].endswith("/ns/net") and ns["IPPrefixLen"] == 24
    bridge = ns["Networks"]["bridge"]
    assert bridge["IPAddress"] == ns["IPAddress"] and len(bridge["EndpointID"]) == 64
    assert set(ns["Ports"]) == {"80/tcp", "81/tcp"} and ns["Ports"]["81/tcp"] is None
    (binding,) = ns["Ports"]["80/tcp"]
    assert binding["HostIp"] == "127.0.0.1" and int(binding["HostPort"]) > 0
    _, listed, _ = api("GET", "/containers/json?filters=" + _q({"network": ["bridge"]}))
    (row,) = listed
    assert {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": int(binding["HostPort"]),
            "Type": "tcp"} in row["Ports"]
    assert {"PrivatePort": 81, "Type": "tcp"} in row["Ports"]
    assert row["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ns["IPAddress"]
    _, listed, _ = api("GET", "/containers/json?filters=" + _q({"network": ["none"]}))
    assert listed == []


def test_network_events(net, api):
    import time
    since = str(time.time() - 1)
    nid = api("POST", "/networks/create", {"Name": "evnet"})[1]["Id"]
    cid = net.berth("run", "-d", "--network", "evnet", IMAGE, "sleep", "300").stdout.strip()
    net.berth("rm", "-f", cid)
    assert api("DELETE", "/networks/evnet")[0] == 204
    until = str(time.time() + 1)
    conn = _Conn(str(net.socket))
    conn.request("GET", "/v1.41/events?since=" + since + "&until=" + until + "&filters="
                 + _q({"type": ["network"]}))
    events = [json.loads(line) for line in conn.getresponse().read().splitlines() if line.strip()]
    conn.close()
    seen = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("container", ""))
            for e in events if e["Actor"]["ID"] == nid]
    assert seen == [("create", nid, ""), ("connect", nid, cid), ("disconnect", nid, cid),
                    ("destroy", nid, "")]
    assert all(e["Actor"]["Attributes"]["name"] == "evnet" and e["Actor"]["Attributes"]["type"]
               == "bridge" for e in events if e["Actor"]["ID"] == nid)
