"""Published ports: Docker's PortBindings parsed and host ports reserved.

A host port is reserved by binding a socket to it (never listening; DNAT
takes the traffic before it would reach the socket). The bind is what
refuses a port that another program or another container already holds, and
the kernel picks random ports (``-p 80``, ``-P``) from the ephemeral range.
The sockets live as long as the container runs, and are bound again when the
daemon restarts.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Conflict, InvalidArgument

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class PortRequest:
    container_port: int
    proto: str
    host_ip: str        # "" = all addresses (0.0.0.0)
    host_first: int     # 0 = any free port
    host_last: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


@dataclass
class Mapping:
    container_port: int
    proto: str
    host_ip: str
    host_port: int
    sock: socket.socket | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def to_record(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "proto": self.proto,
                "host_ip": self.host_ip, "host_port": self.host_port}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> "Mapping":
        return cls(int(d["container_port"]), d["proto"], d["host_ip"], int(d["host_port"]))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def parse_port_key(key: str) -> tuple[int, str]:
    """``80/tcp`` (or ``80``) -> (80, "tcp")."""
    if not isinstance(key, str):
        raise InvalidArgument(f"invalid port {key!r}")
    number, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid port {key}: protocol {proto!r} is not supported "
                              "(tcp or udp)")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise InvalidArgument(f"invalid port {key}: the port must be a number between 1 and 65535")
    return int(number), proto


def _host_range(text: str, key: str) -> tuple[int, int]:
    text = (text or "").strip()
    if not text:
        return 0, 0
    first, sep, last = text.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise InvalidArgument(f"invalid host port {text!r} for {key}: expected a number or a "
                              "range such as 8000-8010")
    lo, hi = int(first), int(last) if sep else int(first)
    if not 0 <= lo <= 65535 or not 0 <= hi <= 65535 or hi < lo or (lo == 0 and hi != 0):
        raise InvalidArgument(f"invalid host port {text!r} for {key}: ports are 1 to 65535 and "
                              "a range must go up")
    return lo, hi


def _host_ip(text: str, key: str) -> str:
    text = (text or "").strip()
    if text in ("", "0.0.0.0"):
        return ""
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise InvalidArgument(f"invalid host IP {text!r} for port {key}") from None
    if addr.version != 4:
        if addr == ipaddress.IPv6Address("::"):
            return ""
        raise InvalidArgument(f"invalid host IP {text} for port {key}: IPv6 host addresses are "
                              "not supported")
    return str(addr)


def requests(port_bindings: Any, exposed: Any, publish_all: bool) -> list[PortRequest]:
    """What the container asks for: explicit bindings, then -P's random ports
    for exposed ports without one."""
    if port_bindings is None:
        port_bindings = {}
    if not isinstance(port_bindings, dict):
        raise InvalidArgument("invalid PortBindings: expected a JSON object")
    out: list[PortRequest] = []
    seen: set[str] = set()
    for key, bindings in port_bindings.items():
        cport, proto = parse_port_key(key)
        if bindings is None:
            bindings = [{}]
        if not isinstance(bindings, list):
            raise InvalidArgument(f"invalid PortBindings for {key}: expected a list")
        for b in bindings or [{}]:
            if not isinstance(b, dict):
                raise InvalidArgument(f"invalid PortBindings for {key}: expected objects")
            lo, hi = _host_range(str(b.get("HostPort") or ""), key)
            out.append(PortRequest(cport, proto, _host_ip(b.get("HostIp") or "", key), lo, hi))
        seen.add(f"{cport}/{proto}")
    if publish_all:
        for key in sorted((exposed or {}).keys()):
            cport, proto = parse_port_key(key)
            if f"{cport}/{proto}" not in seen:
                out.append(PortRequest(cport, proto, "", 0, 0))
    return out


def _bind(host_ip: str, port: int, proto: str) -> socket.socket:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        s.bind((host_ip or "0.0.0.0", port))
    except OSError:
        s.close()
        raise
    return s


def reserve(req: PortRequest, held: set[tuple[str, int, str]], container_ip: str,
            default_host_ip: str = "") -> Mapping:
    """Bind the host port of one request. ``held`` is what this daemon's other
    containers hold, to tell "allocated by berth" from "used by a program"."""
    host_ip = req.host_ip or default_host_ip
    shown = host_ip or "0.0.0.0"
    if req.host_first == 0:
        try:
            s = _bind(host_ip, 0, req.proto)
        except OSError as exc:
            raise Conflict(f"failed to bind a random host port for {shown}:{req.container_port}/"
                           f"{req.proto}: {exc.strerror}") from None
        return Mapping(req.container_port, req.proto, host_ip, s.getsockname()[1], s)
    last_error: OSError | None = None
    for port in range(req.host_first, req.host_last + 1):
        if _held(held, host_ip, port, req.proto):
            continue
        try:
            s = _bind(host_ip, port, req.proto)
        except OSError as exc:
            last_error = exc
            continue
        return Mapping(req.container_port, req.proto, host_ip, port, s)
    ports = (str(req.host_first) if req.host_first == req.host_last
             else f"{req.host_first}-{req.host_last}")
    if last_error is None:
        raise Conflict(f"Bind for {shown}:{ports} failed: port is already allocated")
    reason = ("address already in use" if last_error.errno == errno.EADDRINUSE
              else (last_error.strerror or str(last_error)).lower())
    raise Conflict(f"failed to bind host port for {shown}:{ports}:{container_ip}:"
                   f"{req.container_port}/{req.proto}: {reason}")


def _held(held: set[tuple[str, int, str]], host_ip: str, port: int, proto: str) -> bool:
    if (host_ip, port, proto) in held:
        return True
    # 0.0.0.0 and a specific address of the same port collide either way.
    if host_ip == "":
        return any(p == port and pr == proto for _, p, pr in held)
    return ("", port, proto) in held


def rebind(m: Mapping) -> None:
    """Take a recorded mapping's port again (daemon restart)."""
    m.sock = _bind(m.host_ip, m.host_port, m.proto)


def settings(mappings: list[Mapping], exposed: Any) -> dict[str, Any]:
    """NetworkSettings.Ports: exposed ports as keys, bindings or null."""
    out: dict[str, Any] = {}
    for key in (exposed or {}):
        try:
            cport, proto = parse_port_key(key)
        except InvalidArgument:
            continue
        out[f"{cport}/{proto}"] = None
    for m in mappings:
        out.setdefault(m.key, None)
        if out[m.key] is None:
            out[m.key] = []
        out[m.key].append({"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
    return out
