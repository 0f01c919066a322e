"""Per-daemon network settings.

Everything that lands in the host's shared namespaces (the default bridge's
interface name and subnet, the pools user-defined networks draw subnets from,
iptables chain names and host-side veth names) is derived from these, so two
daemons with different data roots never share a bridge, a chain or a subnet.

The values come from berthd's flags (:func:`add_arguments`) or, for daemons
started without them, from the environment (``BERTH_BRIDGE_NAME``,
``BERTH_BIP``, ``BERTH_DEFAULT_ADDRESS_POOL``, ``BERTH_RESOLV_CONF``,
``BERTH_HOST_GATEWAY_IP``).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

DEFAULT_ROOT = "/var/lib/berth"
#: The default bridge of the daemon on the default data root (docker0's counterpart).
DEFAULT_BRIDGE_NAME = "berth0"
#: Where the default bridge's subnet is chosen from when --bip is not given: the
#: first /20 that no host route, address or network of ours overlaps. Docker takes
#: 172.17.0.0/16 and then 172.18-31.x and 192.168.x for its own networks, so
#: nothing here collides with docker0 or Docker's user-defined networks.
DEFAULT_BRIDGE_POOL = ("10.80.0.0/12", 20)
#: Docker's --default-address-pool for user-defined networks without --subnet.
DEFAULT_ADDRESS_POOLS = (("10.96.0.0/11", 24),)
HOST_RESOLV_CONF = "/etc/resolv.conf"

_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def check_ifname(name: str, what: str = "bridge name") -> str:
    if not _IFNAME_RE.match(name or "") or name in (".", ".."):
        raise InvalidArgument(f"invalid {what} {name!r}: 1 to 15 letters, digits, '-', '_' or "
                              "'.' (a Linux interface name)")
    return name


def parse_pool(text: str) -> tuple[str, int]:
    """Docker's ``--default-address-pool base=10.96.0.0/11,size=24``."""
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    base, size = fields.get("base", ""), fields.get("size", "")
    try:
        net = ipaddress.IPv4Network(base, strict=True)
        n = int(size)
    except ValueError:
        raise InvalidArgument(f"invalid default address pool {text!r}: expected "
                              "base=A.B.C.D/N,size=M") from None
    if not net.prefixlen <= n <= 30:
        raise InvalidArgument(f"invalid default address pool {text!r}: size must be between "
                              f"{net.prefixlen} and 30")
    return str(net), n


def parse_bip(text: str) -> ipaddress.IPv4Interface:
    """``--bip 10.87.0.1/16``: the default bridge's own address and prefix
    (``--default-subnet 10.87.0.0/16``: the subnet, its first address the bridge's)."""
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise InvalidArgument(f"invalid --bip {text!r}: expected an IPv4 address with a prefix "
                              "length, such as 10.87.0.1/16") from None
    if iface.ip == iface.network.network_address and iface.network.prefixlen <= 30:
        iface = ipaddress.IPv4Interface(f"{iface.ip + 1}/{iface.network.prefixlen}")
    if iface.network.prefixlen > 30 or iface.ip == iface.network.broadcast_address:
        raise InvalidArgument(f"invalid --bip {text!r}: the address must be a host address of a "
                              "subnet of at least 4 addresses")
    return iface


@dataclass(frozen=True)
class NetworkOptions:
    root: str = DEFAULT_ROOT
    bridge_name: str = ""
    bip: str = ""
    default_pools: tuple[tuple[str, int], ...] = DEFAULT_ADDRESS_POOLS
    resolv_conf: str = HOST_RESOLV_CONF
    host_gateway_ip: str = ""
    #: Network namespaces with a veth pair kept ready for the next container.
    pool_size: int = 2

    @property
    def tag(self) -> str:
        """Six hex digits naming this daemon's host objects (chains, veths)."""
        return hashlib.sha256(os.path.abspath(self.root).encode()).hexdigest()[:6]

    @property
    def default_bridge(self) -> str:
        if self.bridge_name:
            return self.bridge_name
        if os.path.abspath(self.root) == DEFAULT_ROOT:
            return DEFAULT_BRIDGE_NAME
        return f"berth-{self.tag}"

    @property
    def chain(self) -> str:
        """Prefix of this daemon's iptables chains (``BERTH-<tag>``, ``-FWD`` ...)."""
        return f"BERTH-{self.tag}"

    @property
    def veth_prefix(self) -> str:
        """Host-side veth names: the prefix plus 6 random hex digits (14 characters)."""
        return f"vb{self.tag}"

    def check(self) -> "NetworkOptions":
        check_ifname(self.default_bridge)
        if self.bip:
            parse_bip(self.bip)
        for base, size in self.default_pools:
            parse_pool(f"base={base},size={size}")
        if self.host_gateway_ip:
            try:
                ipaddress.IPv4Address(self.host_gateway_ip)
            except ValueError:
                raise InvalidArgument(f"invalid --host-gateway-ip {self.host_gateway_ip!r}: "
                                      "not an IPv4 address") from None
        return self

    @classmethod
    def from_env(cls, root: str, env: dict[str, str] | None = None, **overrides) -> "NetworkOptions":
        env = os.environ if env is None else env
        pools = env.get("BERTH_DEFAULT_ADDRESS_POOL", "")
        values = dict(
            root=os.path.abspath(root),
            bridge_name=env.get("BERTH_BRIDGE_NAME", ""),
            bip=env.get("BERTH_BIP", ""),
            default_pools=tuple(parse_pool(p) for p in pools.split(";") if p.strip())
            or DEFAULT_ADDRESS_POOLS,
            resolv_conf=env.get("BERTH_RESOLV_CONF", "") or HOST_RESOLV_CONF,
            host_gateway_ip=env.get("BERTH_HOST_GATEWAY_IP", ""),
        )
        values.update({k: v for k, v in overrides.items() if v not in (None, "", (), [])})
        return cls(**values).check()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """berthd's network flags (dockerd's names)."""
    parser.add_argument("-b", "--bridge", "--bridge-name", dest="bridge_name", metavar="NAME",
                        help="interface name of the default bridge network "
                             "(default berth0, or berth-<hash of the root> for other roots)")
    parser.add_argument("--bip", "--default-subnet", dest="bip", metavar="CIDR",
                        help="address and prefix of the default bridge, e.g. 10.87.0.1/16 "
                             "(default: the first free /20 in 10.80.0.0/12)")
    parser.add_argument("--default-address-pool", dest="default_address_pool", action="append",
                        default=[], metavar="base=CIDR,size=N",
                        help="subnets for user-defined networks created without --subnet "
                             "(default base=10.96.0.0/11,size=24)")
    parser.add_argument("--host-gateway-ip", dest="host_gateway_ip", metavar="IP",
                        help="address --add-host NAME:host-gateway stands for "
                             "(default: the default bridge's address)")
    parser.add_argument("--resolv-conf", dest="resolv_conf", metavar="PATH",
                        help="resolv.conf with the upstream resolvers (default /etc/resolv.conf)")


def from_args(root: str, args: argparse.Namespace) -> NetworkOptions:
    pools = tuple(parse_pool(p) for p in getattr(args, "default_address_pool", None) or ())
    return NetworkOptions.from_env(
        root, bridge_name=getattr(args, "bridge_name", None), bip=getattr(args, "bip", None),
        default_pools=pools, resolv_conf=getattr(args, "resolv_conf", None),
        host_gateway_ip=getattr(args, "host_gateway_ip", None))
