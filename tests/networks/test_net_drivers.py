"""Drivers and commands: none, host, the default bridge, user-defined bridge
networks and their commands, IPAM, container:ID, live connect/disconnect."""

from __future__ import annotations

import ipaddress
import json

from netkit import IMAGE
from netkit import links, sh, wait_for


def _addrs(text: str) -> list[str]:
    """IPv4 addresses of `ip addr` output inside a container (lo excluded)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["inet"] and not fields[1].startswith("127."):
            out.append(fields[1])
    return out


def test_default_bridge_uses_the_daemons_bridge_and_subnet(net):
    out = net.berth("run", "--rm", IMAGE, "ip", "addr").stdout
    (cidr,) = _addrs(out)
    assert ipaddress.IPv4Interface(cidr).network == ipaddress.IPv4Interface(net.plan.bip).network
    route = net.berth("run", "--rm", IMAGE, "ip", "route").stdout
    gateway = str(ipaddress.IPv4Interface(net.plan.bip).ip)
    assert f"default via {gateway}" in route
    # The bridge exists on the host with the gateway address.
    assert net.plan.bridge in links()
    host = sh("ip", "-4", "addr", "show", net.plan.bridge).stdout
    assert net.plan.bip in host
    ls = net.berth("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(line.split()[1:] for line in ls[1:]) == [
        ["bridge", "bridge", "local"], ["host", "host", "local"], ["none", "null", "local"]]
    bridge = net.berth_json("network", "inspect", "bridge")[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": str(ipaddress.IPv4Interface(net.plan.bip).network),
                                         "Gateway": gateway}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == net.plan.bridge


def test_none_and_host_networks(net):
    none = net.berth("run", "--rm", "--network", "none", IMAGE, "ip", "-o", "link").stdout
    assert [l.split(":")[1].strip() for l in none.splitlines()] == ["lo"]
    assert "UP" in none
    host_links = set(links())
    inside = net.berth("run", "--rm", "--network", "host", IMAGE, "ip", "-o", "link").stdout
    names = {l.split(":")[1].strip().split("@")[0] for l in inside.splitlines()}
    assert names & host_links >= {"lo", net.plan.bridge} or names & host_links == names
    assert "eth0" not in names or "eth0" in host_links


def test_user_network_lifecycle(net):
    subnet = net.plan.subnet(0)
    sub = ipaddress.IPv4Network(subnet)
    gateway = str(sub.network_address + 254)
    ip_range = str(list(sub.subnets(new_prefix=25))[1])
    nid = net.berth("network", "create", "--subnet", subnet, "--gateway", gateway,
                    "--ip-range", ip_range, "--label", "team=net", "--internal",
                    "-o", "com.docker.network.bridge.name=" + net.plan.bridge + "u",
                    "appnet").stdout.strip()
    assert len(nid) == 64
    info = net.berth_json("network", "inspect", "appnet")[0]
    assert info["Id"] == nid and info["Driver"] == "bridge" and info["Scope"] == "local"
    assert info["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": gateway, "IPRange": ip_range}]
    assert info["Internal"] is True and info["Labels"] == {"team": "net"}
    bridge = net.plan.bridge + "u"
    assert f"{gateway}/24" in sh("ip", "-4", "addr", "show", bridge).stdout
    ls = net.berth("network", "ls", "--filter", "label=team=net", "--format",
                   "{{.Name}} {{.Internal}} {{.Labels}}").stdout
    assert ls == "appnet true team=net\n"
    assert net.berth("network", "ls", "-q", "--filter", "type=custom").stdout.split() == [nid[:12]]
    # Addresses come from the range.
    out = net.berth("run", "--rm", "--network", "appnet", IMAGE, "ip", "addr").stdout
    (cidr,) = _addrs(out)
    assert ipaddress.IPv4Interface(cidr).ip in ipaddress.IPv4Network(ip_range)
    assert net.berth("network", "rm", "appnet").stdout == "appnet\n"
    wait_for(lambda: bridge not in links(), what=f"{bridge} to go")
    assert "appnet" not in net.berth("network", "ls").stdout


def test_automatic_subnets_come_from_the_pool_and_never_overlap(net):
    a = net.berth("network", "create", "auto1").stdout.strip()
    b = net.berth("network", "create", "auto2").stdout.strip()
    sa = ipaddress.IPv4Network(net.berth_json("network", "inspect", a)[0]["IPAM"]["Config"][0]["Subnet"])
    sb = ipaddress.IPv4Network(net.berth_json("network", "inspect", b)[0]["IPAM"]["Config"][0]["Subnet"])
    pool = ipaddress.IPv4Network(net.plan.pool.split(",")[0].split("=")[1])
    assert sa.subnet_of(pool) and sb.subnet_of(pool) and not sa.overlaps(sb)
    # The pool holds two /24s: a third network has nowhere to go.
    r = net.berth("network", "create", "auto3", check=False)
    assert r.returncode == 1 and "non-overlapping" in r.stderr
    net.berth("network", "rm", "auto1", "auto2")


def test_static_ip_alias_hostname_and_mac(net):
    subnet = ipaddress.IPv4Network(net.plan.subnet(0))
    net.berth("network", "create", "--subnet", str(subnet), "app")
    ip = str(subnet.network_address + 77)
    net.berth("run", "-d", "--name", "web", "--network", "app", "--ip", ip,
              "--network-alias", "www", "--hostname", "webhost",
              "--mac-address", "02:aa:bb:cc:dd:ee", IMAGE, "sleep", "300")
    inside = net.berth("exec", "web", "ip", "addr", "show", "eth0").stdout
    assert f"{ip}/24" in inside and "02:aa:bb:cc:dd:ee" in inside
    assert net.berth("exec", "web", "cat", "/etc/hostname").stdout == "webhost\n"
    assert f"{ip}\twebhost\n" in net.berth("exec", "web", "cat", "/etc/hosts").stdout
    settings = net.berth_json("inspect", "web")[0]["NetworkSettings"]["Networks"]["app"]
    assert settings["IPAddress"] == ip and settings["Aliases"] == ["www"]
    assert settings["MacAddress"] == "02:aa:bb:cc:dd:ee"
    assert settings["IPAMConfig"] == {"IPv4Address": ip}
    # Another container finds it by its alias.
    out = net.berth("run", "--rm", "--network", "app", IMAGE, "ping", "-c1", "www").stdout
    assert f"({ip})" in out
    # The address is taken: no duplicate.
    r = net.berth("run", "--rm", "--network", "app", "--ip", ip, IMAGE, "true", check=False)
    assert r.returncode == 125 and "Address already in use" in r.stderr
    # Outside the subnet, or on the default bridge: refused before anything exists.
    r = net.berth("run", "--rm", "--network", "app", "--ip", "192.0.2.77", IMAGE, "true",
                  check=False)
    assert r.returncode == 125 and "does not belong" in r.stderr
    r = net.berth("run", "--rm", "--ip", str(subnet.network_address + 9), IMAGE, "true",
                  check=False)
    assert r.returncode == 125 and "user defined networks" in r.stderr
    assert net.berth("ps", "-aq").stdout.split() == [net.berth("inspect", "-f", "{{.Id}}", "web")
                                                     .stdout.strip()[:12]]


def test_container_network_mode_shares_the_namespace(net):
    net.berth("run", "-d", "--name", "first", IMAGE, "sleep", "300")
    first = net.ip_of("first", "bridge")
    out = net.berth("run", "--rm", "--network", "container:first", IMAGE, "ip", "addr").stdout
    assert [c.split("/")[0] for c in _addrs(out)] == [first]
    info = net.berth_json("inspect", "first")[0]["NetworkSettings"]
    assert info["IPAddress"] == first and info["Networks"]["bridge"]["IPAddress"] == first
    net.berth("stop", "-t", "0", "first")
    r = net.berth("run", "--rm", "--network", "container:first", IMAGE, "true", check=False)
    assert r.returncode == 125 and "not running" in r.stderr


def test_live_connect_and_disconnect(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "front")
    net.berth("network", "create", "--subnet", net.plan.subnet(1), "back")
    net.berth("run", "-d", "--name", "api", "--network", "front", IMAGE, "sleep", "300")
    net.berth("run", "-d", "--name", "db", "--network", "back", IMAGE, "sleep", "300")
    back_ip = str(ipaddress.IPv4Network(net.plan.subnet(1)).network_address + 50)
    # Not on the same network: db's name is unknown to api.
    r = net.berth("exec", "api", "ping", "-c1", "-W1", "db", check=False)
    assert r.returncode != 0
    net.berth("network", "connect", "--alias", "apiback", "--ip", back_ip, "back", "api")
    inside = net.berth("exec", "api", "ip", "addr").stdout
    assert f"{back_ip}/24" in inside and "eth1" in inside
    assert net.berth("exec", "api", "ping", "-c1", "-W2", "db").returncode == 0
    out = net.berth("exec", "db", "ping", "-c1", "-W2", "apiback").stdout
    assert f"({back_ip})" in out
    containers = net.berth_json("network", "inspect", "back")[0]["Containers"]
    assert sorted(c["Name"] for c in containers.values()) == ["api", "db"]
    assert net.berth_json("inspect", "api")[0]["NetworkSettings"]["Networks"].keys() == {"front",
                                                                                        "back"}
    # Connecting twice is refused.
    r = net.berth("network", "connect", "back", "api", check=False)
    assert r.returncode == 1 and "already exists in network back" in r.stderr
    net.berth("network", "disconnect", "back", "api")
    inside = net.berth("exec", "api", "ip", "addr").stdout
    assert back_ip not in inside and "eth1" not in inside
    r = net.berth("exec", "db", "ping", "-c1", "-W1", "apiback", check=False)
    assert r.returncode != 0
    # The default route stayed with front.
    assert "default via" in net.berth("exec", "api", "ip", "route").stdout
    r = net.berth("network", "disconnect", "back", "api", check=False)
    assert r.returncode == 1 and "is not connected to network back" in r.stderr


def test_connect_a_stopped_container_takes_effect_at_start(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "late")
    net.berth("create", "--name", "later", IMAGE, "ip", "addr")
    net.berth("network", "connect", "late", "later")
    out = net.berth("start", "-a", "later").stdout
    nets = {str(ipaddress.IPv4Interface(c).network) for c in _addrs(out)}
    assert nets == {net.plan.subnet(0), str(ipaddress.IPv4Interface(net.plan.bip).network)}


def test_addresses_are_released_and_persist_across_restarts(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "keep")
    net.berth("run", "-d", "--name", "ka", "--network", "keep", IMAGE, "sleep", "300")
    net.berth("run", "-d", "--name", "kb", "--network", "keep", IMAGE, "sleep", "300")
    ips = {n: net.ip_of(n, "keep") for n in ("ka", "kb")}
    assert ips["ka"] != ips["kb"]
    net.stop()
    net.start()
    assert {n: net.ip_of(n, "keep") for n in ("ka", "kb")} == ips
    # A new container gets neither address; ka's address comes back once ka is gone.
    net.berth("run", "-d", "--name", "kc", "--network", "keep", IMAGE, "sleep", "300")
    assert net.ip_of("kc", "keep") not in ips.values()
    r = net.berth("run", "--rm", "--network", "keep", "--ip", ips["ka"], IMAGE, "true", check=False)
    assert r.returncode == 125 and "Address already in use" in r.stderr
    net.berth("rm", "-f", "ka")
    out = net.berth("run", "--rm", "--network", "keep", "--ip", ips["ka"], IMAGE, "ip", "addr").stdout
    assert f"{ips['ka']}/24" in out
    # Names still resolve after the restart.
    assert net.berth("exec", "kc", "ping", "-c1", "-W2", "kb").returncode == 0
    inspect = json.loads(net.berth("network", "inspect", "keep").stdout)[0]
    assert sorted(c["Name"] for c in inspect["Containers"].values()) == ["kb", "kc"]
