"""The embedded DNS server and each container's /etc/hosts, /etc/hostname and
/etc/resolv.conf."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

from netkit import IMAGE


def _nslookup(net, network: str, name: str, *extra: str) -> subprocess.CompletedProcess:
    return net.berth("run", "--rm", "--network", network, *extra, IMAGE, "nslookup", name,
                     check=False)


def _answers(out: str) -> list[str]:
    """Addresses after the "Name:" line of busybox nslookup."""
    lines = out.splitlines()
    found, seen_name = [], False
    for line in lines:
        if line.startswith("Name:"):
            seen_name = True
        elif seen_name and line.startswith("Address"):
            found.append(line.split()[-1])
    return found


def test_names_aliases_and_short_ids_resolve_on_user_networks(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "dnsnet")
    cid = net.berth("run", "-d", "--name", "svc", "--network", "dnsnet", "--network-alias",
                    "api", "--network-alias", "shared", IMAGE, "sleep", "300").stdout.strip()
    net.berth("run", "-d", "--name", "svc2", "--network", "dnsnet", "--network-alias", "shared",
              IMAGE, "sleep", "300")
    ip, ip2 = net.ip_of("svc", "dnsnet"), net.ip_of("svc2", "dnsnet")
    for name in ("svc", "api", cid[:12], "svc.dnsnet", "SVC"):
        r = _nslookup(net, "dnsnet", name)
        assert r.returncode == 0 and _answers(r.stdout) == [ip], (name, r.stdout, r.stderr)
    # An alias shared by two containers answers with both.
    assert sorted(_answers(_nslookup(net, "dnsnet", "shared").stdout)) == sorted([ip, ip2])
    # The resolver is the network's gateway.
    resolv = net.berth("run", "--rm", "--network", "dnsnet", IMAGE, "cat", "/etc/resolv.conf").stdout
    gateway = str(ipaddress.IPv4Network(net.plan.subnet(0)).network_address + 1)
    assert f"nameserver {gateway}" in resolv.splitlines()
    # Reverse lookups name the container.
    r = _nslookup(net, "dnsnet", ip)
    assert "svc.dnsnet" in r.stdout
    # Renamed: the new name resolves, the old one does not.
    net.berth("rename", "svc", "svcnew")
    assert _answers(_nslookup(net, "dnsnet", "svcnew").stdout) == [ip]
    assert _nslookup(net, "dnsnet", "svc").returncode != 0
    # Stopped: gone from DNS.
    net.berth("stop", "-t", "0", "svc2")
    assert _answers(_nslookup(net, "dnsnet", "shared").stdout) == [ip]


def test_names_do_not_resolve_on_the_default_bridge_or_across_networks(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "one")
    net.berth("network", "create", "--subnet", net.plan.subnet(1), "two")
    net.berth("run", "-d", "--name", "only1", "--network", "one", IMAGE, "sleep", "300")
    net.berth("run", "-d", "--name", "plain", IMAGE, "sleep", "300")
    assert _nslookup(net, "two", "only1").returncode != 0
    r = net.berth("run", "--rm", IMAGE, "ping", "-c1", "-W1", "plain", check=False)
    assert r.returncode != 0


def test_other_names_go_to_the_containers_dns_servers(net, outside):
    upstream = outside.dns_server("10.99.0.7")
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "fwd")
    r = _nslookup(net, "fwd", "www.outside.test", "--dns", outside.ip)
    assert r.returncode == 0 and _answers(r.stdout) == ["10.99.0.7"], r.stdout + r.stderr
    assert upstream.stdout.readline().strip() == "www.outside.test"
    # The upstream's own "no such name" comes back as such.
    r = _nslookup(net, "fwd", "missing.example", "--dns", outside.ip)
    assert r.returncode != 0 and "NXDOMAIN" in (r.stdout + r.stderr)
    # resolv.conf names the gateway and, in a comment, the upstream.
    resolv = net.berth("run", "--rm", "--network", "fwd", "--dns", outside.ip, IMAGE, "cat",
                       "/etc/resolv.conf").stdout
    assert outside.ip in resolv and "options ndots:0" in resolv


def test_other_names_go_to_the_hosts_resolvers_by_default(net, outside):
    outside.dns_server("10.99.0.8")
    net.resolv_conf.write_text(f"nameserver {outside.ip}\nsearch corp.test\n")
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "fwd2")
    r = _nslookup(net, "fwd2", "db.outside.test")
    assert _answers(r.stdout) == ["10.99.0.8"], r.stdout + r.stderr
    # On the default bridge the container asks the host's resolver itself.
    plain = net.berth("run", "--rm", IMAGE, "cat", "/etc/resolv.conf").stdout
    assert plain == f"nameserver {outside.ip}\nsearch corp.test\n"
    r = net.berth("run", "--rm", IMAGE, "nslookup", "db.outside.test", check=False)
    assert _answers(r.stdout) == ["10.99.0.8"], r.stdout + r.stderr


def test_internal_networks_do_not_forward(net, outside):
    upstream = outside.dns_server("10.99.0.9")
    net.berth("network", "create", "--internal", "--subnet", net.plan.subnet(0), "sealed")
    net.berth("run", "-d", "--name", "inside", "--network", "sealed", IMAGE, "sleep", "300")
    assert _answers(_nslookup(net, "sealed", "inside").stdout) == [net.ip_of("inside", "sealed")]
    r = _nslookup(net, "sealed", "x.outside.test", "--dns", outside.ip)
    assert r.returncode != 0
    upstream.kill()
    assert upstream.stdout.read() == ""  # never asked


TCP_QUERY = """
import socket, struct, sys
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\\x03tcp\\x00" + struct.pack("!HH", 1, 1)
s = socket.create_connection((sys.argv[1], 53), timeout=10)
s.sendall(struct.pack("!H", len(q)) + q)
size = struct.unpack("!H", s.recv(2))[0]
data = b""
while len(data) < size:
    data += s.recv(size - len(data))
print(socket.inet_ntoa(data[-4:]))
"""


def test_dns_over_tcp(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "tcpnet")
    net.berth("run", "-d", "--name", "tcp", "--network", "tcpnet", IMAGE, "sleep", "300")
    pid = net.berth("inspect", "-f", "{{.State.Pid}}", "tcp").stdout.strip()
    gateway = str(ipaddress.IPv4Network(net.plan.subnet(0)).network_address + 1)
    out = subprocess.run(["nsenter", "-t", pid, "-n", sys.executable, "-c", TCP_QUERY, gateway],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == net.ip_of("tcp", "tcpnet"), out.stderr


def test_host_files(net):
    gateway = str(ipaddress.IPv4Interface(net.plan.bip).ip)
    args = ["--hostname", "box", "--add-host", "db.local:10.1.2.3", "--add-host",
            "host.docker.internal:host-gateway", "--dns", "10.9.9.9", "--dns-search", "a.test",
            "--dns-option", "ndots:3"]
    net.berth("run", "-d", "--name", "files", *args, IMAGE, "sleep", "300")
    ip = net.ip_of("files", "bridge")
    hosts = net.berth("exec", "files", "cat", "/etc/hosts").stdout
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert "10.1.2.3\tdb.local\n" in hosts
    assert f"{gateway}\thost.docker.internal\n" in hosts
    assert hosts.endswith(f"{ip}\tbox\n")
    assert net.berth("exec", "files", "cat", "/etc/hostname").stdout == "box\n"
    assert net.berth("exec", "files", "hostname").stdout == "box\n"
    resolv = net.berth("exec", "files", "cat", "/etc/resolv.conf").stdout
    assert resolv == "nameserver 10.9.9.9\nsearch a.test\noptions ndots:3\n"
    info = net.berth_json("inspect", "files")[0]
    assert info["HostConfig"]["ExtraHosts"] == ["db.local:10.1.2.3",
                                                "host.docker.internal:host-gateway"]
    # The host's loopback resolvers are dropped (unreachable from a container).
    plain = net.berth("run", "--rm", IMAGE, "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.1" not in plain and "search example.test" in plain
    host_net = net.berth("run", "--rm", "--network", "host", IMAGE, "cat",
                         "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.1" in host_net
    # Bad entries are refused before anything exists.
    r = net.berth("run", "--rm", "--add-host", "bad:not-an-ip", IMAGE, "true", check=False)
    assert r.returncode == 125 and "invalid" in r.stderr.lower()
