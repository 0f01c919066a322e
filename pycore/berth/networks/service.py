"""NetworkService: the networks of one daemon and the network side of its containers.

State lives in three places, kept in step:

- the metadata database: networks and endpoints, with the address each active
  endpoint holds (the source of truth across restarts);
- memory, changed only on the daemon's event loop: the same records, the
  namespaces held for running containers, the sockets holding published host
  ports, the DNS listeners;
- the kernel: bridges, veth pairs, namespaces, addresses, routes, and the
  iptables chains of this daemon.

Blocking work (netlink, iptables, database) runs in this service's own
worker threads; a job that fails undoes what it did before raising, so a
failed start or ``network create`` leaves no interface, address, rule or
record behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import secrets
import time
from typing import Any, Callable

from berth.errors import BerthError, Conflict, Forbidden, InvalidArgument, NotFound, SystemError_

from . import dns as dnsmod
from . import hostfiles, hostgc, plumbing
from . import ports as portmod
from .firewall import BridgeRules, Firewall, PortRule
from .ipam import IPv4Address, IPv4Network, Pool, choose_subnet
from .model import (BRIDGE, HOST, MIGRATIONS, NULL, OPT_BRIDGE_NAME, OPT_MTU, PREDEFINED,
                    Endpoint, Network, check_mac, endpoint_request)
from .options import DEFAULT_BRIDGE_POOL, NetworkOptions, check_ifname, parse_bip
from .sandbox import Sandbox, SandboxPool, make_bare_sandbox, new_veth_name

log = logging.getLogger("berth.networks")

#: Host-wide: daemons choosing subnets and creating bridges take turns, so two
#: of them never pick the same free subnet.
SUBNET_LOCK = "/run/lock/berth-networks.lock"

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
LIST_FILTERS = frozenset({"driver", "id", "label", "name", "scope", "type", "dangling"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})


def _now_ns() -> int:
    return time.time_ns()


def _new_id() -> str:
    while True:
        value = secrets.token_hex(32)
        if not value[:12].isdigit():
            return value


@contextlib.contextmanager
def _host_lock():
    os.makedirs(os.path.dirname(SUBNET_LOCK), exist_ok=True)
    fd = os.open(SUBNET_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class NetworkService:
    """See :mod:`berth.networks` for the interface containers use."""

    def __init__(self, config, events, db, options: NetworkOptions | None = None,
                 containers: Callable[[str], Any] | None = None):
        self.config = config
        self.events = events
        self.db = db
        self.options = options or NetworkOptions.from_env(config.root)
        self._containers = containers
        db.migrate("networks", MIGRATIONS)
        self._networks: dict[str, Network] = {}
        self._endpoints: dict[str, dict[str, Endpoint]] = {}     # cid -> nid -> endpoint
        self._sandboxes: dict[str, Sandbox] = {}                  # cid -> held namespace
        self._mappings: dict[str, list[portmod.Mapping]] = {}     # cid -> published ports
        self._by_ip: dict[tuple[str, str], str] = {}              # (nid, ip) -> cid
        self._starting: set[str] = set()                          # cids being wired
        self._dns: dict[str, dnsmod.DNSServer] = {}
        self._bridges_up: set[str] = set()
        self._bridge_index: dict[str, int] = {}
        self._last_ip: dict[str, int] = {}
        self._net_locks: dict[str, asyncio.Lock] = {}
        self._workers = concurrent.futures.ThreadPoolExecutor(
            4, thread_name_prefix="berth-net")
        self._fw_worker = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="berth-net-fw")
        self.firewall = Firewall(self.options.chain)
        self.pool = SandboxPool(self.options.veth_prefix, self.options.pool_size,
                                busy=lambda: bool(self._starting))
        # `none` containers take a namespace made ahead (lo up) when one is ready:
        # making it in the clone costs the start ~0.6 ms.
        self.bare_pool = SandboxPool(self.options.veth_prefix, self.options.pool_size,
                                     busy=lambda: bool(self._starting), make=make_bare_sandbox)
        self._resolv_cache: tuple[float, list[str], str] = (-1.0, [], "")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._load()

    # ------------------------------------------------------------------ records
    def _load(self) -> None:
        for row in self.db.query("SELECT * FROM networks"):
            try:
                net = Network.from_row(row)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("network %s: unreadable record (%s); ignored", row["id"], exc)
                continue
            self._networks[net.id] = net
        for row in self.db.query("SELECT * FROM endpoints"):
            try:
                ep = Endpoint.from_row(row)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("endpoint %s/%s: unreadable record (%s); ignored",
                          row["container_id"][:12], row["network_id"][:12], exc)
                continue
            self._endpoints.setdefault(ep.container_id, {})[ep.network_id] = ep
            if ep.ip:
                self._by_ip[(ep.network_id, ep.ip)] = ep.container_id
        self._ensure_predefined()

    def _ensure_predefined(self) -> None:
        by_name = {n.name: n for n in self._networks.values()}
        for name, driver in (("bridge", BRIDGE), ("host", HOST), ("none", NULL)):
            net = by_name.get(name)
            if net is None:
                net = Network(id=_new_id(), name=name, driver=driver, created_ns=_now_ns())
                if driver == BRIDGE:
                    net.bridge = self.options.default_bridge
                    net.options = {OPT_BRIDGE_NAME: net.bridge,
                                   "com.docker.network.bridge.enable_icc": "true",
                                   "com.docker.network.bridge.enable_ip_masquerade": "true",
                                   "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                                   OPT_MTU: "1500"}
                self._insert_network(net)
                self._networks[net.id] = net
            if driver == BRIDGE:
                self._apply_default_bridge_options(net)

    def _apply_default_bridge_options(self, net: Network) -> None:
        """--bridge-name and --bip win over what an earlier start recorded."""
        changed = False
        if net.bridge != self.options.default_bridge:
            net.bridge = self.options.default_bridge
            net.options[OPT_BRIDGE_NAME] = net.bridge
            changed = True
        if self.options.bip:
            iface = parse_bip(self.options.bip)
            wanted = {"Subnet": str(iface.network), "Gateway": str(iface.ip)}
            if net.pool_config != wanted:
                net.pool_config = wanted
                net.user_pool = True
                changed = True
        elif net.user_pool:
            # --bip was dropped: choose again at first use.
            net.pool_config, net.user_pool = None, False
            changed = True
        if changed:
            net.__dict__.pop("_pool", None)
            self._save_network(net)

    def _insert_network(self, net: Network) -> None:
        import sqlite3
        try:
            self.db.execute("INSERT INTO networks(id, name, driver, created_ns, record) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (net.id, net.name, net.driver, net.created_ns, net.to_record()))
        except sqlite3.IntegrityError:
            raise Conflict(f"network with name {net.name} already exists") from None

    def _save_network(self, net: Network) -> None:
        self.db.execute("UPDATE networks SET record=? WHERE id=?", (net.to_record(), net.id))

    def _save_endpoint(self, ep: Endpoint, conn=None) -> None:
        sql = ("INSERT INTO endpoints(container_id, network_id, seq, ip, record) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT(container_id, network_id) DO UPDATE SET "
               "seq=excluded.seq, ip=excluded.ip, record=excluded.record")
        args = (ep.container_id, ep.network_id, ep.seq, ep.ip or None, ep.to_record())
        if conn is not None:
            conn.execute(sql, args)
        else:
            self.db.execute(sql, args)

    # ------------------------------------------------------------------ lookups
    def get(self, ref: str) -> Network:
        """By name, full ID, or unique ID prefix (Docker's order)."""
        if not ref:
            raise InvalidArgument("network name or ID cannot be empty")
        networks = list(self._networks.items())  # also called from worker threads
        for _, net in networks:
            if net.name == ref:
                return net
        net = self._networks.get(ref)
        if net is not None:
            return net
        matches = [n for nid, n in networks if nid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found on "
                                  "name)")
        raise NotFound(f"network {ref} not found")

    def networks(self) -> list[Network]:
        return sorted(self._networks.values(), key=lambda n: n.created_ns)

    def _mode_network(self, mode: str) -> Network | None:
        """The network a NetworkMode names (None for container:...)."""
        if mode.startswith("container:"):
            return None
        return self.get("bridge" if mode in ("", "default") else mode)

    def endpoints_of(self, cid: str) -> list[Endpoint]:
        return sorted(self._endpoints.get(cid, {}).values(), key=lambda e: e.seq)

    def _active_endpoints(self, nid: str) -> list[Endpoint]:
        return [eps[nid] for cid, eps in self._endpoints.items()
                if nid in eps and (eps[nid].active or cid in self._starting)]

    def _container(self, ref: str):
        if self._containers is None:
            raise NotFound(f"No such container: {ref}")
        return self._containers(ref)

    def _container_name(self, cid: str) -> str:
        try:
            return self._container(cid).name
        except BerthError:
            return cid[:12]

    # ------------------------------------------------------------------ executors
    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._workers, fn, *args)

    async def _apply_firewall(self) -> None:
        bridges, rules = self._firewall_state()
        await asyncio.get_running_loop().run_in_executor(
            self._fw_worker, self.firewall.apply, bridges, rules)

    def _apply_firewall_later(self) -> None:
        """Rules without what just went, loaded without waiting: each load writes
        the whole state, in order, on one worker, so a later one (a start that
        publishes the same host port) cannot be overtaken by this one."""
        bridges, rules = self._firewall_state()

        def done(fut: concurrent.futures.Future) -> None:
            exc = fut.exception()
            if exc is not None:
                log.error("updating the rules of this daemon failed: %s",
                          getattr(exc, "message", exc))
        self._fw_worker.submit(self.firewall.apply, bridges, rules).add_done_callback(done)

    def _firewall_state(self) -> tuple[list[BridgeRules], list[PortRule]]:
        bridges = []
        for nid in sorted(self._bridges_up, key=lambda i: self._networks[i].created_ns
                          if i in self._networks else 0):
            net = self._networks.get(nid)
            if net is None or net.pool_config is None:
                continue
            bridges.append(BridgeRules(net.bridge, str(net.pool.subnet), str(net.pool.gateway),
                                       internal=net.internal, masquerade=net.masquerade,
                                       icc=net.icc, dns=net.user_defined))
        rules = []
        for cid, mappings in self._mappings.items():
            ep = next((e for e in self._endpoints.get(cid, {}).values()
                       if e.gateway_for_container and e.ip), None)
            if ep is None:
                continue
            net = self._networks.get(ep.network_id)
            if net is None:
                continue
            for m in mappings:
                rules.append(PortRule(net.bridge, m.proto, m.host_ip, m.host_port, ep.ip,
                                      m.container_port))
        return bridges, rules

    # ------------------------------------------------------------------ bridges
    def _lock_of(self, nid: str) -> asyncio.Lock:
        lock = self._net_locks.get(nid)
        if lock is None:
            lock = self._net_locks[nid] = asyncio.Lock()
        return lock

    def _subnets_in_use(self, exclude: str = "") -> list[tuple[IPv4Network, str]]:
        """Subnets of our networks (but ``exclude``) and of the host's routes (other
        daemons' bridges included), each with a description for error messages."""
        used: list[tuple[IPv4Network, str]] = []
        our_bridges = set()
        for n in list(self._networks.values()):  # a worker reads what the loop changes
            if n.is_bridge:
                our_bridges.add(n.bridge)
            if n.id != exclude and n.pool_config is not None:
                used.append((n.pool.subnet, f'network "{n.name}"'))
        for net, ifname in plumbing.host_ipv4_routes():
            if ifname not in our_bridges:
                used.append((net, f"the route to {net} on interface {ifname or '?'}"))
        return used

    def _bring_up_bridge(self, net: Network) -> None:
        """Worker: choose the default bridge's subnet if needed, create the bridge
        and set its sysctls. Under the host-wide lock."""
        with _host_lock():
            if net.pool_config is not None and not plumbing.link_exists(net.bridge):
                clash = next((what for used, what in self._subnets_in_use(net.id)
                              if used.overlaps(net.pool.subnet)
                              and not what.startswith("network")), None)
                if clash is not None and net.default_bridge and not net.user_pool:
                    # Chosen by an earlier start, taken by someone else meanwhile.
                    log.info("default bridge: %s now overlaps %s; choosing another subnet",
                             net.pool.subnet, clash)
                    net.pool_config = None
                elif clash is not None:
                    raise Forbidden(f"cannot bring up network {net.name}: its subnet "
                                    f"{net.pool.subnet} overlaps {clash}")
            if net.pool_config is None:
                subnet = choose_subnet([DEFAULT_BRIDGE_POOL],
                                       [u for u, _ in self._subnets_in_use(net.id)])
                net.pool_config = {"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1)}
                net.__dict__.pop("_pool", None)
                self._save_network(net)
            self._bridge_index[net.id] = plumbing.ensure_bridge(net.bridge, net.pool.gateway_cidr,
                                                                net.mtu)
        # Published ports answer on 127.0.0.1 without a proxy (see firewall.py).
        plumbing.set_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
        plumbing.set_sysctl("net/ipv4/ip_forward", "1")

    def _register_host_objects(self) -> None:
        """Worker: tell other daemons what this one has on the host (hostgc)."""
        try:
            hostgc.register(self.options.tag, self.options.root,
                            [n.bridge for n in list(self._networks.values()) if n.is_bridge])
        except OSError as exc:
            log.warning("cannot record this daemon's host objects in %s: %s", hostgc.REGISTRY,
                        exc)

    async def _ensure_bridge(self, net: Network) -> None:
        if net.id in self._bridges_up:
            return
        async with self._lock_of(net.id):
            if net.id in self._bridges_up:
                return
            await self._run(self._register_host_objects)
            await self._run(self._bring_up_bridge, net)
            self._bridges_up.add(net.id)
            try:
                await self._apply_firewall()
                if net.user_defined:
                    await self._start_dns(net)
            except BaseException:
                self._bridges_up.discard(net.id)
                await self._run(plumbing.delete_link, net.bridge)
                with contextlib.suppress(BerthError):
                    await self._apply_firewall()
                raise

    async def _start_dns(self, net: Network) -> None:
        old = self._dns.pop(net.id, None)
        if old is not None:
            old.close()
        server = dnsmod.DNSServer(net.id, str(net.pool.gateway), self)
        try:
            await server.start()
        except OSError as exc:
            raise SystemError_(f"cannot start the DNS server of network {net.name} on "
                               f"{net.pool.gateway}:53: {exc.strerror or exc}") from None
        self._dns[net.id] = server

    async def _take_down_bridge(self, net: Network) -> None:
        server = self._dns.pop(net.id, None)
        if server is not None:
            server.close()
        self._bridges_up.discard(net.id)
        self._bridge_index.pop(net.id, None)
        await self._run(plumbing.delete_link, net.bridge)

    # ------------------------------------------------------------------ network CRUD
    async def create(self, body: Any) -> tuple[str, str]:
        """``POST /networks/create``: (ID, warning)."""
        net = self._network_from_request(body)
        await self._ensure_loop()
        async with self._lock_of("__create__"):
            if any(n.name == net.name for n in self._networks.values()):
                raise Conflict(f"network with name {net.name} already exists")
            if any(n.bridge == net.bridge for n in self._networks.values() if n.is_bridge):
                raise Conflict(f"bridge name {net.bridge} is already used by another network")
            await self._run(self._claim_subnet_and_bridge, net)
            self._networks[net.id] = net
            await self._run(self._register_host_objects)
            self._bridges_up.add(net.id)
            try:
                await self._apply_firewall()
                await self._start_dns(net)
            except BaseException:
                await self._discard_network(net)
                raise
        self.events.publish("network", "create", net.id, {"name": net.name, "type": net.driver})
        return net.id, ""

    def _claim_subnet_and_bridge(self, net: Network) -> None:
        """Worker: check or choose the subnet, record the network, create its bridge.
        All or nothing."""
        with _host_lock():
            if plumbing.link_exists(net.bridge):
                raise Conflict(f"bridge name {net.bridge} is already in use by another interface "
                               "on this host")
            used = self._subnets_in_use()
            if net.pool_config is None:
                subnet = choose_subnet(self.options.default_pools, [u for u, _ in used])
                net.pool_config = {"Subnet": str(subnet),
                                   "Gateway": str(subnet.network_address + 1)}
            else:
                for u, what in used:
                    if u.overlaps(net.pool.subnet):
                        raise Forbidden("invalid pool request: Pool overlaps with other one on this "
                                        f"address space ({net.pool.subnet} overlaps {u} of {what})")
            self._insert_network(net)
            try:
                self._bridge_index[net.id] = plumbing.ensure_bridge(
                    net.bridge, net.pool.gateway_cidr, net.mtu)
                plumbing.set_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
                plumbing.set_sysctl("net/ipv4/ip_forward", "1")
            except BaseException:
                with contextlib.suppress(BerthError):
                    plumbing.delete_link(net.bridge)
                self.db.execute("DELETE FROM networks WHERE id=?", (net.id,))
                raise

    async def _discard_network(self, net: Network) -> None:
        self._networks.pop(net.id, None)
        await self._take_down_bridge(net)
        await self._run(self.db.execute, "DELETE FROM networks WHERE id=?", (net.id,))
        with contextlib.suppress(BerthError):
            await self._apply_firewall()

    def _network_from_request(self, body: Any) -> Network:
        if not isinstance(body, dict):
            raise InvalidArgument("invalid network configuration: expected a JSON object")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name is required (Name)")
        if not _NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                  "are allowed")
        if name in PREDEFINED:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        driver = body.get("Driver") or BRIDGE
        if driver in (HOST, NULL, "none"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != BRIDGE:
            raise NotFound(f'plugin "{driver}" not found: berth has the bridge, host and null '
                           "network drivers")
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 networks are not supported by berth (EnableIPv6)")
        if body.get("Ingress"):
            raise Forbidden("ingress networks need swarm mode, which berth does not have")
        config_from = body.get("ConfigFrom")
        if body.get("ConfigOnly") or (isinstance(config_from, dict) and config_from.get("Network")):
            raise InvalidArgument("config-only networks (--config-only, --config-from) are not "
                                  "supported")
        if body.get("Scope") not in (None, "", "local"):
            raise InvalidArgument(f"invalid scope {body.get('Scope')!r}: only local networks")
        options = _str_map(body.get("Options"), "Options")
        labels = _str_map(body.get("Labels"), "Labels")
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise InvalidArgument("invalid IPAM: expected a JSON object")
        if (ipam.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam["Driver"]}" not found: berth has the default IPAM '
                           "driver only")
        configs = ipam.get("Config") or []
        if not isinstance(configs, list):
            raise InvalidArgument("invalid IPAM.Config: expected a list")
        v4 = []
        for entry in configs:
            subnet = (entry or {}).get("Subnet") if isinstance(entry, dict) else None
            if isinstance(subnet, str) and ":" in subnet:
                raise InvalidArgument(f"invalid subnet {subnet}: IPv6 networks are not supported")
            v4.append(entry)
        if len(v4) > 1:
            raise InvalidArgument("a bridge network takes one IPv4 subnet; "
                                  f"{len(v4)} were given")
        pool: Pool | None = Pool.from_config(v4[0]) if v4 else None
        net_id = _new_id()
        bridge = options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
        check_ifname(bridge)
        if OPT_MTU in options:
            try:
                mtu = int(options[OPT_MTU])
            except ValueError:
                mtu = 0
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"invalid {OPT_MTU} {options[OPT_MTU]!r}: expected 68 to 65535")
        host_binding = options.get("com.docker.network.bridge.host_binding_ipv4")
        if host_binding:
            try:
                ipaddress.IPv4Address(host_binding)
            except ValueError:
                raise InvalidArgument(f"invalid host_binding_ipv4 {host_binding!r}") from None
        return Network(id=net_id, name=name, driver=BRIDGE, created_ns=_now_ns(),
                       internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                       options=options, labels=labels,
                       ipam_options=_str_map(ipam.get("Options"), "IPAM.Options"),
                       pool_config=pool.to_config() if pool else None, user_pool=pool is not None,
                       bridge=bridge)

    async def remove(self, ref: str) -> None:
        net = self.get(ref)
        if net.builtin:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        async with self._lock_of(net.id):
            active = self._active_endpoints(net.id)
            if active:
                names = ", ".join(self._container_name(e.container_id) for e in active)
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                                f"has active endpoints ({names})")
            self._networks.pop(net.id, None)
            try:
                await self._take_down_bridge(net)
                await self._run(self.db.execute, "DELETE FROM networks WHERE id=?", (net.id,))
            except BaseException:
                self._networks[net.id] = net
                raise
            await self._apply_firewall()
            await self._run(self._register_host_objects)
        self._net_locks.pop(net.id, None)
        self.events.publish("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        from berth.images.filters import match_labels, parse_until
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        until = parse_until(filters["until"][-1]) if filters.get("until") else None
        deleted = []
        for net in self.networks():
            if net.builtin or self._active_endpoints(net.id):
                continue
            if not match_labels(filters, net.labels):
                continue
            if until is not None and net.created_ns > until:
                continue
            try:
                await self.remove(net.id)
            except BerthError as exc:
                log.warning("prune: network %s: %s", net.name, exc.message)
                continue
            deleted.append(net.name)
        self.events.publish("network", "prune", "", {"reclaimed": "0"})
        return {"NetworksDeleted": deleted or None}

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        from berth.images.filters import match_labels
        out = []
        for net in self.networks():
            if filters.get("driver") and net.driver not in filters["driver"]:
                continue
            if filters.get("name") and not any(v in net.name for v in filters["name"]):
                continue
            if filters.get("id") and not any(net.id.startswith(v) for v in filters["id"]):
                continue
            if filters.get("scope") and "local" not in filters["scope"]:
                continue
            if filters.get("type"):
                for t in filters["type"]:
                    if t not in ("custom", "builtin"):
                        raise InvalidArgument(f"invalid filter: 'type'='{t}'")
                if ("builtin" if net.builtin else "custom") not in filters["type"]:
                    continue
            if filters.get("dangling"):
                want = filters["dangling"][-1].lower()
                if want not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"invalid filter 'dangling={want}'")
                dangling = not net.builtin and not self._active_endpoints(net.id)
                if dangling != (want in ("true", "1")):
                    continue
            if not match_labels(filters, net.labels):
                continue
            out.append(net.inspect())
        return out

    def inspect(self, ref: str, verbose: bool = False) -> dict[str, Any]:
        net = self.get(ref)
        containers = {}
        for ep in self._active_endpoints(net.id):
            if not ep.endpoint_id:
                continue
            plen = net.pool.prefixlen if net.pool_config and ep.ip else None
            containers[ep.container_id] = {
                "Name": self._container_name(ep.container_id),
                "EndpointID": ep.endpoint_id,
                "MacAddress": ep.mac,
                "IPv4Address": f"{ep.ip}/{plen}" if ep.ip else "",
                "IPv6Address": "",
            }
        return net.inspect(containers)

    # ------------------------------------------------------------------ containers: create
    def check(self, config: dict[str, Any], host_config: dict[str, Any],
              networking_config: dict[str, Any]) -> None:
        """Validate a new container's network settings (nothing is recorded).
        Normalises HostConfig.NetworkMode ("" -> "default").

        A missing network is a 400 here, not Docker's 404: the docker CLI takes
        any 404 from container create for a missing image and tries to pull it."""
        try:
            self._check(config, host_config, networking_config)
        except NotFound as exc:
            raise InvalidArgument(exc.message) from None

    def _check(self, config: dict[str, Any], host_config: dict[str, Any],
               networking_config: dict[str, Any]) -> None:
        mode = host_config.get("NetworkMode") or "default"
        if not isinstance(mode, str):
            raise InvalidArgument(f"invalid NetworkMode: {mode!r}")
        host_config["NetworkMode"] = mode
        container_mode = mode.startswith("container:")
        net = self._mode_network(mode)
        endpoints = _endpoints_config(networking_config)
        hostname = config.get("Hostname") or ""
        if container_mode:
            if not mode[len("container:"):]:
                raise InvalidArgument("invalid NetworkMode container: no container given")
            for key, what in (("PortBindings", "port publishing"), ("Dns", "dns"),
                              ("DnsSearch", "dns-search"), ("DnsOptions", "dns-opt"),
                              ("ExtraHosts", "add-host")):
                if host_config.get(key):
                    raise InvalidArgument(f"conflicting options: {what} and the container type "
                                          "network mode")
            if config.get("MacAddress"):
                raise InvalidArgument("conflicting options: mac-address and the network mode")
            if hostname:
                raise InvalidArgument("conflicting options: hostname and the network mode")
            if host_config.get("PublishAllPorts"):
                raise InvalidArgument("conflicting options: publish-all and the container type "
                                      "network mode")
            if endpoints:
                raise InvalidArgument("conflicting options: container type network can't be used "
                                      "with multiple networks")
            return
        assert net is not None
        if net.driver in (HOST, NULL):
            if host_config.get("PortBindings") and net.driver == NULL:
                raise InvalidArgument("conflicting options: port publishing and the container type "
                                      "network mode")
            if config.get("MacAddress") and net.driver == HOST:
                raise InvalidArgument("conflicting options: mac-address and the network mode")
        for ref in endpoints:
            other = self.get(ref)
            if other.id != net.id and (net.driver in (HOST, NULL) or other.driver in (HOST, NULL)):
                raise InvalidArgument("conflicting options: a container on the host or none network "
                                      "cannot be connected to other networks")
        for ref, settings in endpoints.items():
            self._check_endpoint_request(self.get(ref), endpoint_request(settings, ref))
        if config.get("MacAddress"):
            check_mac(config["MacAddress"])
        portmod.requests(host_config.get("PortBindings"), config.get("ExposedPorts"),
                         bool(host_config.get("PublishAllPorts")))
        for entry in host_config.get("ExtraHosts") or []:
            hostfiles.parse_extra_host(entry)
        for server in host_config.get("Dns") or []:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise InvalidArgument(f"{server} is not an ip address (--dns)") from None

    def _check_endpoint_request(self, net: Network, req: dict[str, Any]) -> None:
        if req["aliases"] and not net.user_defined:
            raise InvalidArgument("network-scoped aliases are only supported for user-defined "
                                  "networks")
        if req["ipv4_request"]:
            if not net.user_defined:
                raise InvalidArgument("user specified IP address is supported on user defined "
                                      "networks only")
            if not net.user_pool:
                raise InvalidArgument("user specified IP address is supported only when connecting "
                                      "to networks with user configured subnets")
            net.pool.check_static(req["ipv4_request"])
        if req["mac_request"] and not net.is_bridge:
            raise InvalidArgument("conflicting options: mac-address and the network mode")

    async def register(self, c) -> None:
        """Record a new container's endpoints (after :meth:`check`)."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            return
        primary = self._mode_network(mode)
        endpoints = _endpoints_config(c.networking_config)
        plan: list[tuple[Network, dict[str, Any]]] = []
        settings = endpoints.get(mode) or endpoints.get(primary.name) or endpoints.get(primary.id)
        if settings is None and mode == "default":
            settings = endpoints.get("bridge")
        req = endpoint_request(settings, primary.name)
        if c.config.get("MacAddress") and not req["mac_request"]:
            req["mac_request"] = check_mac(c.config["MacAddress"])
        plan.append((primary, req))
        for ref, s in endpoints.items():
            net = self.get(ref)
            if net.id != primary.id and all(n.id != net.id for n, _ in plan):
                plan.append((net, endpoint_request(s, ref)))
        eps = [Endpoint(c.id, net.id, seq=i, **req) for i, (net, req) in enumerate(plan)]

        def save() -> None:
            with self.db.transaction() as conn:
                for ep in eps:
                    self._save_endpoint(ep, conn)
        await self._run(save)
        self._endpoints[c.id] = {ep.network_id: ep for ep in eps}

    async def forget(self, cid: str) -> None:
        """The container is gone: its endpoints go, released first if they were
        not (a crash before the DELETE leaves records that reconcile frees)."""
        if cid not in self._endpoints and cid not in self._sandboxes and cid not in self._mappings:
            return  # nothing in memory, so nothing recorded: already forgotten
        await self.release(cid, persist=False)
        self._endpoints.pop(cid, None)
        await self._run(self.db.execute, "DELETE FROM endpoints WHERE container_id=?", (cid,))

    # ------------------------------------------------------------------ containers: start
    async def prepare(self, c) -> str:
        """Wire a starting container; returns the spec's ``net`` namespace
        ("host", "none" or a namespace path) and writes its /etc files."""
        await self._ensure_loop()
        if not self.host_gateway() and any(
                hostfiles.parse_extra_host(e)[1] == hostfiles.HOST_GATEWAY
                for e in c.host_config.get("ExtraHosts") or []):
            # host-gateway stands for the default bridge's address: it needs one.
            await self._ensure_bridge(self.get("bridge"))
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            other = self._container(mode[len("container:"):])
            if not other.running or not other.pid:
                raise Conflict(f"cannot join the network namespace of container {other.id}: "
                               "it is not running")
            await self._run(self._share_files, other, c)
            return f"/proc/{other.pid}/ns/net"
        eps = self.endpoints_of(c.id)
        if not eps:
            # A container created before networks existed: give it its mode's endpoint.
            await self.register(c)
            eps = self.endpoints_of(c.id)
        nets = []
        for ep in eps:
            net = self._networks.get(ep.network_id)
            if net is None:
                raise NotFound(f"network {ep.network_id[:12]} not found: disconnect the container "
                               "from it or create it again")
            nets.append(net)
        if nets[0].driver in (HOST, NULL):
            ep = eps[0]
            ep.endpoint_id = _new_id()
            await self._run(self._save_and_write_files, ep, c, nets[0].driver == HOST)
            self.events.publish("network", "connect", nets[0].id,
                                {"container": c.id, "name": nets[0].name, "type": nets[0].driver})
            if nets[0].driver == HOST:
                return "host"
            sandbox = None if c.id in self._sandboxes else self.bare_pool.try_take()
            if sandbox is None:
                return "none"  # the monitor makes one as it clones the container
            self._sandboxes[c.id] = sandbox
            return sandbox.path
        if c.id in self._sandboxes or c.id in self._starting:
            raise Conflict(f"container {c.id} is already connected to its networks")
        started = time.perf_counter()
        self._starting.add(c.id)
        try:
            for net in nets:
                await self._ensure_bridge(net)
            requests = portmod.requests(c.host_config.get("PortBindings"),
                                        c.config.get("ExposedPorts"),
                                        bool(c.host_config.get("PublishAllPorts")))
            gateway_net = next((n for n in nets if not n.internal), None)
            if requests and gateway_net is None:
                requests = []  # nowhere to publish from: Docker ignores them too
            held = self._held_ports()
            sandbox, wired, mappings = await self._run(
                self._wire, c, list(zip(eps, nets)), gateway_net, requests, held)
            self._sandboxes[c.id] = sandbox
            for ep in wired:
                self._endpoints.setdefault(c.id, {})[ep.network_id] = ep
                self._by_ip[(ep.network_id, ep.ip)] = c.id
            if mappings:
                self._mappings[c.id] = mappings
                try:
                    await self._apply_firewall()
                except BaseException:
                    await self.release(c.id)
                    raise
        finally:
            self._starting.discard(c.id)
        for ep, net in zip(eps, nets):
            self.events.publish("network", "connect", net.id,
                                {"container": c.id, "name": net.name, "type": net.driver})
        log.debug("container %s: wired to %s in %.1f ms", c.id[:12],
                  ", ".join(n.name for n in nets), (time.perf_counter() - started) * 1000)
        return sandbox.path

    def _held_ports(self) -> set[tuple[str, int, str]]:
        return {(m.host_ip, m.host_port, m.proto) for ms in self._mappings.values() for m in ms}

    def _wire(self, c, plan: list[tuple[Endpoint, Network]], gateway_net: Network | None,
              requests: list[portmod.PortRequest], held) -> tuple[Sandbox, list[Endpoint],
                                                                   list[portmod.Mapping]]:
        """Worker: addresses, host ports, namespace, veths, routes and /etc files
        of a start. All or nothing: on failure the namespace (and every veth in
        it) goes with its fd, and the addresses are released."""
        sandbox = self.pool.take(plan[0][1].mtu)
        wired: list[Endpoint] = []
        mappings: list[portmod.Mapping] = []
        recorded = False
        try:
            # Addresses and ports first, recorded in one transaction.
            with self.db.transaction() as conn:
                for index, (ep, net) in enumerate(plan):
                    new = ep.copy()
                    new.ifname = f"eth{index}"
                    self._allocate(net, new, conn)
                    new.endpoint_id = _new_id()
                    new.mac = new.mac_request or plumbing.mac_for_ip(IPv4Address(new.ip))
                    new.gateway_for_container = (gateway_net is not None
                                                 and net.id == gateway_net.id)
                    new.veth = (sandbox.veth if index == 0
                                else new_veth_name(self.options.veth_prefix))
                    wired.append(new)
                gw = next((e for e in wired if e.gateway_for_container), None)
                for req in requests:
                    mappings.append(portmod.reserve(req, held, gw.ip,
                                                    gateway_net.host_binding_ip))
                if gw is not None:
                    gw.ports = [m.to_record() for m in mappings]
                for new in wired:
                    self._save_endpoint(new, conn)
            recorded = True
            for index, (new, (_, net)) in enumerate(zip(wired, plan)):
                if index == 0:
                    veth_index, inner = sandbox.veth_index, sandbox.eth0_index
                else:
                    veth_index = plumbing.create_veth(new.veth, sandbox.fd, new.ifname, net.mtu)
                    inner = sandbox.inside().link_index(new.ifname)
                self._attach(veth_index, net, new.veth)
                plumbing.configure_inside(
                    sandbox.inside(), inner, new.ifname, new.mac,
                    f"{new.ip}/{net.pool.prefixlen}",
                    str(net.pool.gateway) if new.gateway_for_container else None)
            self._write_files(c, False, wired)
        except BaseException:
            for m in mappings:
                m.close()
            sandbox.close()
            if recorded:
                self._free_addresses(wired)
            raise
        return sandbox, wired, mappings

    def _attach(self, veth_index: int, net: Network, veth: str) -> None:
        bridge_index = self._bridge_index.get(net.id)
        if bridge_index is None:
            bridge_index = plumbing.link_index(net.bridge)
            if bridge_index is None:
                self._bridges_up.discard(net.id)
                raise SystemError_(f"the bridge {net.bridge} of network {net.name} is missing "
                                   "(removed behind the daemon's back?): try again")
            self._bridge_index[net.id] = bridge_index
        try:
            plumbing.attach_port(veth_index, bridge_index, f"{veth} to bridge {net.bridge}")
        except SystemError_:
            # The bridge may have been recreated behind our back: look it up next time.
            self._bridge_index.pop(net.id, None)
            self._bridges_up.discard(net.id)
            raise

    def _allocate(self, net: Network, ep: Endpoint, conn) -> None:
        """Worker, inside a transaction: choose the endpoint's address."""
        pool = net.pool
        rows = conn.execute("SELECT ip, container_id FROM endpoints WHERE network_id=? AND "
                            "ip IS NOT NULL", (net.id,)).fetchall()
        taken = {int(IPv4Address(r[0])): r[1] for r in rows if r[1] != ep.container_id}
        if ep.ipv4_request:
            addr = pool.check_static(ep.ipv4_request)
            if int(addr) in taken:
                raise Conflict(f"Address already in use: {addr} is taken on network "
                               f"{net.name} by container {taken[int(addr)][:12]}")
        else:
            addr = pool.pick(set(taken), self._last_ip.get(net.id))
            self._last_ip[net.id] = int(addr)
        ep.ip = str(addr)
        self._save_endpoint(ep, conn)

    def _free_addresses(self, eps: list[Endpoint]) -> None:
        with self.db.transaction() as conn:
            for ep in eps:
                base = ep.copy()
                base.deactivate()
                self._save_endpoint(base, conn)

    # ------------------------------------------------------------------ containers: stop
    async def release(self, cid: str, *, persist: bool = True) -> None:
        """The container stopped: addresses, ports, rules and its namespace go.
        Safe to call more than once. The namespace's teardown happens in the
        kernel after the last reference goes, off this path. ``persist=False``:
        the endpoints' records are about to be deleted (forget), not updated."""
        eps = [e for e in self.endpoints_of(cid) if e.active]
        sandbox = self._sandboxes.pop(cid, None)
        mappings = self._mappings.pop(cid, None)
        if not eps and sandbox is None and not mappings:
            return
        for ep in eps:
            self._by_ip.pop((ep.network_id, ep.ip), None)
        if mappings:
            for m in mappings:
                m.close()
            self._apply_firewall_later()
        if sandbox is not None:
            sandbox.close()
        if eps and persist:
            await self._run(self._free_addresses, eps)
        for ep in eps:
            ep.deactivate()
        for ep in eps:
            net = self._networks.get(ep.network_id)
            if net is not None:
                self.events.publish("network", "disconnect", net.id,
                                    {"container": cid, "name": net.name, "type": net.driver})

    # ------------------------------------------------------------------ connect / disconnect
    async def connect(self, net_ref: str, container_ref: str, settings: Any) -> None:
        net = self.get(net_ref)
        c = self._container(container_ref)
        req = endpoint_request(settings, net.name)
        mode = c.host_config.get("NetworkMode") or "default"
        if net.driver in (HOST, NULL):
            raise Forbidden(f"container cannot be disconnected from host network or connected to "
                            f"{'host' if net.driver == HOST else 'none'} network")
        if mode.startswith("container:"):
            raise Forbidden("conflicting options: container type network can't be used with "
                            "multiple networks")
        mine = self._endpoints.get(c.id, {})
        for nid in mine:
            other = self._networks.get(nid)
            if other is not None and other.driver in (HOST, NULL):
                raise Forbidden(f"container {c.name} is on the {other.name} network: it cannot be "
                                "connected to other networks")
        if net.id in mine:
            raise Forbidden(f"endpoint with name {c.name} already exists in network {net.name}")
        self._check_endpoint_request(net, req)
        await self._ensure_loop()
        seq = max((e.seq for e in mine.values()), default=-1) + 1
        ep = Endpoint(c.id, net.id, seq=seq, **req)
        async with self._lock_of(net.id):
            if c.id not in self._sandboxes:
                if c.running:
                    await self._adopt_sandbox(c)
            if c.id in self._sandboxes:
                await self._ensure_bridge(net)
                sandbox = self._sandboxes[c.id]
                has_gateway = any(e.gateway_for_container for e in mine.values() if e.active)
                wired = await self._run(self._wire_live, sandbox, ep, net,
                                        not has_gateway and not net.internal,
                                        [e.ifname for e in mine.values() if e.active])
                self._by_ip[(net.id, wired.ip)] = c.id
                ep = wired
            else:
                await self._run(self._save_endpoint, ep)
            self._endpoints.setdefault(c.id, {})[net.id] = ep
        if c.running:
            with contextlib.suppress(OSError, BerthError):
                await self._run(self._write_files, c, False)
        self.events.publish("network", "connect", net.id,
                            {"container": c.id, "name": net.name, "type": net.driver})

    async def _adopt_sandbox(self, c) -> None:
        """After a daemon restart: hold a running container's namespace again."""
        if not c.pid:
            return
        fd = await self._run(plumbing.open_netns, f"/proc/{c.pid}/ns/net")
        self._sandboxes[c.id] = Sandbox(fd, "")

    def _wire_live(self, sandbox: Sandbox, ep: Endpoint, net: Network, route: bool,
                   used_names: list[str]) -> Endpoint:
        """Worker: plug a running container into one more network."""
        new = ep.copy()
        index = 0
        present = set(plumbing.links_inside(sandbox.fd)) | set(used_names)
        while f"eth{index}" in present:
            index += 1
        new.ifname = f"eth{index}"
        with self.db.transaction() as conn:
            self._allocate(net, new, conn)
            new.endpoint_id = _new_id()
            new.mac = new.mac_request or plumbing.mac_for_ip(IPv4Address(new.ip))
            new.veth = new_veth_name(self.options.veth_prefix)
            new.gateway_for_container = route
            self._save_endpoint(new, conn)
        try:
            veth_index = plumbing.create_veth(new.veth, sandbox.fd, new.ifname, net.mtu)
            try:
                inner = sandbox.inside().link_index(new.ifname)
                self._attach(veth_index, net, new.veth)
                plumbing.configure_inside(sandbox.inside(), inner, new.ifname, new.mac,
                                          f"{new.ip}/{net.pool.prefixlen}",
                                          str(net.pool.gateway) if route else None)
            except BaseException:
                with contextlib.suppress(BerthError, OSError):
                    plumbing.remove_inside(sandbox.fd, new.ifname)
                raise
        except BaseException:
            self._free_addresses([new])
            raise
        return new

    async def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        net = self.get(net_ref)
        try:
            c = self._container(container_ref)
            cid = c.id
        except NotFound:
            if not force:
                raise
            # --force: a stale endpoint of a container that is gone.
            cid = next((x for x, eps in self._endpoints.items()
                        if net.id in eps and x.startswith(container_ref)), None)
            if cid is None:
                raise
            c = None
        if net.driver in (HOST, NULL) and c is not None and c.running:
            raise Forbidden(f"container cannot be disconnected from {net.name} network while it "
                            "runs")
        ep = self._endpoints.get(cid, {}).get(net.id)
        if ep is None:
            raise Forbidden(f"container {cid[:12]} is not connected to network {net.name}")
        async with self._lock_of(net.id):
            sandbox = self._sandboxes.get(cid)
            if c is not None and c.running and sandbox is None and ep.active:
                await self._adopt_sandbox(c)
                sandbox = self._sandboxes.get(cid)
            if ep.active and ep.ip:
                if ep.gateway_for_container and self._mappings.get(cid):
                    for m in self._mappings.pop(cid):
                        m.close()
                    await self._apply_firewall()
                if sandbox is not None and ep.ifname:
                    await self._run(plumbing.remove_inside, sandbox.fd, ep.ifname)
                self._by_ip.pop((net.id, ep.ip), None)
                await self._run(self._free_addresses, [ep])
                if ep.gateway_for_container and sandbox is not None:
                    await self._reroute(cid, sandbox, exclude=net.id)
            self._endpoints.get(cid, {}).pop(net.id, None)
            await self._run(self.db.execute,
                            "DELETE FROM endpoints WHERE container_id=? AND network_id=?",
                            (cid, net.id))
        if c is not None and c.running:
            with contextlib.suppress(OSError, BerthError):
                await self._run(self._write_files, c, False)
        self.events.publish("network", "disconnect", net.id,
                            {"container": cid, "name": net.name, "type": net.driver})

    async def _reroute(self, cid: str, sandbox: Sandbox, exclude: str) -> None:
        """The network with the default route left: the next one takes it."""
        for ep in self.endpoints_of(cid):
            net = self._networks.get(ep.network_id)
            if ep.network_id == exclude or not ep.active or net is None or net.internal:
                continue
            await self._run(plumbing.set_default_route, sandbox.fd, str(net.pool.gateway))
            ep.gateway_for_container = True
            await self._run(self._save_endpoint, ep)
            return
        await self._run(plumbing.set_default_route, sandbox.fd, None)

    # ------------------------------------------------------------------ files
    def host_gateway(self) -> str:
        if self.options.host_gateway_ip:
            return self.options.host_gateway_ip
        bridge = self.get("bridge")
        return str(bridge.pool.gateway) if bridge.pool_config else ""

    def _host_resolvers(self) -> tuple[list[str], str]:
        path = self.options.resolv_conf
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return [], ""
        cached_mtime, servers, text = self._resolv_cache
        if mtime != cached_mtime:
            text = hostfiles.read_host_file(path)
            servers = dnsmod.read_nameservers(path)
            self._resolv_cache = (mtime, servers, text)
        return servers, text

    def _save_and_write_files(self, ep: Endpoint, c, host_network: bool) -> None:
        """Worker: the endpoint of a host or none container, then its /etc files."""
        self._save_endpoint(ep)
        self._write_files(c, host_network)

    def _write_files(self, c, host_network: bool, eps: list[Endpoint] | None = None) -> None:
        """Worker: the container's hosts, hostname and resolv.conf (``eps``: its
        active endpoints, when memory does not have them yet)."""
        if eps is None:
            eps = self.endpoints_of(c.id)
        hc, cfg = c.host_config, c.config
        extra = hc.get("ExtraHosts") or []
        gateway = self.host_gateway()
        hostname = cfg.get("Hostname") or c.id[:12]
        base = hostfiles.read_host_file("/etc/hosts") if host_network else hostfiles.HOSTS_HEADER
        hostfiles.write(c.hosts_path, hostfiles.hosts(
            hostname, cfg.get("Domainname") or "", extra,
            [] if host_network else [e.ip for e in eps if e.ip], gateway,
            base or hostfiles.HOSTS_HEADER))
        hostfiles.write(c.hostname_path, hostname + "\n")
        embedded, forwards = "", True
        for ep in eps:
            net = self._networks.get(ep.network_id)
            if net is not None and net.user_defined and ep.ip:
                embedded, forwards = str(net.pool.gateway), not net.internal
                break
        _, host_text = self._host_resolvers()
        hostfiles.write(c.resolv_conf_path, hostfiles.resolv_conf(
            host_text, hc.get("Dns") or [], hc.get("DnsSearch") or [], hc.get("DnsOptions") or [],
            embedded=embedded, forwards=forwards, host_network=host_network))

    def _share_files(self, other, c) -> None:
        """container:X mode: the other container's files (same network, same names)."""
        for src, dst in ((other.hosts_path, c.hosts_path),
                         (other.resolv_conf_path, c.resolv_conf_path),
                         (other.hostname_path, c.hostname_path)):
            hostfiles.write(dst, hostfiles.read_host_file(src))

    # ------------------------------------------------------------------ inspect
    def settings(self, c) -> dict[str, Any]:
        """Docker's NetworkSettings of a container (inspect)."""
        mode = c.host_config.get("NetworkMode") or "default"
        networks: dict[str, Any] = {}
        top: dict[str, Any] = {"EndpointID": "", "Gateway": "", "IPAddress": "",
                               "IPPrefixLen": 0, "MacAddress": ""}
        mappings: list[portmod.Mapping] = []
        for ep in self.endpoints_of(c.id):
            net = self._networks.get(ep.network_id)
            if net is None:
                continue
            entry = self._endpoint_settings(c, ep, net)
            networks[net.name] = entry
            if net.default_bridge:
                top = {k: entry[k] for k in top}
            if ep.gateway_for_container and ep.ports:
                mappings = [portmod.Mapping.from_record(p) for p in ep.ports]
        sandbox_key = ""
        if mode.startswith("container:"):
            networks = {}
        elif c.running and c.pid:
            sandbox_key = f"/proc/{c.pid}/ns/net"
        return {
            "Bridge": "", "SandboxID": c.id if sandbox_key else "", "SandboxKey": sandbox_key,
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": portmod.settings(mappings, c.config.get("ExposedPorts")),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
            **top, "Networks": networks,
        }

    def _endpoint_settings(self, c, ep: Endpoint, net: Network) -> dict[str, Any]:
        active = bool(ep.ip)
        dns_names = None
        if net.user_defined:
            dns_names = [c.name, *ep.aliases, c.id[:12]]
        return {
            "IPAMConfig": {"IPv4Address": ep.ipv4_request} if ep.ipv4_request else None,
            "Links": None,
            "Aliases": list(ep.aliases) or None,
            "MacAddress": ep.mac if active else ep.mac_request,
            "DriverOpts": ep.driver_opts or None,
            "NetworkID": net.id,
            "EndpointID": ep.endpoint_id,
            "Gateway": str(net.pool.gateway) if active else "",
            "IPAddress": ep.ip,
            "IPPrefixLen": net.pool.prefixlen if active else 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": dns_names,
        }

    def summary(self, c) -> dict[str, Any]:
        """``GET /containers/json``: NetworkSettings.Networks and Ports."""
        s = self.settings(c)
        ports = []
        for key, bindings in (s["Ports"] or {}).items():
            number, _, proto = key.partition("/")
            if not bindings:
                ports.append({"PrivatePort": int(number), "Type": proto})
                continue
            for b in bindings:
                ports.append({"IP": b["HostIp"], "PrivatePort": int(number),
                              "PublicPort": int(b["HostPort"]), "Type": proto})
        return {"Networks": s["Networks"], "Ports": ports}

    def network_names(self, cid: str) -> list[str]:
        return [self._networks[e.network_id].name for e in self.endpoints_of(cid)
                if e.network_id in self._networks]

    # ------------------------------------------------------------------ DNS resolver
    def _client(self, network_id: str, client_ip: str) -> str | None:
        return self._by_ip.get((network_id, client_ip))

    def lookup(self, network_id: str, client_ip: str, name: str) -> list[str] | None:
        cid = self._client(network_id, client_ip)
        if cid is None:
            return None
        name = name.rstrip(".").lower()
        found = self._lookup_names(cid, name)
        if found is None:
            # Some resolvers (busybox's) try "name.<search domain>" first, and stop
            # at the upstream's answer: a container name with one of the asking
            # container's search domains is still ours.
            for domain in self._search_domains(cid):
                if name.endswith("." + domain):
                    found = self._lookup_names(cid, name[: -len(domain) - 1])
                    if found is not None:
                        break
        return found

    def _lookup_names(self, cid: str, name: str) -> list[str] | None:
        found: list[str] = []
        for ep in self.endpoints_of(cid):
            net = self._networks.get(ep.network_id)
            if net is None or not net.user_defined or not ep.ip:
                continue
            for other_cid, other_eps in list(self._endpoints.items()):
                other = other_eps.get(net.id)
                if other is None or not other.ip:
                    continue
                if name in self._dns_names(other_cid, other, net):
                    found.append(other.ip)
        return sorted(set(found)) or None

    def _search_domains(self, cid: str) -> list[str]:
        try:
            search = self._container(cid).host_config.get("DnsSearch") or []
        except BerthError:
            search = []
        if not search:
            _, text = self._host_resolvers()
            for line in text.splitlines():
                fields = line.split()
                if fields and fields[0] in ("search", "domain"):
                    search = fields[1:]
        return [d.strip(".").lower() for d in search if d.strip(".")]

    def _dns_names(self, cid: str, ep: Endpoint, net: Network) -> set[str]:
        cname = self._container_name(cid).lower()
        names = {cname, f"{cname}.{net.name.lower()}", cid[:12]}
        names.update(a.lower() for a in ep.aliases)
        names.update(f"{a.lower()}.{net.name.lower()}" for a in ep.aliases)
        return names

    def lookup_ptr(self, network_id: str, client_ip: str, ip: str) -> str | None:
        cid = self._client(network_id, client_ip)
        if cid is None:
            return None
        for ep in self.endpoints_of(cid):
            net = self._networks.get(ep.network_id)
            if net is None or not net.user_defined or not ep.ip:
                continue
            owner = self._by_ip.get((net.id, ip))
            if owner is not None:
                return f"{self._container_name(owner)}.{net.name}"
        return None

    def upstreams(self, network_id: str, client_ip: str) -> list[str]:
        net = self._networks.get(network_id)
        if net is None or net.internal:
            return []
        # Never back to ourselves: a resolv.conf or --dns naming a gateway of ours
        # would send a query round in circles.
        gateways = {str(n.pool.gateway) for n in self._networks.values() if n.pool_config}
        cid = self._client(network_id, client_ip)
        if cid is not None:
            try:
                dns = self._container(cid).host_config.get("Dns") or []
            except BerthError:
                dns = []
            if dns:
                return [s for s in dns if s not in gateways]
        servers, _ = self._host_resolvers()
        return [s for s in servers if s not in gateways]

    # ------------------------------------------------------------------ start-up / shutdown
    async def _ensure_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    async def start_background(self) -> None:
        """On the daemon's loop, before containers are reconciled: bridges, DNS
        servers, host ports and rules of what the records say is active."""
        await self._ensure_loop()
        self.firewall.forget_jumps()
        try:
            await self._run(hostgc.collect_abandoned, self.options.tag)
        except Exception as exc:  # noqa: BLE001 - never stops a start
            log.warning("cleaning what deleted daemons left on the host: %s", exc)
        for cid, eps in self._endpoints.items():
            for ep in eps.values():
                if ep.gateway_for_container and ep.ports:
                    mappings = [portmod.Mapping.from_record(p) for p in ep.ports]
                    for m in mappings:
                        try:
                            await self._run(portmod.rebind, m)
                        except OSError as exc:
                            log.error("container %s: cannot take host port %s:%d/%s again: %s",
                                      cid[:12], m.host_ip or "0.0.0.0", m.host_port, m.proto,
                                      exc.strerror or exc)
                    self._mappings[cid] = mappings
        for net in self.networks():
            if not net.is_bridge:
                continue
            if net.user_defined or self._active_endpoints(net.id):
                try:
                    await self._ensure_bridge(net)
                except BerthError as exc:
                    log.error("network %s: %s", net.name, exc.message)

    async def reconcile(self, running: set[str]) -> None:
        """After containers are reconciled: endpoints of containers that are not
        running any more are released (their exit happened while no daemon ran)."""
        for cid in list(self._endpoints):
            if cid in running:
                continue
            if any(e.active for e in self._endpoints[cid].values()) or cid in self._mappings:
                await self.release(cid)

    async def stop_background(self) -> None:
        for server in self._dns.values():
            server.close()
        self._dns.clear()

    def close(self) -> None:
        """Daemon shutdown: running containers keep their networks (bridges and
        rules stay for them); bridges nobody uses are taken down; prepared
        namespaces are freed."""
        self.pool.close()
        self.bare_pool.close()
        for server in self._dns.values():
            server.close()
        self._dns.clear()
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()
        for ms in self._mappings.values():
            for m in ms:
                m.close()
        in_use = {e.network_id for eps in self._endpoints.values() for e in eps.values()
                  if e.ip}
        try:
            for nid in list(self._bridges_up):
                net = self._networks.get(nid)
                if net is not None and nid not in in_use:
                    self._bridges_up.discard(nid)
                    fut = self._workers.submit(plumbing.delete_link, net.bridge)
                    fut.result(timeout=30)
            bridges, rules = self._firewall_state()
            self._fw_worker.submit(self.firewall.apply, bridges, rules).result(timeout=60)
            if not self._bridges_up:
                hostgc.unregister(self.options.tag)
        except Exception as exc:  # noqa: BLE001 - shutdown goes on
            log.warning("network clean-up at shutdown: %s", exc)
        self._workers.shutdown(wait=True)
        self._fw_worker.shutdown(wait=True)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid {what}: expected a JSON object of strings")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _endpoints_config(networking_config: Any) -> dict[str, Any]:
    if not networking_config:
        return {}
    if not isinstance(networking_config, dict):
        raise InvalidArgument("invalid NetworkingConfig: expected a JSON object")
    eps = networking_config.get("EndpointsConfig") or {}
    if not isinstance(eps, dict):
        raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig: expected a JSON object")
    return {("bridge" if k == "default" else k): v for k, v in eps.items()}
