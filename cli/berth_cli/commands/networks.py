"""Network commands: network create, ls, inspect, rm, prune, connect, disconnect.

Flags, output and messages follow docker's (cli/command/network). The
requests go through the client's generic JSON calls: one method per endpoint
here keeps this group's code in one place.
"""

from __future__ import annotations

from ..args import BOOL, LIST, STRING, Command, Flag, at_least, exact, no_args
from ..errors import CLIError, Cancelled
from ..formatting import Row, go_time_string, natural_key, render_rows, truncate_id
from .common import (FORMAT_HELP, INSPECT_FORMAT_HELP, filter_flag, filters_dict, format_flag,
                     inspect_objects)

DEFAULT_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

# -- requests ---------------------------------------------------------------------------
# (Standard modules are imported where used: `berth --help` loads every command
# module, and the CLI's start-up must stay light.)


def quote(ref: str, safe: str = "") -> str:
    from urllib.parse import quote as _quote
    return _quote(ref, safe=safe)


def _encode_filters(filters: dict[str, list[str]]) -> str | None:
    from ..client import encode_filters
    return encode_filters(filters)


def network_list(client, filters: dict[str, list[str]]) -> list[dict]:
    return client._json("GET", "/networks", {"filters": _encode_filters(filters)}) or []


def network_inspect(client, ref: str) -> dict:
    return client._json("GET", f"/networks/{quote(ref, safe='')}")


def network_create(client, spec: dict) -> dict:
    return client._post_json("/networks/create", None, spec) or {}


def network_remove(client, ref: str) -> None:
    client._call("DELETE", f"/networks/{quote(ref, safe='')}")


def network_connect(client, ref: str, container: str, endpoint: dict | None) -> None:
    client._post_json(f"/networks/{quote(ref, safe='')}/connect", None,
                      {"Container": container, "EndpointConfig": endpoint})


def network_disconnect(client, ref: str, container: str, force: bool) -> None:
    client._post_json(f"/networks/{quote(ref, safe='')}/disconnect", None,
                      {"Container": container, "Force": force})


def networks_prune(client, filters: dict[str, list[str]]) -> dict:
    return client._json("POST", "/networks/prune", {"filters": _encode_filters(filters)}) or {}


# -- ls --------------------------------------------------------------------------------

_CREATED_RE = r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$"


def _unix(created: str) -> tuple[int, str] | None:
    """RFC 3339 -> (unix seconds, fraction digits)."""
    import calendar
    import re
    m = re.match(_CREATED_RE, created or "")
    if not m:
        return None
    y, mo, d, h, mi, s, fraction, zone = m.groups()
    ts = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ts -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return ts, (fraction or "").rstrip("0")


def go_time(created: str) -> str:
    """Go's time.Time.String() of an RFC 3339 time, in local time: fractional
    seconds shown without trailing zeros, as docker prints CreatedAt."""
    parsed = _unix(created)
    if parsed is None:
        return ""
    ts, fraction = parsed
    text = go_time_string(ts)
    if fraction:
        date, clock, rest = text.split(" ", 2)
        text = f"{date} {clock}.{fraction} {rest}"
    return text


class NetworkRow(Row):
    """One line of `berth network ls` (docker's networkContext)."""

    type_name = "*formatter.networkContext"
    fields = ("ID", "Name", "Driver", "Scope", "IPv6", "Internal", "Labels", "Label", "CreatedAt")
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "Label": "LABEL",
               "CreatedAt": "CREATED AT"}

    def __init__(self, n: dict, trunc: bool):
        self.n = n
        self.trunc = trunc

    def template_json(self) -> dict:
        return {name: getattr(self, name)() for name in sorted(self.fields) if name != "Label"}

    def ID(self):
        nid = self.n.get("Id") or ""
        return truncate_id(nid) if self.trunc else nid

    def Name(self):
        return self.n.get("Name") or ""

    def Driver(self):
        return self.n.get("Driver") or ""

    def Scope(self):
        return self.n.get("Scope") or ""

    def IPv6(self):
        return "true" if self.n.get("EnableIPv6") else "false"

    def Internal(self):
        return "true" if self.n.get("Internal") else "false"

    def Labels(self):
        labels = self.n.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in labels.items())

    def Label(self):
        labels = self.n.get("Labels") or {}
        return lambda name: labels.get(name, "")

    def CreatedAt(self):
        return go_time(self.n.get("Created") or "")


def run_ls(cli, opts, args) -> None:
    networks = network_list(cli.client, filters_dict(opts.filter))
    networks.sort(key=lambda n: natural_key(n.get("Name") or ""))
    fmt = opts.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if opts.quiet else DEFAULT_TABLE
    elif opts.quiet:
        fmt = "{{.ID}}"
    rows = [NetworkRow(n, not opts.no_trunc) for n in networks]
    cli.out.write(render_rows(fmt, rows, NetworkRow.headers))


LS = Command("ls", "[OPTIONS]", "List networks", aliases=("list",),
             flags=[filter_flag(help='Provide filter values (e.g. "driver=bridge")'),
                    format_flag(FORMAT_HELP),
                    Flag("no-trunc", help="Do not truncate the output"),
                    Flag("quiet", "q", help="Only display network IDs")],
             args=no_args(), run=run_ls)


# -- create ----------------------------------------------------------------------------

def _contains(subnet: str, data: str) -> bool:
    """docker's subnetMatches: does CIDR ``subnet`` hold ``data`` (an IP or a CIDR)?"""
    import ipaddress
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise CLIError(f"invalid subnet: invalid CIDR address: {subnet}") from None
    try:
        if "/" in data:
            other = ipaddress.ip_network(data, strict=False)
            return other.version == net.version and other.network_address in net
        return ipaddress.ip_address(data) in net
    except ValueError:
        raise CLIError(f"invalid CIDR address: {data}" if "/" in data
                       else f"invalid IP address: {data}") from None


def ipam_configs(subnets: list[str], ranges: list[str], gateways: list[str],
                 aux: dict[str, str]) -> list[dict]:
    """docker's consolidateIpam: one IPAM config per subnet, with the range,
    gateway and auxiliary addresses that fall inside it."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise CLIError("every ip-range or gateway must have a corresponding subnet")
    configs: dict[str, dict] = {}
    for s in subnets:
        for k in configs:
            if _contains(s, k) or _contains(k, s):
                raise CLIError("multiple overlapping subnet configuration is not supported")
        configs[s] = {"Subnet": s, "AuxiliaryAddresses": {}}
    for r in ranges:
        matched = False
        for s in subnets:
            if not _contains(s, r):
                continue
            if configs[s].get("IPRange"):
                raise CLIError(f"cannot configure multiple ranges ({r}, {configs[s]['IPRange']}) "
                               f"on the same subnet ({s})")
            configs[s]["IPRange"] = r
            matched = True
        if not matched:
            raise CLIError(f"no matching subnet for range {r}")
    for g in gateways:
        matched = False
        for s in subnets:
            if not _contains(s, g):
                continue
            if configs[s].get("Gateway"):
                raise CLIError(f"cannot configure multiple gateways ({g}, {configs[s]['Gateway']}) "
                               f"for the same subnet ({s})")
            configs[s]["Gateway"] = g
            matched = True
        if not matched:
            raise CLIError(f"no matching subnet for gateway {g}")
    for key, addr in aux.items():
        matched = False
        for s in subnets:
            if _contains(s, addr):
                configs[s]["AuxiliaryAddresses"][key] = addr
                matched = True
        if not matched:
            raise CLIError(f"no matching subnet for aux-address {addr}")
    return list(configs.values())


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if what == "aux-address" and not sep:
            raise CLIError(f"invalid argument \"{item}\" for \"--aux-address\" flag: "
                           "expected HOST=IP")
        out[key] = value
    return out


def _check_label(value: str) -> str:
    from .containeropts import check_label
    return check_label(value)


def run_create(cli, opts, args) -> None:
    name = args[0]
    configs = ipam_configs(list(opts.subnet), list(opts.ip_range), list(opts.gateway),
                           _key_values(opts.aux_address, "aux-address"))
    spec = {
        "Name": name,
        "Driver": opts.driver or "bridge",
        "Scope": opts.scope,
        "EnableIPv6": opts.ipv6 or None,
        "IPAM": {"Driver": opts.ipam_driver or "default", "Config": configs,
                 "Options": _key_values(opts.ipam_opt, "ipam-opt")},
        "Internal": opts.internal,
        "Attachable": opts.attachable,
        "Ingress": opts.ingress,
        "ConfigOnly": opts.config_only,
        "ConfigFrom": {"Network": opts.config_from} if opts.config_from else None,
        "Options": _key_values(opts.opt, "opt"),
        "Labels": _key_values(opts.label, "label"),
    }
    created = network_create(cli.client, spec)
    if created.get("Warning"):
        cli.err.write(f"WARNING: {created['Warning']}\n")
    cli.out.write((created.get("Id") or "") + "\n")


CREATE = Command(
    "create", "[OPTIONS] NETWORK", "Create a network",
    flags=[Flag("attachable", help="Enable manual container attachment"),
           Flag("aux-address", None, LIST, help="Auxiliary IPv4 or IPv6 addresses used by Network "
                "driver", type_name="map"),
           Flag("config-from", None, STRING, help="The network from which to copy the configuration"),
           Flag("config-only", help="Create a configuration only network"),
           Flag("driver", "d", STRING, default="bridge", help="Driver to manage the Network"),
           Flag("gateway", None, LIST, help="IPv4 or IPv6 Gateway for the master subnet",
                type_name="strings"),
           Flag("ingress", help="Create swarm routing-mesh network"),
           Flag("internal", help="Restrict external access to the network"),
           Flag("ip-range", None, LIST, help="Allocate container ip from a sub-range",
                type_name="strings"),
           Flag("ipam-driver", None, STRING, default="default", help="IP Address Management Driver"),
           Flag("ipam-opt", None, LIST, help="Set IPAM driver specific options", type_name="map"),
           Flag("ipv6", None, BOOL, help="Enable or disable IPv6 networking"),
           Flag("label", None, LIST, help="Set metadata on a network", type_name="list",
                check=_check_label),
           Flag("opt", "o", LIST, help="Set driver specific options", type_name="map"),
           Flag("scope", None, STRING, help="Control the network's scope"),
           Flag("subnet", None, LIST, help="Subnet in CIDR format that represents a network "
                "segment", type_name="strings")],
    args=exact(1), run=run_create)


# -- inspect -----------------------------------------------------------------------------

def run_inspect(cli, opts, args) -> None:
    inspect_objects(cli, args, opts.format, lambda ref: network_inspect(cli.client, ref))


INSPECT = Command("inspect", "[OPTIONS] NETWORK [NETWORK...]",
                  "Display detailed information on one or more networks",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f"),
                         Flag("verbose", "v", help="Verbose output for diagnostics")],
                  args=at_least(1), run=run_inspect)


# -- rm -----------------------------------------------------------------------------------

def run_rm(cli, opts, args) -> None:
    failed = False
    for ref in args:
        try:
            network_remove(cli.client, ref)
        except CLIError as e:
            if opts.force and getattr(e, "not_found", False):
                continue
            cli.err.write(e.message + "\n")
            failed = True
            continue
        cli.out.write(ref + "\n")
    if failed:
        raise CLIError("", 1)


RM = Command("rm", "NETWORK [NETWORK...]", "Remove one or more networks", aliases=("remove",),
             flags=[Flag("force", "f", help="Do not error if the network does not exist")],
             args=at_least(1), run=run_rm)


# -- prune ---------------------------------------------------------------------------------

PRUNE_WARNING = ("WARNING! This will remove all custom networks not used by at least one "
                 "container.\nAre you sure you want to continue?")


def prune_networks(cli, filters: dict[str, list[str]]) -> str:
    """Prune unused networks; the report text. Also a `system prune` step."""
    report = networks_prune(cli.client, filters)
    deleted = report.get("NetworksDeleted") or []
    if not deleted:
        return ""
    return "Deleted Networks:\n" + "".join(name + "\n" for name in deleted)


def run_prune(cli, opts, args) -> None:
    if not opts.force and not cli.confirm(PRUNE_WARNING):
        raise Cancelled()
    output = prune_networks(cli, filters_dict(opts.filter))
    if output:
        cli.out.write(output + "\n")


PRUNE = Command("prune", "[OPTIONS]", "Remove all unused networks",
                flags=[filter_flag(None, 'Provide filter values (e.g. "until=<timestamp>")'),
                       Flag("force", "f", help="Do not prompt for confirmation")],
                args=no_args(), run=run_prune)


# -- connect / disconnect --------------------------------------------------------------------

def run_connect(cli, opts, args) -> None:
    network, container = args
    ipam = {}
    if opts.ip:
        ipam["IPv4Address"] = opts.ip
    if opts.ip6:
        ipam["IPv6Address"] = opts.ip6
    if opts.link_local_ip:
        ipam["LinkLocalIPs"] = list(opts.link_local_ip)
    endpoint = {"IPAMConfig": ipam or None, "Links": list(opts.link) or None,
                "Aliases": list(opts.alias) or None,
                "DriverOpts": _key_values(opts.driver_opt, "driver-opt") or None}
    network_connect(cli.client, network, container, endpoint)


CONNECT = Command("connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network",
                  flags=[Flag("alias", None, LIST, help="Add network-scoped alias for the container",
                              type_name="strings"),
                         Flag("driver-opt", None, LIST, help="driver options for the network",
                              type_name="strings"),
                         Flag("ip", None, STRING, help="IPv4 address (e.g., \"172.30.100.104\")",
                              type_name="string"),
                         Flag("ip6", None, STRING, help="IPv6 address (e.g., \"2001:db8::33\")",
                              type_name="string"),
                         Flag("link", None, LIST, help="Add link to another container",
                              type_name="list"),
                         Flag("link-local-ip", None, LIST,
                              help="Add a link-local address for the container", type_name="strings")],
                  args=exact(2), run=run_connect)


def run_disconnect(cli, opts, args) -> None:
    network, container = args
    network_disconnect(cli.client, network, container, opts.force)


DISCONNECT = Command("disconnect", "[OPTIONS] NETWORK CONTAINER",
                     "Disconnect a container from a network",
                     flags=[Flag("force", "f", help="Force the container to disconnect from a network")],
                     args=exact(2), run=run_disconnect)


NETWORK = Command("network", short="Manage networks",
                  commands=[CONNECT, CREATE, DISCONNECT, INSPECT, LS, PRUNE, RM])
