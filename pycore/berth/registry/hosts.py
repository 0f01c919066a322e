"""Where a registry domain is reached: Docker Hub's API host, mirrors, and
which hosts may be spoken to in plain HTTP.

Plain HTTP is allowed only for loopback hosts and for registries configured
as insecure (``--insecure-registry HOST[:PORT]`` or a CIDR); those are tried
over HTTPS first (without certificate checks, as Docker does) and fall back to
HTTP. Every other registry is HTTPS with verified certificates.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
# The key Docker stores Hub credentials under in config.json.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io",
                "https://index.docker.io/v1/", "https://index.docker.io/v1", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: ``host`` is ``name[:port]`` as it goes in
    a URL; ``schemes`` in the order to try them."""

    host: str
    schemes: tuple[str, ...] = ("https",)
    mirror: bool = False
    verify_tls: bool = True

    @property
    def secure_only(self) -> bool:
        return self.schemes == ("https",)


def split_host(host: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6]:port`` -> (name, port)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def is_loopback(host: str) -> bool:
    name, _ = split_host(host)
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def normalize_server_address(address: str) -> str:
    """What users type for login (``localhost:5000``, ``https://x/v2/``,
    empty for Docker Hub) -> the registry domain (``docker.io`` for Hub)."""
    address = (address or "").strip()
    if not address or address in _HUB_ALIASES:
        return DOCKER_HUB_DOMAIN
    if "://" in address:
        parsed = urllib.parse.urlsplit(address)
        address = parsed.netloc
    address = address.rstrip("/").split("/", 1)[0]
    if not address:
        raise InvalidArgument("invalid registry address: empty host")
    if address in _HUB_ALIASES:
        return DOCKER_HUB_DOMAIN
    return address


def _parse_mirror(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidArgument(f"invalid registry mirror {url!r}: expected http(s)://HOST[:PORT]")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise InvalidArgument(f"invalid registry mirror {url!r}: a mirror URL has no path")
    return f"{parsed.scheme}://{parsed.netloc}"


@dataclass
class RegistryOptions:
    """The daemon's registry configuration."""

    mirrors: list[str] = field(default_factory=list)
    insecure: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mirrors = [_parse_mirror(m) for m in self.mirrors]
        self._insecure_hosts: set[str] = set()
        self._insecure_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in self.insecure:
            entry = entry.strip()
            if "://" in entry:
                raise InvalidArgument(f"invalid insecure registry {entry!r}: "
                                      "give HOST[:PORT] or a CIDR, without a scheme")
            if "/" in entry:
                try:
                    self._insecure_nets.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise InvalidArgument(f"invalid insecure registry {entry!r}: bad CIDR") from None
            elif entry:
                self._insecure_hosts.add(entry.lower())

    def is_insecure(self, host: str) -> bool:
        """Whether ``host`` may be reached in plain HTTP (without TLS checks)."""
        host = host.lower()
        if is_loopback(host) or host in self._insecure_hosts:
            return True
        name, _ = split_host(host)
        if name in self._insecure_hosts:
            return True
        if not self._insecure_nets:
            return False
        try:
            addresses = {ipaddress.ip_address(name)}
        except ValueError:
            try:
                addresses = {ipaddress.ip_address(info[4][0].split("%")[0])
                             for info in socket.getaddrinfo(name, None)}
            except (OSError, ValueError):
                return False
        return any(a in net for a in addresses for net in self._insecure_nets)

    def endpoint(self, host: str) -> Endpoint:
        if host == DOCKER_HUB_DOMAIN:
            host = DOCKER_HUB_API_HOST
        if self.is_insecure(host):
            return Endpoint(host, ("https", "http"), verify_tls=False)
        return Endpoint(host)

    def endpoints(self, domain: str, pull: bool = True) -> list[Endpoint]:
        """Endpoints for a registry domain, in the order to try them: Docker
        Hub pulls go to the mirrors first."""
        out = []
        if pull and domain == DOCKER_HUB_DOMAIN:
            for url in self.mirrors:
                scheme, _, netloc = url.partition("://")
                if scheme == "http":
                    out.append(Endpoint(netloc, ("http",), mirror=True, verify_tls=False))
                else:
                    out.append(Endpoint(netloc, ("https",), mirror=True,
                                        verify_tls=not self.is_insecure(netloc)))
        out.append(self.endpoint(domain))
        return out

    def info(self) -> dict:
        """The daemon's RegistryConfig as ``GET /info`` shows it (loopback is
        always insecure, as in Docker)."""
        cidrs = ["127.0.0.0/8"] + [str(n) for n in self._insecure_nets if str(n) != "127.0.0.0/8"]
        index_configs = {DOCKER_HUB_DOMAIN: {"Name": DOCKER_HUB_DOMAIN, "Mirrors": list(self.mirrors),
                                             "Secure": True, "Official": True}}
        for host in sorted(self._insecure_hosts):
            index_configs[host] = {"Name": host, "Mirrors": [], "Secure": False, "Official": False}
        return {"AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index_configs,
                "Mirrors": list(self.mirrors)}
