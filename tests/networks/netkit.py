"""Helpers of the network tests: a daemon with the test's own bridge, subnets
and resolv.conf; an "outside" host in a namespace of the test's own (a TCP
server that reports its peers, a DNS server); and the leftovers check
(interfaces, namespaces, addresses, iptables rules)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The busybox image every network test imports.
IMAGE = "bb:latest"


def _root_daemon_class():
    # The repository's tests/conftest.py, loaded by path: a bare `import conftest`
    # would find whichever conftest directory pytest put first on sys.path.
    import importlib.util
    name = "berth_tests_root_conftest"
    if name in sys.modules:
        return sys.modules[name].Daemon
    path = HERE.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.Daemon


Daemon = _root_daemon_class()


def sh(*argv: str, check: bool = True, input: str | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy (no timing is asserted: the deadline only
    bounds a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = []
    for line in sh("ip", "-4", "-o", "route", "show", "table", "all", check=False).stdout.splitlines():
        dst = line.split()[0] if line.split() else ""
        if dst in ("default", "local", "broadcast", "unreachable"):
            dst = line.split()[1] if dst in ("local", "broadcast") and len(line.split()) > 1 else ""
        try:
            out.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue
    return [n for n in out if n.prefixlen > 0]


@dataclass
class Plan:
    """The test's own names and a /21 of address space, split by purpose."""

    bridge: str          # the default bridge's interface name
    block: ipaddress.IPv4Network

    def sub(self, index: int) -> ipaddress.IPv4Network:
        return list(self.block.subnets(new_prefix=24))[index]

    @property
    def bip(self) -> str:                       # default bridge: x.x.b+0.1/24
        return f"{self.sub(0).network_address + 1}/24"

    @property
    def pool(self) -> str:                      # automatic subnets: b+2 .. b+3
        return f"base={self.block.network_address + 512}/23,size=24"

    def subnet(self, n: int = 0) -> str:        # explicit subnets: b+1, b+5, b+6, b+7
        return str(self.sub((1, 5, 6, 7)[n]))

    @property
    def outside(self) -> ipaddress.IPv4Network:  # the outside link: b+4, a /30
        return ipaddress.IPv4Network(f"{self.sub(4).network_address}/30")


def new_plan() -> Plan:
    used = _host_routes()
    for _ in range(200):
        a = random.randint(200, 239)
        b = random.randrange(0, 256, 8)
        block = ipaddress.IPv4Network(f"10.{a}.{b}.0/21")
        if not any(block.overlaps(u) for u in used):
            return Plan(bridge="bt" + secrets.token_hex(3), block=block)
    raise RuntimeError("no free /21 in 10.200-239.x.x for the test")


def tag_of(root: Path) -> str:
    return hashlib.sha256(os.path.abspath(str(root)).encode()).hexdigest()[:6]


class NetDaemon(Daemon):
    """A berthd whose network settings are the test's own (see Plan)."""

    plan: Plan
    resolv_conf: Path

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update(BERTH_BRIDGE_NAME=self.plan.bridge, BERTH_BIP=self.plan.bip,
                   BERTH_DEFAULT_ADDRESS_POOL=self.plan.pool,
                   BERTH_RESOLV_CONF=str(self.resolv_conf))
        return env

    @property
    def tag(self) -> str:
        return tag_of(self.root)

    def berth_json(self, *args: str):
        return json.loads(self.berth(*args).stdout)

    def ip_of(self, container: str, network: str) -> str:
        out = self.berth("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                         container).stdout.strip()
        assert out, f"{container} has no address on {network}"
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None


# -- leftovers ------------------------------------------------------------------------------

def links() -> dict[str, dict]:
    return {l["ifname"]: l for l in json.loads(sh("ip", "-j", "link", "show").stdout)}


def our_links(d: NetDaemon, bridges: set[str]) -> list[str]:
    prefix = f"vb{d.tag}"
    return sorted(name for name in links() if name.startswith(prefix) or name in bridges
                  or name == d.plan.bridge)


def our_rules(d: NetDaemon) -> list[str]:
    chain = f"BERTH-{d.tag}"
    text = sh("iptables-save").stdout
    return [line for line in text.splitlines() if chain in line]


def our_addresses(d: NetDaemon) -> list[str]:
    out = []
    for iface in json.loads(sh("ip", "-j", "-4", "addr", "show").stdout):
        for a in iface.get("addr_info", []):
            try:
                if ipaddress.IPv4Address(a["local"]) in d.plan.block:
                    out.append(f"{iface['ifname']}:{a['local']}")
            except (KeyError, ValueError):
                continue
    return out


def leftovers(d: NetDaemon, bridges: set[str]) -> dict[str, list[str]]:
    found = {"links": our_links(d, bridges), "rules": our_rules(d), "addresses": our_addresses(d),
             "netns": [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith("bto")]}
    return {k: v for k, v in found.items() if v}


def force_clean(d: NetDaemon, bridges: set[str]) -> None:
    # Its cgroup parent as well: release_root finds parents only for roots that
    # still exist, and a test may have deleted this one.
    from berth.cgroups import CgroupManager, parent_name
    sys.modules["berth_tests_root_conftest"]._remove_cgroups(
        CgroupManager(parent_name(str(d.root))))
    for name in our_links(d, bridges):
        sh("ip", "link", "del", name, check=False)
    chain = f"BERTH-{d.tag}"
    for table in ("nat", "filter"):
        for line in sh("iptables-save", "-t", table).stdout.splitlines():
            if line.startswith("-A ") and chain in line and not line.split()[1].startswith(chain):
                sh("iptables", "-t", table, "-D", *line.split()[1:], check=False)
        for line in sh("iptables-save", "-t", table).stdout.splitlines():
            if line.startswith(f":{chain}"):
                sh("iptables", "-t", table, "-F", line[1:].split()[0], check=False)
                sh("iptables", "-t", table, "-X", line[1:].split()[0], check=False)


# -- the outside host -------------------------------------------------------------------------

PEER_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        c.sendall(("peer " + peer[0] + "\\n").encode())
        print(peer[0], flush=True)
        c.close()
""")

DNS_SERVER = textwrap.dedent("""
    # Answers NAME.outside.test with the address in argv[2]; NXDOMAIN otherwise.
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 53))
    answer_ip = socket.inet_aton(sys.argv[2])
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        i, labels = 12, []
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode()); i += 1 + data[i]
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        question = data[12:i + 5]
        name = ".".join(labels).lower()
        print(name, flush=True)
        if name.endswith("outside.test"):
            ans = [struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer_ip] if qtype == 1 else []
            rcode = 0
        else:
            ans, rcode = [], 3
        header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(ans), 0, 0)
        s.sendto(header + question + b"".join(ans), peer)
""")


class Outside:
    """A host beyond the daemon's machine: a namespace with a veth to the host,
    ``host_ip`` on the host's side and ``ip`` on its own."""

    def __init__(self, plan: Plan):
        self.name = "bto" + secrets.token_hex(3)
        self.host_if = self.name + "h"
        hosts = list(plan.outside.hosts())
        self.host_ip, self.ip = str(hosts[0]), str(hosts[1])
        self.procs: list[subprocess.Popen] = []
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
           "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        sh("ip", "-n", self.name, "addr", "add", f"{self.ip}/30", "dev", "eth0")
        sh("ip", "-n", self.name, "link", "set", "eth0", "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def run_python(self, source: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-u", "-c",
                                 source, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"the outside server did not start: {line!r} "
                                 f"{proc.stderr.read()}")
        return proc

    def peer_server(self, port: int) -> subprocess.Popen:
        return self.run_python(PEER_SERVER, str(port))

    def dns_server(self, answer: str) -> subprocess.Popen:
        return self.run_python(DNS_SERVER, self.ip, answer)

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "link", "del", self.host_if, check=False)


def http_get(host: str, port: int, path: str = "/", timeout: float = 10) -> str:
    """A plain HTTP/1.0 GET from the host (what a user's browser or curl does)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), head[:100]
    return body.decode(errors="replace")


def free_port() -> int:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    port = s.getsockname()[1]
    s.close()
    return port
