"""Unit tests of the network component's pure parts: IPAM decisions, the DNS
codec, host files, port requests, the rendered rule set, options, and the
CLI's IPAM consolidation."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from berth.errors import Conflict, Forbidden, InvalidArgument
from berth.networks import dns, hostfiles, ports
from berth.networks.firewall import BridgeRules, PortRule, chain_rules, render, render_teardown
from berth.networks.ipam import Pool, choose_subnet, parse_subnet
from berth.networks.options import NetworkOptions, parse_bip, parse_pool
from berth_cli.commands.networks import ipam_configs
from berth_cli.errors import CLIError

N = ipaddress.IPv4Network


# -- IPAM ----------------------------------------------------------------------------------

def test_subnet_parsing_refuses_bad_cidrs():
    assert parse_subnet("10.1.0.0/16") == N("10.1.0.0/16")
    for bad, message in (("10.0.0/24", "invalid CIDR address: 10.0.0/24"),
                         ("10.1.2.3", "invalid CIDR address"),
                         ("10.1.0.1/16", "it should be 10.1.0.0/16"),
                         ("fd00::/64", "IPv6"),
                         ("10.0.0.0/31", "at least 4 addresses")):
        with pytest.raises(InvalidArgument, match=message.replace(".", r"\.")):
            parse_subnet(bad)


def test_pool_from_config_checks_gateway_range_and_aux():
    pool = Pool.from_config({"Subnet": "10.5.0.0/24", "IPRange": "10.5.0.128/25",
                             "Gateway": "10.5.0.254", "AuxiliaryAddresses": {"x": "10.5.0.200"}})
    assert pool.to_config() == {"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.254",
                                "IPRange": "10.5.0.128/25",
                                "AuxiliaryAddresses": {"x": "10.5.0.200"}}
    assert Pool.from_config({"Subnet": "10.5.0.0/24"}).gateway == ipaddress.IPv4Address("10.5.0.1")
    with pytest.raises(InvalidArgument, match="no matching subnet for gateway 10.6.0.1"):
        Pool.from_config({"Subnet": "10.5.0.0/24", "Gateway": "10.6.0.1"})
    with pytest.raises(InvalidArgument, match="not within subnet"):
        Pool.from_config({"Subnet": "10.5.0.0/24", "IPRange": "10.5.1.0/25"})
    with pytest.raises(InvalidArgument, match="network or broadcast"):
        Pool.from_config({"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.255"})
    with pytest.raises(InvalidArgument, match="Subnet is required"):
        Pool.from_config({"Gateway": "10.5.0.1"})


def test_pick_skips_reserved_and_taken_round_robin():
    pool = Pool.from_config({"Subnet": "10.5.0.0/29", "AuxiliaryAddresses": {"a": "10.5.0.3"}})
    # .0 network, .1 gateway, .3 aux, .7 broadcast
    first = pool.pick(set())
    assert str(first) == "10.5.0.2"
    # A released address is not handed out again at once.
    second = pool.pick(set(), after=int(first))
    assert str(second) == "10.5.0.4"
    taken = {int(ipaddress.IPv4Address(f"10.5.0.{i}")) for i in (2, 4, 5, 6)}
    with pytest.raises(Forbidden, match="no available IPv4 addresses"):
        pool.pick(taken)
    # Wraps around to a freed low address.
    assert str(pool.pick(taken - {int(ipaddress.IPv4Address("10.5.0.2"))}, after=6 + int(
        ipaddress.IPv4Address("10.5.0.0")))) == "10.5.0.2"


def test_pick_stays_in_ip_range():
    pool = Pool.from_config({"Subnet": "10.5.0.0/24", "IPRange": "10.5.0.240/29"})
    got = set()
    last = None
    for _ in range(8):
        addr = pool.pick({int(a) for a in got}, last)
        assert addr in N("10.5.0.240/29")
        got.add(addr)
        last = int(addr)
    assert len(got) == 8
    with pytest.raises(Forbidden):
        pool.pick({int(a) for a in got})


def test_static_addresses():
    pool = Pool.from_config({"Subnet": "10.5.0.0/24"})
    assert str(pool.check_static("10.5.0.77")) == "10.5.0.77"
    for bad, message in (("10.6.0.2", "does not belong"), ("10.5.0.1", "reserved"),
                         ("10.5.0.255", "reserved"), ("nonsense", "not an IP address")):
        with pytest.raises(InvalidArgument, match=message):
            pool.check_static(bad)


def test_choose_subnet_avoids_everything_in_use():
    pools = [("10.96.0.0/22", 24)]
    assert choose_subnet(pools, []) == N("10.96.0.0/24")
    assert choose_subnet(pools, [N("10.96.0.0/24"), N("10.96.1.128/25")]) == N("10.96.2.0/24")
    # A larger route in use is skipped in one step.
    assert choose_subnet([("10.96.0.0/16", 24)], [N("10.96.0.0/17")]) == N("10.96.128.0/24")
    with pytest.raises(Forbidden, match="non-overlapping"):
        choose_subnet(pools, [N("10.96.0.0/22")])


# -- options ------------------------------------------------------------------------------------

def test_options_are_derived_from_the_root():
    a = NetworkOptions.from_env("/tmp/a", env={})
    b = NetworkOptions.from_env("/tmp/b", env={})
    assert a.tag != b.tag and a.chain != b.chain and a.default_bridge != b.default_bridge
    assert NetworkOptions.from_env("/var/lib/berth", env={}).default_bridge == "berth0"
    assert len(a.veth_prefix) + 6 <= 15  # IFNAMSIZ
    c = NetworkOptions.from_env("/tmp/c", env={"BERTH_BRIDGE_NAME": "bt0",
                                               "BERTH_BIP": "10.9.0.1/24",
                                               "BERTH_DEFAULT_ADDRESS_POOL": "base=10.10.0.0/16,size=26"})
    assert (c.default_bridge, c.bip, c.default_pools) == ("bt0", "10.9.0.1/24",
                                                          (("10.10.0.0/16", 26),))


def test_bip_takes_an_address_or_a_subnet():
    assert str(parse_bip("10.9.0.7/24")) == "10.9.0.7/24"
    assert str(parse_bip("10.9.0.0/24")) == "10.9.0.1/24"


def test_option_errors_are_clear():
    with pytest.raises(InvalidArgument, match="--bip"):
        parse_bip("10.9.0.255/24")
    with pytest.raises(InvalidArgument, match="default address pool"):
        parse_pool("base=10.0.0.0/8")
    with pytest.raises(InvalidArgument, match="bridge name"):
        NetworkOptions.from_env("/tmp/x", env={"BERTH_BRIDGE_NAME": "a-name-far-too-long"})


# -- DNS codec ----------------------------------------------------------------------------------

def _query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + \
        struct.pack("!HH", qtype, 1)


def test_dns_question_and_reply_round_trip():
    q = dns.parse_question(_query("Web.Example."))
    assert (q.id, q.name, q.qtype) == (0x1234, "web.example", 1)
    answer = dns.reply(_query("web"), dns.parse_question(_query("web")), dns.NOERROR,
                       [(dns.TYPE_A, socket.inet_aton("10.1.2.3"))])
    qid, flags, qd, an = struct.unpack("!HHHH", answer[:8])
    assert (qid, qd, an) == (0x1234, 1, 1)
    assert flags & 0x8000 and flags & 0x0100 and flags & 0xF == 0  # QR, RD copied, NOERROR
    assert answer.endswith(socket.inet_aton("10.1.2.3"))


def test_dns_rejects_malformed_messages():
    for bad in (b"", b"\x00" * 11, _query("x")[:14], struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)):
        with pytest.raises(dns.DNSFormatError):
            dns.parse_question(bad)
    looping = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(dns.DNSFormatError):
        dns.parse_question(looping)


def test_dns_ptr_names():
    assert dns.ptr_to_ip("4.3.2.10.in-addr.arpa") == "10.2.3.4"
    assert dns.ptr_to_ip("example.com") is None
    assert dns.reverse_name("10.2.3.4") == "4.3.2.10.in-addr.arpa"


class _Resolver:
    def lookup(self, nid, client, name):
        return ["10.0.0.5", "10.0.0.6"] if name == "web" else None

    def lookup_ptr(self, nid, client, ip):
        return "web.net" if ip == "10.0.0.5" else None

    def upstreams(self, nid, client):
        return []


@pytest.mark.parametrize("qtype,count", [(dns.TYPE_A, 2), (dns.TYPE_AAAA, 0)])
def test_dns_server_answers_known_names_and_nodata(qtype, count):
    import asyncio
    server = dns.DNSServer("n", "127.0.0.1", _Resolver())
    answer = asyncio.run(server.answer(_query("web", qtype), "10.0.0.9", tcp=False))
    _, flags, _, an = struct.unpack("!HHHH", answer[:8])
    assert flags & 0xF == dns.NOERROR and an == count


def test_dns_server_without_upstream_says_servfail():
    import asyncio
    server = dns.DNSServer("n", "127.0.0.1", _Resolver())
    answer = asyncio.run(server.answer(_query("elsewhere.example"), "10.0.0.9", tcp=False))
    assert struct.unpack("!H", answer[2:4])[0] & 0xF == dns.SERVFAIL
    ptr = asyncio.run(server.answer(_query("5.0.0.10.in-addr.arpa", dns.TYPE_PTR), "10.0.0.9",
                                    tcp=False))
    assert ptr.endswith(dns.encode_name("web.net"))


def test_nameservers_from_resolv_conf(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n")
    assert dns.read_nameservers(str(f)) == ["10.0.0.53", "fe80::1"]
    assert dns.read_nameservers(str(tmp_path / "missing")) == []


# -- host files ----------------------------------------------------------------------------------

def test_hosts_file_lines():
    text = hostfiles.hosts("web", "example.test", ["db:10.0.0.7", "gw:host-gateway", "v6=[::1]"],
                           ["10.1.0.2"], "10.1.0.1")
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "10.0.0.7\tdb\n" in text and "10.1.0.1\tgw\n" in text and "::1\tv6\n" in text
    assert text.endswith("10.1.0.2\tweb.example.test web\n")
    with pytest.raises(InvalidArgument, match="host-gateway"):
        hostfiles.hosts("web", "", ["gw:host-gateway"], [], "")
    for bad in ("nocolon", "x:not-an-ip", ":1.2.3.4"):
        with pytest.raises(InvalidArgument):
            hostfiles.parse_extra_host(bad)


def test_resolv_conf_variants():
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.53\nsearch corp.test\noptions edns0\n"
    plain = hostfiles.resolv_conf(host, [], [], [])
    assert plain == "nameserver 10.0.0.53\nsearch corp.test\noptions edns0\n"
    assert "127.0.0.53" in hostfiles.resolv_conf(host, [], [], [], host_network=True)
    only_loopback = hostfiles.resolv_conf("nameserver 127.0.0.1\n", [], [], [])
    assert "nameserver 8.8.8.8" in only_loopback
    custom = hostfiles.resolv_conf(host, ["9.9.9.9"], ["a.test", "b.test"], ["ndots:2"])
    assert custom == "nameserver 9.9.9.9\nsearch a.test b.test\noptions ndots:2\n"
    embedded = hostfiles.resolv_conf(host, ["9.9.9.9"], [], [], embedded="10.7.0.1")
    lines = [l for l in embedded.splitlines() if not l.startswith("#")]
    assert lines == ["nameserver 10.7.0.1", "search corp.test", "options ndots:0 edns0"]
    assert "9.9.9.9" in embedded  # the upstream is named in the comment


# -- port requests -----------------------------------------------------------------------------

def test_port_requests():
    reqs = ports.requests({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                           "53/udp": [{"HostPort": ""}], "9000": None},
                          {"80/tcp": {}, "443/tcp": {}}, publish_all=True)
    keys = [(r.key, r.host_ip, r.host_first, r.host_last) for r in reqs]
    assert ("80/tcp", "127.0.0.1", 8080, 8080) in keys
    assert ("53/udp", "", 0, 0) in keys and ("9000/tcp", "", 0, 0) in keys
    assert ("443/tcp", "", 0, 0) in keys  # -P: exposed without a binding
    assert ports.requests({"80/tcp": [{"HostPort": "8000-8002"}]}, None, False)[0].host_last == 8002
    for bad in ({"80/sctp": None}, {"0/tcp": None}, {"80/tcp": [{"HostPort": "x"}]},
                {"80/tcp": [{"HostPort": "9-3"}]}, {"80/tcp": [{"HostIp": "nope"}]}, ["80"]):
        with pytest.raises(InvalidArgument):
            ports.requests(bad, None, False)


def test_reserve_refuses_a_taken_port_and_picks_random_ports():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    try:
        req = ports.PortRequest(80, "tcp", "127.0.0.1", taken, taken)
        with pytest.raises(Conflict, match="address already in use"):
            ports.reserve(req, set(), "10.0.0.2")
        with pytest.raises(Conflict, match="port is already allocated"):
            ports.reserve(req, {("127.0.0.1", taken, "tcp")}, "10.0.0.2")
        m = ports.reserve(ports.PortRequest(80, "tcp", "127.0.0.1", 0, 0), set(), "10.0.0.2")
        try:
            assert m.host_port > 0 and m.sock is not None
            assert ports.settings([m], {"80/tcp": {}, "81/tcp": {}}) == {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(m.host_port)}], "81/tcp": None}
        finally:
            m.close()
    finally:
        holder.close()


# -- rule set ------------------------------------------------------------------------------------

def test_rendered_rules_isolate_and_publish():
    bridges = [BridgeRules("b1", "10.1.0.0/24", "10.1.0.1", dns=True),
               BridgeRules("b2", "10.2.0.0/24", "10.2.0.1", internal=True)]
    chains = chain_rules("BERTH-abc", bridges, [PortRule("b1", "tcp", "", 8080, "10.1.0.2", 80)])
    text = render(chains, [("filter", "FORWARD", "-j BERTH-abc-FWD", True)])
    lines = text.splitlines()
    assert lines[0] == "*nat" and ":BERTH-abc - [0:0]" in lines
    assert "-A BERTH-abc -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in lines
    assert "-A BERTH-abc-POST -s 10.1.0.0/24 ! -o b1 -j MASQUERADE" in lines
    assert not any("-s 10.2.0.0/24 ! -o b2 -j MASQUERADE" in l for l in lines)  # internal
    assert "-A BERTH-abc-ISO -o b2 -j DROP" in lines
    assert "-A BERTH-abc-FWD -i b2 ! -o b2 -j DROP" in lines
    assert "-I FORWARD 1 -j BERTH-abc-FWD" in lines
    assert any("--dport 53" in l and "-i b1" in l for l in lines)
    assert text.count("COMMIT") == 2
    # A port more or less changes the nat chain only.
    other = chain_rules("BERTH-abc", bridges, [])
    assert {k for k in chains if chains[k] != other[k]} == {("nat", "BERTH-abc")}
    only_nat = render({k: v for k, v in other.items() if chains[k] != v}, [])
    assert only_nat == "*nat\n:BERTH-abc - [0:0]\nCOMMIT\n"
    assert render({}, []) == ""
    down = render_teardown("BERTH-abc", [("nat", "POSTROUTING", "-j BERTH-abc-POST", False)],
                           {"nat": ["BERTH-abc-POST"], "filter": []})
    assert down.splitlines() == ["*nat", "-D POSTROUTING -j BERTH-abc-POST", "-F BERTH-abc-POST",
                                 "-X BERTH-abc-POST", "COMMIT"]


# -- CLI: network create's IPAM flags ------------------------------------------------------------

def test_cli_ipam_consolidation():
    configs = ipam_configs(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.1.0/24"], ["10.1.0.254"],
                           {"printer": "10.1.0.9"})
    assert configs == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.254", "AuxiliaryAddresses": {"printer": "10.1.0.9"}},
        {"Subnet": "10.2.0.0/16", "IPRange": "10.2.1.0/24", "AuxiliaryAddresses": {}}]
    for args, message in (
            ([[], [], ["10.1.0.1"], {}], "every ip-range or gateway must have a corresponding subnet"),
            ([["10.1.0.0/16", "10.1.2.0/24"], [], [], {}], "multiple overlapping subnet"),
            ([["10.1.0.0/16"], [], ["10.3.0.1"], {}], "no matching subnet for gateway 10.3.0.1"),
            ([["10.1.0.0/16"], ["10.3.0.0/24"], [], {}], "no matching subnet for range"),
            ([["10.1.0.0/16"], [], ["10.1.0.1"], {"a": "10.9.0.1"}], "no matching subnet for aux")):
        with pytest.raises(CLIError, match=message):
            ipam_configs(*args)


def test_cli_created_at_like_go(monkeypatch):
    from berth_cli.commands.networks import NetworkRow, go_time
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        assert go_time("2026-11-29T05:48:03.123400000Z") == "2026-11-29 05:48:03.1234 +0000 UTC"
        assert go_time("2026-11-29T07:48:03+02:00") == "2026-11-29 05:48:03 +0000 UTC"
        assert NetworkRow({"Created": "bogus"}, True).CreatedAt() == ""
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_none_pool_hands_out_namespaces_with_only_lo_up():
    # `--network none` takes a namespace made ahead when one is ready (the clone
    # would otherwise make it, on the start's path); never one made on demand.
    import os
    import subprocess
    import time

    from berth.networks.sandbox import SandboxPool, make_bare_sandbox
    pool = SandboxPool("bt", 1, make=make_bare_sandbox)
    try:
        assert pool.try_take() is None   # nothing ready yet: starts the refill
        deadline = time.monotonic() + 10
        while (sandbox := pool.try_take()) is None:
            assert time.monotonic() < deadline, "the pool never filled"
            time.sleep(0.1)  # refills wait for a quiet moment after a take
        try:
            assert os.stat(sandbox.path).st_ino != os.stat("/proc/self/ns/net").st_ino
            links = subprocess.run(["nsenter", f"--net={sandbox.path}", "ip", "-o", "link"],
                                   capture_output=True, text=True, check=True).stdout.splitlines()
            assert len(links) == 1 and links[0].split(":")[1].strip() == "lo"
            assert ",UP" in links[0]
        finally:
            sandbox.close()
    finally:
        pool.close()
