"""Per-container /etc/hosts, /etc/hostname and /etc/resolv.conf at create.

They live in the container's directory and are bind-mounted over the image's
files, as Docker does, so edits inside the container land there and nothing in
the image layers changes. The network service rewrites them at each start with
the container's addresses and DNS (berth.networks.hostfiles builds the
contents); what is written here is what a created, never-started container
shows.
"""

from __future__ import annotations

import os
from typing import Any

from berth.networks import hostfiles

HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"


def resolv_conf(host_text: str, dns: list[str], search: list[str], options: list[str],
                host_network: bool) -> str:
    """The container's resolv.conf from the host's: loopback nameservers
    dropped (unless the container shares the host's network), overrides from
    --dns/--dns-search/--dns-option applied."""
    return hostfiles.resolv_conf(host_text, dns, search, options, host_network=host_network)


def hosts(hostname: str, domainname: str, extra_hosts: list[str], host_network: bool) -> str:
    base = (hostfiles.read_host_file(HOST_HOSTS) if host_network else "") or hostfiles.HOSTS_HEADER
    # host-gateway needs the default bridge's address: filled in at start.
    extra = [e for e in extra_hosts
             if hostfiles.parse_extra_host(e)[1] != hostfiles.HOST_GATEWAY]
    return hostfiles.hosts(hostname, domainname, extra, [], "", base)


def write_all(directory: str, config: dict[str, Any], host_config: dict[str, Any]) -> dict[str, str]:
    """Write the three files into ``directory``; returns their paths by name."""
    host_network = host_config.get("NetworkMode") == "host"
    hostname = config.get("Hostname") or ""
    paths = {"hosts": os.path.join(directory, "hosts"),
             "hostname": os.path.join(directory, "hostname"),
             "resolv.conf": os.path.join(directory, "resolv.conf")}
    hostfiles.write(paths["hostname"], hostname + "\n")
    hostfiles.write(paths["hosts"], hosts(hostname, config.get("Domainname") or "",
                                          host_config.get("ExtraHosts") or [], host_network))
    hostfiles.write(paths["resolv.conf"], resolv_conf(
        hostfiles.read_host_file(HOST_RESOLV_CONF), host_config.get("Dns") or [],
        host_config.get("DnsSearch") or [], host_config.get("DnsOptions") or [], host_network))
    return paths
