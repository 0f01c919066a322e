"""Network and endpoint records, kept in the metadata database (component
``networks``).

An *endpoint* is a container's membership of a network: created with the
container (or by ``network connect``), removed with it (or by
``disconnect``). While the container runs the endpoint is *active*: it holds
an address (the ``ip`` column, unique per network, so two endpoints never get
the same address, and allocations outlive a daemon restart), a MAC, the
interface names on both sides and, on the network that carries the default
route, the published ports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from berth.images.timefmt import format_rfc3339nano

from .ipam import Pool, parse_address, parse_subnet

MIGRATIONS = [
    """
    CREATE TABLE networks (
        id          TEXT PRIMARY KEY,           -- 64 hex
        name        TEXT NOT NULL UNIQUE,
        driver      TEXT NOT NULL,              -- bridge | host | null
        created_ns  INTEGER NOT NULL,
        record      TEXT NOT NULL               -- the rest, JSON (Network.to_record)
    );
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL,
        network_id   TEXT NOT NULL,
        seq          INTEGER NOT NULL,          -- order of attachment (eth0, eth1 ...)
        ip           TEXT,                      -- set while active
        record       TEXT NOT NULL,             -- JSON (Endpoint.to_record)
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, ip)
    );
    CREATE INDEX endpoints_network ON endpoints(network_id);
    """,
]

BRIDGE, HOST, NULL = "bridge", "host", "null"
PREDEFINED = ("bridge", "host", "none")

#: Options of the bridge driver that berth honours (others are kept and shown).
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return str(value).lower() in ("1", "t", "true", "yes", "on")


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created_ns: int
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_options: dict[str, str] = field(default_factory=dict)
    pool_config: dict[str, Any] | None = None    # IPAM.Config entry (bridge)
    user_pool: bool = False                      # subnet given by the user
    bridge: str = ""                             # interface name (bridge)

    @property
    def builtin(self) -> bool:
        return self.name in PREDEFINED

    @property
    def is_bridge(self) -> bool:
        return self.driver == BRIDGE

    @property
    def default_bridge(self) -> bool:
        return self.name == "bridge"

    @property
    def user_defined(self) -> bool:
        """Docker's "user-defined network": names, aliases and DNS work here."""
        return self.is_bridge and not self.default_bridge

    @property
    def pool(self) -> Pool:
        assert self.pool_config is not None, f"network {self.name} has no address pool"
        cached = getattr(self, "_pool", None)
        if cached is None:
            cached = Pool.from_config(self.pool_config)
            object.__setattr__(self, "_pool", cached)
        return cached

    @property
    def masquerade(self) -> bool:
        return _truthy(self.options.get(OPT_MASQUERADE), True)

    @property
    def icc(self) -> bool:
        return _truthy(self.options.get(OPT_ICC), True)

    @property
    def mtu(self) -> int:
        try:
            return int(self.options.get(OPT_MTU) or 1500)
        except ValueError:
            return 1500

    @property
    def host_binding_ip(self) -> str:
        value = self.options.get(OPT_HOST_BINDING) or ""
        return "" if value in ("", "0.0.0.0") else value

    _RECORD = ("internal", "attachable", "options", "labels", "ipam_options", "pool_config",
               "user_pool", "bridge")

    def to_record(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self._RECORD})

    @classmethod
    def from_row(cls, row) -> "Network":
        data = json.loads(row["record"])
        return cls(id=row["id"], name=row["name"], driver=row["driver"],
                   created_ns=row["created_ns"], **{k: data[k] for k in cls._RECORD if k in data})

    def inspect(self, containers: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's Network object."""
        ipam_config = [dict(self.pool_config)] if self.pool_config else []
        options = dict(self.options)
        if self.default_bridge:
            options.setdefault(OPT_DEFAULT_BRIDGE, "true")
            options.setdefault(OPT_BRIDGE_NAME, self.bridge)
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": format_rfc3339nano(self.created_ns),
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": self.ipam_options or None,
                     "Config": ipam_config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers if containers is not None else {},
            "Options": options,
            "Labels": dict(self.labels),
        }


@dataclass
class Endpoint:
    container_id: str
    network_id: str
    seq: int = 0
    #: What the user asked for (EndpointSettings).
    aliases: list[str] = field(default_factory=list)
    ipv4_request: str = ""
    mac_request: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    #: Set while active.
    endpoint_id: str = ""
    ip: str = ""
    mac: str = ""
    ifname: str = ""          # inside the container (eth0 ...)
    veth: str = ""            # host side
    ports: list[dict[str, Any]] = field(default_factory=list)   # ports.Mapping records
    gateway_for_container: bool = False

    @property
    def active(self) -> bool:
        return bool(self.ip) or bool(self.endpoint_id)

    _RECORD = ("aliases", "ipv4_request", "mac_request", "driver_opts", "endpoint_id", "mac",
               "ifname", "veth", "ports", "gateway_for_container")

    def to_record(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self._RECORD})

    @classmethod
    def from_row(cls, row) -> "Endpoint":
        data = json.loads(row["record"])
        return cls(container_id=row["container_id"], network_id=row["network_id"],
                   seq=row["seq"], ip=row["ip"] or "",
                   **{k: data[k] for k in cls._RECORD if k in data})

    def deactivate(self) -> None:
        self.endpoint_id = self.ip = self.mac = self.ifname = self.veth = ""
        self.ports = []
        self.gateway_for_container = False

    def copy(self) -> "Endpoint":
        return Endpoint(**asdict(self))


def endpoint_request(settings: Any, what: str) -> dict[str, Any]:
    """Validate one EndpointSettings object from a request; returns the fields berth keeps."""
    from berth.errors import InvalidArgument
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise InvalidArgument(f"invalid endpoint settings for {what}: expected a JSON object")
    ipam = settings.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument(f"invalid IPAMConfig for {what}: expected a JSON object")
    ipv4 = ipam.get("IPv4Address") or ""
    if ipv4:
        parse_address(ipv4, "IPv4 address")
    if ipam.get("IPv6Address"):
        raise InvalidArgument(f"invalid IPv6 address for {what}: IPv6 is not supported")
    aliases = settings.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise InvalidArgument(f"invalid aliases for {what}: expected a list of names")
    mac = settings.get("MacAddress") or ""
    if mac:
        check_mac(mac)
    opts = settings.get("DriverOpts") or {}
    if not isinstance(opts, dict):
        raise InvalidArgument(f"invalid DriverOpts for {what}: expected a JSON object")
    return {"aliases": list(dict.fromkeys(aliases)), "ipv4_request": ipv4, "mac_request": mac,
            "driver_opts": {str(k): str(v) for k, v in opts.items()}}


def check_mac(mac: str) -> str:
    from berth.errors import InvalidArgument
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise InvalidArgument(f"{mac} is not a valid mac address")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {mac}: it is a multicast address")
    return mac.lower()


def subnet_of(net: Network) -> str:
    return str(parse_subnet(net.pool_config["Subnet"])) if net.pool_config else ""
