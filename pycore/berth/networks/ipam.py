"""IP address management for bridge networks (Docker's "default" IPAM driver).

A network has one IPv4 :class:`Pool`: its subnet, the gateway (the bridge's own
address), an optional ``--ip-range`` that dynamic addresses come from, and
auxiliary addresses that are never handed out. Which addresses are taken is
recorded in the metadata database (the endpoints table, unique per network),
so allocations survive a daemon restart; this module only decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from berth.errors import Forbidden, InvalidArgument

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


def parse_subnet(text: str, what: str = "subnet") -> IPv4Network:
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"invalid {what} {text!r}: expected a CIDR such as 10.1.0.0/16")
    try:
        if "/" not in text:
            raise ValueError(text)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {text}") from None
    if net.version != 4:
        raise InvalidArgument(f"invalid {what} {text}: IPv6 networks are not supported")
    if str(net) != text:
        raise InvalidArgument(f"invalid {what} {text}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid {what} {text}: a bridge network needs a subnet of at "
                              "least 4 addresses (/30 or larger)")
    return net


def parse_address(text: str, what: str = "IP address") -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: not an IP address") from None
    if addr.version != 4:
        raise InvalidArgument(f"invalid {what} {text}: IPv6 addresses are not supported")
    return addr


@dataclass(frozen=True)
class Pool:
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    aux: dict[str, IPv4Address] = field(default_factory=dict)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def gateway_cidr(self) -> str:
        return f"{self.gateway}/{self.prefixlen}"

    def reserved(self) -> set[int]:
        return {int(self.subnet.network_address), int(self.subnet.broadcast_address),
                int(self.gateway), *(int(a) for a in self.aux.values())}

    def to_config(self) -> dict:
        """Docker's IPAM.Config entry."""
        out: dict = {"Subnet": str(self.subnet), "Gateway": str(self.gateway)}
        if self.ip_range is not None:
            out["IPRange"] = str(self.ip_range)
        if self.aux:
            out["AuxiliaryAddresses"] = {k: str(v) for k, v in self.aux.items()}
        return out

    @classmethod
    def from_config(cls, entry: dict) -> "Pool":
        """Validate an IPAM.Config entry the way Docker does."""
        if not isinstance(entry, dict):
            raise InvalidArgument("invalid IPAM config: each entry must be a JSON object")
        subnet_text = entry.get("Subnet") or ""
        if not subnet_text:
            raise InvalidArgument("invalid IPAM config: a Subnet is required when an IPRange, "
                                  "Gateway or AuxiliaryAddresses is given")
        subnet = parse_subnet(subnet_text)
        ip_range = None
        if entry.get("IPRange"):
            ip_range = parse_subnet(entry["IPRange"], "ip-range")
            if not ip_range.subnet_of(subnet):
                raise InvalidArgument(f"invalid ip-range {ip_range}: it is not within subnet "
                                      f"{subnet}")
        if entry.get("Gateway"):
            gateway = parse_address(entry["Gateway"], "gateway")
            if gateway not in subnet:
                raise InvalidArgument(f"no matching subnet for gateway {gateway}: it is not "
                                      f"within {subnet}")
            if gateway in (subnet.network_address, subnet.broadcast_address):
                raise InvalidArgument(f"invalid gateway {gateway}: it is the network or broadcast "
                                      f"address of {subnet}")
        else:
            gateway = subnet.network_address + 1
        aux: dict[str, IPv4Address] = {}
        raw_aux = entry.get("AuxiliaryAddresses") or {}
        if not isinstance(raw_aux, dict):
            raise InvalidArgument("invalid IPAM config: AuxiliaryAddresses must be a JSON object")
        for name, text in raw_aux.items():
            addr = parse_address(text, f"auxiliary address {name}")
            if addr not in subnet:
                raise InvalidArgument(f"no matching subnet for aux-address {addr}: it is not "
                                      f"within {subnet}")
            aux[str(name)] = addr
        return cls(subnet, gateway, ip_range, aux)

    # -- addresses -------------------------------------------------------------
    def check_static(self, text: str) -> IPv4Address:
        """A user-chosen address (``--ip``): inside the subnet, not reserved."""
        addr = parse_address(text, "IPv4 address")
        if addr not in self.subnet:
            raise InvalidArgument(f"invalid IPv4 address {addr}: it does not belong to any of "
                                  f"this network's subnets ({self.subnet})")
        if int(addr) in self.reserved():
            raise InvalidArgument(f"invalid IPv4 address {addr}: it is reserved in {self.subnet} "
                                  "(network, broadcast, gateway or auxiliary address)")
        return addr

    def pick(self, taken: set[int], after: int | None = None) -> IPv4Address:
        """The next free dynamic address after ``after`` (round robin through the
        range, as Docker does, so a released address is not reused at once)."""
        span = self.ip_range or self.subnet
        first, last = int(span.network_address), int(span.broadcast_address)
        blocked = taken | self.reserved()
        count = last - first + 1
        start = first if after is None or not first <= after < last else after + 1
        for i in range(count):
            candidate = first + (start - first + i) % count
            if candidate not in blocked:
                return IPv4Address(candidate)
        raise Forbidden(f"no available IPv4 addresses on this network's address pools: "
                        f"{span} is exhausted")


def overlaps(a: IPv4Network, b: IPv4Network) -> bool:
    return a.overlaps(b)


def choose_subnet(pools: Iterable[tuple[str, int]], in_use: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet of the given (base, size) pools that overlaps nothing in use."""
    used = sorted(set(in_use), key=lambda n: (int(n.network_address), n.prefixlen))
    for base, size in pools:
        base_net = IPv4Network(base)
        step = 1 << (32 - size)
        addr = int(base_net.network_address)
        end = int(base_net.broadcast_address)
        while addr <= end:
            candidate = IPv4Network((addr, size))
            clash = next((u for u in used if u.overlaps(candidate)), None)
            if clash is None:
                return candidate
            # Skip past the clash in one step when it is larger than a candidate.
            addr = max(addr + step, (int(clash.broadcast_address) + 1 + step - 1) // step * step)
    raise Forbidden("could not find an available, non-overlapping IPv4 address pool among the "
                    "defaults to assign to the network")
