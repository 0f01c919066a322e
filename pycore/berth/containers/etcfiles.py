"""Per-container /etc/hosts, /etc/hostname and /etc/resolv.conf.

They live in the container's directory and are bind-mounted over the image's
files at start, as Docker does, so edits inside the container land there and
nothing in the image layers changes.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"

#: What Docker puts in a container's resolv.conf when the host only has
#: loopback resolvers (those are unreachable from another network namespace).
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844")

_HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def resolv_conf(host_text: str, dns: list[str], search: list[str], options: list[str],
                host_network: bool) -> str:
    """The container's resolv.conf from the host's: loopback nameservers
    dropped (unless the container shares the host's network), overrides from
    --dns/--dns-search/--dns-option applied."""
    nameservers, searches, opts, other = [], [], [], []
    for line in host_text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            if host_network or not _is_loopback(fields[1]):
                nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            opts += fields[1:]
        else:
            other.append(line)
    if dns:
        nameservers = list(dns)
    elif not nameservers:
        nameservers = list(DEFAULT_NAMESERVERS)
    if search:
        searches = [] if search == ["."] else list(search)
    if options:
        opts = list(options)
    lines = [f"nameserver {ns}" for ns in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(other + lines) + "\n"


def hosts(hostname: str, domainname: str, extra_hosts: list[str], host_network: bool) -> str:
    if host_network:
        text = _read(HOST_HOSTS) or _HOSTS_HEADER
    else:
        text = _HOSTS_HEADER
    for entry in extra_hosts:
        name, _, addr = entry.partition(":")
        text += f"{addr}\t{name}\n"
    return text


def write_all(directory: str, config: dict[str, Any], host_config: dict[str, Any]) -> dict[str, str]:
    """Write the three files into ``directory``; returns their paths by name."""
    host_network = host_config.get("NetworkMode") == "host"
    hostname = config.get("Hostname") or ""
    paths = {"hosts": os.path.join(directory, "hosts"),
             "hostname": os.path.join(directory, "hostname"),
             "resolv.conf": os.path.join(directory, "resolv.conf")}
    _write(paths["hostname"], hostname + "\n")
    _write(paths["hosts"], hosts(hostname, config.get("Domainname") or "",
                                 host_config.get("ExtraHosts") or [], host_network))
    _write(paths["resolv.conf"], resolv_conf(_read(HOST_RESOLV_CONF), host_config.get("Dns") or [],
                                             host_config.get("DnsSearch") or [],
                                             host_config.get("DnsOptions") or [], host_network))
    return paths
