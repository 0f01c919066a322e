"""Outbound NAT, published ports, isolation and internal networks, with an
"outside" host in a namespace of the test's own."""

from __future__ import annotations

import socket
import subprocess
import sys

from netkit import IMAGE
from netkit import free_port, http_get, sh, wait_for

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]


def _serve(net, name: str, *extra: str) -> None:
    net.berth("run", "-d", "--name", name, *extra, IMAGE, *HTTPD)


def _hostname(net, name: str) -> str:
    return net.berth("inspect", "-f", "{{.Config.Hostname}}", name).stdout.strip()


def test_outbound_traffic_is_masqueraded(net, outside):
    server = outside.peer_server(7000)
    out = net.berth("run", "--rm", IMAGE, "nc", outside.ip, "7000").stdout
    # The outside host sees the host's address, not the container's.
    assert out.strip() == f"peer {outside.host_ip}"
    assert server.stdout.readline().strip() == outside.host_ip
    # The same from a user-defined network.
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "out")
    out = net.berth("run", "--rm", "--network", "out", IMAGE, "nc", outside.ip, "7000").stdout
    assert out.strip() == f"peer {outside.host_ip}"


def test_published_port_from_localhost_and_from_other_hosts(net, outside):
    port = free_port()
    _serve(net, "web", "-p", f"{port}:80")
    expected = _hostname(net, "web") + "\n"
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected
    # Another host reaches it through the host's address (DNAT in PREROUTING).
    out = outside.exec("busybox", "wget", "-qO-", f"http://{outside.host_ip}:{port}/hostname").stdout
    assert out == expected
    # Containers reach it through a host address too, the container itself included.
    gateway = net.plan.bip.split("/")[0]
    for argv in (["exec", "web"], ["run", "--rm", IMAGE]):
        out = net.berth(*argv, "wget", "-qO-", f"http://{gateway}:{port}/hostname").stdout
        assert out == expected, argv
    assert net.berth("port", "web").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    ps = net.berth("ps", "--format", "{{.Ports}}", "--filter", "name=web").stdout
    assert f"0.0.0.0:{port}->80/tcp" in ps
    # Gone with the container: the port is free again.
    net.berth("rm", "-f", "web")
    s = socket.socket()
    s.bind(("0.0.0.0", port))
    s.close()


def test_port_bound_to_one_address(net, outside):
    port = free_port()
    _serve(net, "local", "-p", f"127.0.0.1:{port}:80")
    expected = _hostname(net, "local") + "\n"
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected
    r = outside.exec("busybox", "wget", "-qO-", f"http://{outside.host_ip}:{port}/hostname",
                     check=False)
    assert r.returncode != 0
    assert net.berth("port", "local", "80/tcp").stdout == f"127.0.0.1:{port}\n"


def test_random_ports_and_publish_all(net):
    _serve(net, "rand", "-p", "80", "--expose", "81", "-P")
    ports = net.berth_json("inspect", "rand")[0]["NetworkSettings"]["Ports"]
    assert set(ports) == {"80/tcp", "81/tcp"}
    host_port = int(ports["80/tcp"][0]["HostPort"])
    assert host_port > 0 and int(ports["81/tcp"][0]["HostPort"]) not in (0, host_port)
    expected = _hostname(net, "rand") + "\n"
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", host_port, "/hostname"))) == expected


def test_a_taken_port_is_refused_clearly_and_leaves_nothing(net):
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    port = holder.getsockname()[1]
    try:
        r = net.berth("run", "--rm", "-p", f"{port}:80", IMAGE, "true", check=False)
        assert r.returncode == 125
        assert f"0.0.0.0:{port}" in r.stderr and "address already in use" in r.stderr
        wait_for(lambda: net.berth("ps", "-aq").stdout == "", what="the --rm container to go")
    finally:
        holder.close()
    # Taken by another container of this daemon.
    _serve(net, "owner", "-p", f"{port}:80")
    r = net.berth("run", "-d", "--name", "second", "-p", f"{port}:80", IMAGE, *HTTPD, check=False)
    assert r.returncode == 125 and "port is already allocated" in r.stderr
    state = net.berth("inspect", "-f", "{{.State.Status}} {{.State.Error}}", "second").stdout
    assert state.startswith("created") and "port is already allocated" in state
    # The failed start left no address behind, and the owner still serves.
    assert net.berth_json("inspect", "second")[0]["NetworkSettings"]["Networks"]["bridge"][
        "IPAddress"] == ""
    expected = _hostname(net, "owner") + "\n"
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected


def test_user_networks_are_isolated_from_each_other(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "red")
    net.berth("network", "create", "--subnet", net.plan.subnet(1), "blue")
    _serve(net, "redweb", "--network", "red")
    _serve(net, "blueweb", "--network", "blue")
    red_ip = net.ip_of("redweb", "red")
    ok = net.berth("run", "--rm", "--network", "red", IMAGE, "wget", "-qO-",
                   f"http://{red_ip}/hostname").stdout
    assert ok == _hostname(net, "redweb") + "\n"
    # From blue, red's container is unreachable (by address; its name is unknown there).
    r = net.berth("run", "--rm", "--network", "blue", IMAGE, "nc", "-w", "2", red_ip, "80",
                  check=False, input="")
    assert r.returncode != 0
    r = net.berth("run", "--rm", "--network", "blue", IMAGE, "ping", "-c1", "-W1", red_ip,
                  check=False)
    assert r.returncode != 0 and "0 packets received" in r.stdout
    # Neither from the default bridge.
    r = net.berth("run", "--rm", IMAGE, "ping", "-c1", "-W1", red_ip, check=False)
    assert r.returncode != 0


def test_internal_network_has_no_way_out(net, outside):
    outside.peer_server(7001)
    net.berth("network", "create", "--internal", "--subnet", net.plan.subnet(0), "vault")
    _serve(net, "safe", "--network", "vault")
    r = net.berth("run", "--rm", "--network", "vault", IMAGE, "ping", "-c1", "-W1", outside.ip,
                  check=False)
    assert r.returncode != 0 and "unreachable" in (r.stdout + r.stderr).lower()
    assert "default" not in net.berth("run", "--rm", "--network", "vault", IMAGE, "ip",
                                      "route").stdout
    # Inside the network, containers talk.
    out = net.berth("run", "--rm", "--network", "vault", IMAGE, "wget", "-qO-",
                    "http://safe/hostname").stdout
    assert out == _hostname(net, "safe") + "\n"


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


UDP_LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
print("ready", flush=True)
data, peer = s.recvfrom(100)
print(data.decode().strip(), flush=True)
"""


def test_udp_port(net):
    # Busybox has no UDP server: a listener runs on the host inside the
    # container's network namespace (what the port mapping targets).
    port = free_port()
    net.berth("run", "-d", "--name", "echo", "-p", f"{port}:9999/udp", IMAGE, "sleep", "300")
    info = net.berth_json("inspect", "echo")[0]["NetworkSettings"]["Ports"]
    assert info == {"9999/udp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    pid = net.berth("inspect", "-f", "{{.State.Pid}}", "echo").stdout.strip()
    listener = subprocess.Popen(["nsenter", "-t", pid, "-n", sys.executable, "-c", UDP_LISTENER],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"hello over udp\n", ("127.0.0.1", port))
        s.close()
        assert listener.stdout.readline().strip() == "hello over udp"
    finally:
        listener.kill()
        listener.wait()


def test_rules_are_rebuilt_when_the_daemon_starts(net):
    port = free_port()
    _serve(net, "kept", "-p", f"{port}:80")
    expected = _hostname(net, "kept") + "\n"
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected
    net.stop()  # the container keeps running, and its bridge and rules with it
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected
    # The host's rules are lost behind the daemon's back (a firewall reload, say).
    chain = f"BERTH-{net.tag}"
    for table in ("nat", "filter"):
        for line in sh("iptables-save", "-t", table).stdout.splitlines():
            if line.startswith("-A ") and chain in line and not line.split()[1].startswith(chain):
                sh("iptables", "-t", table, "-D", *line.split()[1:])
    assert _try(lambda: http_get("127.0.0.1", port, "/hostname", timeout=2)) != expected
    net.start()
    assert wait_for(lambda: _try(lambda: http_get("127.0.0.1", port, "/hostname"))) == expected
