"""The embedded DNS server of user-defined networks.

One UDP and one TCP listener per user-defined network, on the network's
gateway address, port 53 (the address containers find in their
resolv.conf). A query is answered from the containers of the networks the
asking container is attached to (names, aliases, short IDs); anything else is
forwarded, unchanged, to the asking container's upstream resolvers (its
``--dns`` servers, else the host's), and the upstream's answer is relayed
back. Listening on the gateway instead of 127.0.0.11 inside each container
(Docker's way) needs no per-container iptables rules, so it costs nothing at
``run``; the daemon itself is in the host's namespace, so a host resolver on
127.0.0.53 works as an upstream too.

The message codec is the small part of RFC 1035 this needs: one question,
A/AAAA/PTR answers, and the header fields of a reply.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("berth.networks.dns")

TYPE_A, TYPE_PTR, TYPE_AAAA, TYPE_ANY = 1, 12, 28, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 600
UPSTREAM_TIMEOUT = 2.0
MAX_UDP = 512


class DNSFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    id: int
    flags: int
    name: str          # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int           # offset just past the question


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    jumps = 0
    end = None
    while True:
        if offset >= len(data):
            raise DNSFormatError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DNSFormatError("truncated compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            if jumps > 16:
                raise DNSFormatError("compression loop")
            continue
        if length & 0xC0:
            raise DNSFormatError("bad label type")
        offset += 1
        if length == 0:
            break
        label = data[offset:offset + length]
        if len(label) != length:
            raise DNSFormatError("label runs past the message")
        labels.append(label.decode("ascii", errors="replace"))
        offset += length
    return ".".join(labels).lower(), (end if end is not None else offset)


def parse_question(data: bytes) -> Question:
    if len(data) < 12:
        raise DNSFormatError("message shorter than a header")
    qid, flags, qdcount = struct.unpack_from("!HHH", data, 0)
    if flags & 0x8000:
        raise DNSFormatError("not a query")
    if qdcount != 1:
        raise DNSFormatError(f"{qdcount} questions")
    name, offset = _read_name(data, 12)
    if offset + 4 > len(data):
        raise DNSFormatError("question runs past the message")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Question(qid, flags, name, qtype, qclass, offset + 4)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("ascii", errors="replace")[:63]
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def reply(query: bytes, q: Question, rcode: int, answers: list[tuple[int, bytes]] = (),
          authoritative: bool = True) -> bytes:
    """A reply to ``query``: its question echoed, then the answers (type, rdata),
    each owned by the question's name (a pointer to offset 12)."""
    opcode_rd = q.flags & 0x7900  # opcode and RD
    flags = 0x8000 | opcode_rd | 0x0080 | (0x0400 if authoritative else 0) | (rcode & 0xF)
    header = struct.pack("!HHHHHH", q.id, flags, 1, len(answers), 0, 0)
    body = query[12:q.end]
    for rtype, rdata in answers:
        body += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL, len(rdata)) + rdata
    return header + body


def error_reply(query: bytes, rcode: int) -> bytes | None:
    """A bare error reply for a query we could not parse (header only)."""
    if len(query) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", query, 0)
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def ptr_to_ip(name: str) -> str | None:
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


class Resolver(Protocol):
    """What the server asks the network service (called on the event loop)."""

    def lookup(self, network_id: str, client_ip: str, name: str) -> list[str] | None:
        """Addresses of ``name`` as seen by the container at client_ip (None: unknown)."""

    def lookup_ptr(self, network_id: str, client_ip: str, ip: str) -> str | None:
        """The name of a container address (None: not ours)."""

    def upstreams(self, network_id: str, client_ip: str) -> list[str]:
        """Where to forward other names ([] = answer SERVFAIL)."""


class DNSServer:
    """The listeners of one network."""

    def __init__(self, network_id: str, address: str, resolver: Resolver):
        self.network_id = network_id
        self.address = address
        self.resolver = resolver
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((self.address, 53))
        except OSError:
            udp.close()
            raise
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UDPProtocol(self), sock=udp)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((self.address, 53))
            tcp.listen(64)
            tcp.setblocking(False)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except OSError:
            tcp.close()
            self._udp.close()
            self._udp = None
            raise

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None

    # -- answering -----------------------------------------------------------------
    async def answer(self, query: bytes, client_ip: str, tcp: bool) -> bytes | None:
        try:
            q = parse_question(query)
        except DNSFormatError:
            return error_reply(query, FORMERR)
        if q.qclass != CLASS_IN:
            return await self._forward(query, q, client_ip, tcp)
        if q.qtype == TYPE_PTR:
            ip = ptr_to_ip(q.name)
            if ip is not None:
                name = self.resolver.lookup_ptr(self.network_id, client_ip, ip)
                if name is not None:
                    return reply(query, q, NOERROR, [(TYPE_PTR, encode_name(name))])
            return await self._forward(query, q, client_ip, tcp)
        addresses = self.resolver.lookup(self.network_id, client_ip, q.name)
        if addresses is None:
            return await self._forward(query, q, client_ip, tcp)
        answers: list[tuple[int, bytes]] = []
        if q.qtype in (TYPE_A, TYPE_ANY):
            shuffled = list(addresses)
            random.shuffle(shuffled)  # round robin between containers sharing an alias
            answers = [(TYPE_A, ipaddress.IPv4Address(a).packed) for a in shuffled]
        # A name of ours with no record of the asked type: NODATA, never forwarded
        # (an upstream could answer with someone else's address).
        return reply(query, q, NOERROR, answers)

    async def _forward(self, query: bytes, q: Question, client_ip: str, tcp: bool) -> bytes:
        upstreams = self.resolver.upstreams(self.network_id, client_ip)
        for server in upstreams:
            try:
                if tcp:
                    answer = await asyncio.wait_for(_ask_tcp(server, query), UPSTREAM_TIMEOUT)
                else:
                    answer = await asyncio.wait_for(_ask_udp(server, query), UPSTREAM_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                log.debug("upstream %s did not answer %s: %s", server, q.name, exc)
                continue
            if len(answer) >= 2 and answer[:2] == query[:2]:
                return answer
        return reply(query, q, SERVFAIL, authoritative=False)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                try:
                    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))[0]
                    query = await asyncio.wait_for(reader.readexactly(size), 30)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                answer = await self.answer(query, peer[0], tcp=True)
                if answer is None:
                    return
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except Exception:  # noqa: BLE001 - one client must not take the server down
            log.exception("DNS over TCP on %s failed", self.address)
        finally:
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        asyncio.get_running_loop().create_task(self._answer(data, addr))

    async def _answer(self, data: bytes, addr) -> None:
        try:
            answer = await self.server.answer(data, addr[0], tcp=False)
        except Exception:  # noqa: BLE001
            log.exception("DNS query from %s failed", addr[0])
            answer = error_reply(data, SERVFAIL)
        if answer is None or self.transport is None:
            return
        if len(answer) > MAX_UDP and len(data) <= MAX_UDP:
            answer = _truncated(answer)
        self.transport.sendto(answer, addr)

    def error_received(self, exc) -> None:
        log.debug("DNS socket error: %s", exc)


def _truncated(answer: bytes) -> bytes:
    """Header and question only, with TC set: the client retries over TCP."""
    try:
        q = parse_question(answer[:2] + b"\x00\x00" + answer[4:])
    except DNSFormatError:
        return answer[:12]
    qid, flags = struct.unpack_from("!HH", answer, 0)
    return struct.pack("!HHHHHH", qid, flags | 0x0200, 1, 0, 0, 0) + answer[12:q.end]


def _family(server: str) -> int:
    return socket.AF_INET6 if ":" in server else socket.AF_INET


async def _ask_udp(server: str, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    s = socket.socket(_family(server), socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    s.setblocking(False)
    try:
        await loop.sock_connect(s, (server, 53))
        await loop.sock_sendall(s, query)
        while True:
            data = await loop.sock_recv(s, 65535)
            if data[:2] == query[:2]:
                return data
    finally:
        s.close()


async def _ask_tcp(server: str, query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server, 53)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()


def read_nameservers(path: str) -> list[str]:
    """The ``nameserver`` lines of a resolv.conf (missing file: none)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    try:
                        out.append(str(ipaddress.ip_address(fields[1].split("%", 1)[0])))
                    except ValueError:
                        continue
    except OSError:
        pass
    return out

