"""The contents of a container's /etc/hosts, /etc/hostname and /etc/resolv.conf.

Written into the container's directory at each start (and again when it is
connected to or disconnected from a network while it runs), and bind-mounted
over the image's files by the runtime, as Docker does.

- hosts: localhost lines, ``--add-host`` entries (``host-gateway`` stands for
  the host's address on the default bridge), then the container's own
  addresses with its hostname.
- resolv.conf: on user-defined networks, the network's embedded DNS server
  (the gateway), with the upstreams noted in a comment; elsewhere the host's
  resolvers (loopback ones dropped unless the container shares the host's
  network, Docker's public defaults if none is left); ``--dns``,
  ``--dns-search`` and ``--dns-option`` override.
"""

from __future__ import annotations

import ipaddress
import os

from berth.errors import InvalidArgument

HOST_GATEWAY = "host-gateway"
#: Docker's fallback when the host only has loopback resolvers.
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def parse_extra_host(entry: str) -> tuple[str, str]:
    """``name:ip`` (or ``name=ip``; IPv6 may be bracketed) -> (name, ip or host-gateway)."""
    if not isinstance(entry, str):
        raise InvalidArgument(f"invalid extra host {entry!r}: expected HOST:IP")
    sep = "=" if "=" in entry else ":"
    name, found, addr = entry.partition(sep)
    addr = addr.strip()
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    if not found or not name or not addr:
        raise InvalidArgument(f"invalid extra host {entry!r}: expected HOST:IP")
    if addr != HOST_GATEWAY:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {addr!r}") from None
    return name, addr


def hosts(hostname: str, domainname: str, extra_hosts: list[str], addresses: list[str],
          host_gateway: str, base: str = HOSTS_HEADER) -> str:
    text = base if base.endswith("\n") or not base else base + "\n"
    for entry in extra_hosts or []:
        name, addr = parse_extra_host(entry)
        if addr == HOST_GATEWAY:
            if not host_gateway:
                raise InvalidArgument(f"unable to derive the IP value for host-gateway in "
                                      f"add-host {entry!r}")
            addr = host_gateway
        text += f"{addr}\t{name}\n"
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for addr in addresses:
        if hostname:
            text += f"{addr}\t{names}\n"
    return text


def read_host_file(path: str) -> str:
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


def resolv_conf(host_text: str, dns: list[str], search: list[str], options: list[str], *,
                embedded: str = "", forwards: bool = True, host_network: bool = False) -> str:
    """The container's resolv.conf. ``embedded``: the address of the network's
    DNS server (user-defined networks), which then is the only nameserver;
    ``forwards``: whether it passes other names on (not on internal networks)."""
    nameservers, searches, opts = [], [], []
    for line in host_text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            opts += fields[1:]
    if search:
        searches = [] if list(search) == ["."] else list(search)
    if options:
        opts = list(options)
    header = ""
    if embedded:
        if not forwards:
            where = "nowhere (internal network)"
        else:
            where = ", ".join(list(dns) if dns else nameservers) or "nowhere"
        header = f"# berth embedded DNS server ({embedded}); other names go to: {where}\n"
        servers = [embedded]
        # A container's resolver must not add search domains before trying a
        # container name ("web" would first go out as "web.example.com").
        if not options and not any(o.startswith("ndots:") for o in opts):
            opts = ["ndots:0", *opts]
    elif dns:
        servers = list(dns)
    else:
        servers = [ns for ns in nameservers if host_network or not _is_loopback(ns)]
        if not servers:
            servers = list(DEFAULT_NAMESERVERS)
    lines = [f"nameserver {ns}" for ns in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if opts:
        lines.append("options " + " ".join(opts))
    return header + "\n".join(lines) + "\n"


def write(path: str, text: str) -> None:
    """Replace the file's contents in place when it exists (a running container
    has it bind-mounted: a rename would leave the mount on the old inode)."""
    try:
        with open(path, "r+") as f:
            f.truncate(0)
            f.write(text)
        return
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
