"""Kernel plumbing over netlink (pyroute2): bridges, veth pairs, network
namespaces, addresses and routes.

Every function blocks and is run by the service in its own worker threads.
A network namespace is entered per *thread* (``setns`` affects only the
calling thread), so work inside a container's namespace happens in a worker
that enters it, opens a netlink socket there (a socket stays bound to the
namespace it was created in) and returns to the daemon's namespace before
doing anything else; :func:`entered` guarantees the way back.

Namespaces are held by file descriptors, never bind mounts: a daemon killed
with ``kill -9`` leaves no namespace, mount or veth pair behind for a
container that is not running (the kernel frees a namespace with its last
reference). A container joins its namespace through ``/proc/<daemon
pid>/fd/<fd>``; once it runs, its own membership keeps the namespace alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import ipaddress
import logging
import os
import secrets
import socket
import threading
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from berth.errors import Conflict, SystemError_

from .rtnl import Rtnl

log = logging.getLogger("berth.networks")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

#: The daemon's own network namespace (opened once, from the main thread).
_HOST_NS_FD = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

_local = threading.local()


class PoisonedThread(RuntimeError):
    """A worker could not return to the daemon's namespace; it must not be reused."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns_fd: int) -> Iterator[None]:
    """Run the block with this thread inside the namespace ``ns_fd``."""
    _setns(ns_fd)
    try:
        yield
    finally:
        try:
            _setns(_HOST_NS_FD)
        except OSError as exc:  # pragma: no cover - would need a kernel failure
            _local.poisoned = True
            raise PoisonedThread(f"cannot return to the daemon's network namespace: {exc}") from exc


def _nl() -> IPRoute:
    """This thread's netlink socket in the daemon's namespace (no event groups:
    requests only, nothing queues up between calls)."""
    if getattr(_local, "poisoned", False):
        raise PoisonedThread("this worker thread is stuck in a container's network namespace")
    ipr = getattr(_local, "ipr", None)
    if ipr is None:
        ipr = _local.ipr = IPRoute(groups=0)
    return ipr


def _ns_nl() -> IPRoute:
    """A new netlink socket in the namespace this thread is in now."""
    return IPRoute(groups=0)


def _err(what: str, exc: BaseException) -> SystemError_:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return SystemError_(f"{what}: {reason}")


# -- namespaces -------------------------------------------------------------------------

def new_netns() -> tuple[int, Rtnl]:
    """A new network namespace with ``lo`` up: an fd holding it, and a netlink
    socket opened inside it."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise SystemError_(f"cannot create a network namespace: {os.strerror(err)}")
    fd = -1
    rtnl = None
    try:
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        rtnl = Rtnl()
        rtnl.set_link(1, up=True)
    except BaseException as exc:
        if rtnl is not None:
            rtnl.close()
        if fd >= 0:
            os.close(fd)
        if isinstance(exc, OSError):
            raise _err("cannot set up a network namespace", exc) from None
        raise
    finally:
        try:
            _setns(_HOST_NS_FD)
        except OSError as exc:  # pragma: no cover
            _local.poisoned = True
            raise PoisonedThread(f"cannot return to the daemon's network namespace: {exc}") from exc
    return fd, rtnl


def rtnl_inside(ns_fd: int) -> Rtnl:
    """A netlink socket inside the namespace ``ns_fd``."""
    with entered(ns_fd):
        return Rtnl()


def host_rtnl() -> Rtnl:
    """This thread's raw netlink socket in the daemon's namespace."""
    if getattr(_local, "poisoned", False):
        raise PoisonedThread("this worker thread is stuck in a container's network namespace")
    r = getattr(_local, "rtnl", None)
    if r is None:
        r = _local.rtnl = Rtnl()
    return r


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _err(f"cannot open network namespace {path}", exc) from None


def fd_path(fd: int) -> str:
    """A path another process can open to join the namespace held by ``fd``."""
    return f"/proc/{os.getpid()}/fd/{fd}"


# -- host-side links ---------------------------------------------------------------------

def link_index(name: str) -> int | None:
    found = _nl().link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    return link_index(name) is not None


def random_mac() -> str:
    """A locally administered unicast MAC."""
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def mac_for_ip(ip: ipaddress.IPv4Address) -> str:
    """Docker's MAC for an address (02:42 + the address): a container that gets a
    released address back keeps the neighbours' ARP entries valid."""
    return "02:42:" + ":".join(f"{x:02x}" for x in ip.packed)


def ensure_bridge(name: str, gateway_cidr: str, mtu: int = 1500) -> int:
    """Create (or adopt) bridge ``name`` with the gateway address, up."""
    ipr = _nl()
    index = link_index(name)
    try:
        if index is None:
            # An explicit MAC: otherwise the bridge takes its lowest port's, and
            # changes it as containers come and go (breaking neighbours' ARP).
            ipr.link("add", ifname=name, kind="bridge", address=random_mac(), mtu=mtu)
            index = link_index(name)
            if index is None:
                raise SystemError_(f"bridge {name} vanished right after its creation")
        else:
            kind = _link_kind(index)
            if kind != "bridge":
                raise Conflict(f"cannot use {name} as a bridge: an interface of kind "
                               f"{kind or 'unknown'} already has that name")
        iface = ipaddress.IPv4Interface(gateway_cidr)
        wanted = (str(iface.ip), iface.network.prefixlen)
        have = {(a.get("address"), a.get("prefixlen"))
                for a in ipr.get_addr(family=socket.AF_INET, index=index)}
        if wanted not in have:
            ipr.addr("add", index=index, address=wanted[0], prefixlen=wanted[1])
        ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise _err(f"cannot set up bridge {name}", exc) from None
    return index


def _link_kind(index: int) -> str:
    for msg in _nl().get_links(index):
        info = msg.get("IFLA_LINKINFO") or msg.get(("linkinfo"))
        if info:
            return info.get("IFLA_INFO_KIND") or ""
    return ""


def delete_link(name: str) -> bool:
    index = link_index(name)
    if index is None:
        return False
    try:
        _nl().link("del", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise _err(f"cannot delete interface {name}", exc) from None
    return True


def links_with_prefix(prefix: str) -> list[str]:
    return [m.get("ifname") for m in _nl().get_links()
            if (m.get("ifname") or "").startswith(prefix)]


def bridge_ports(bridge: str) -> list[str]:
    index = link_index(bridge)
    if index is None:
        return []
    return [m.get("ifname") for m in _nl().get_links() if m.get("master") == index]


def set_sysctl(path: str, value: str) -> None:
    try:
        with open(os.path.join("/proc/sys", path), "w") as f:
            f.write(value)
    except OSError as exc:
        raise _err(f"cannot set {path.replace('/', '.')}", exc) from None


def host_ipv4_routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """Every IPv4 destination the host routes somewhere (default routes left out),
    with its interface name: what a new subnet must not overlap."""
    ipr = _nl()
    names = {m["index"]: m.get("ifname") for m in ipr.get_links()}
    out = []
    for r in ipr.get_routes(family=socket.AF_INET, table=254):
        plen = r.get("dst_len")
        dst = r.get("dst")
        if not plen or not dst:
            continue
        try:
            out.append((ipaddress.IPv4Network(f"{dst}/{plen}", strict=False),
                        names.get(r.get("oif"), "")))
        except ValueError:
            continue
    for a in ipr.get_addr(family=socket.AF_INET):
        try:
            net = ipaddress.IPv4Interface(f"{a.get('address')}/{a.get('prefixlen')}").network
        except ValueError:
            continue
        if not net.is_loopback:
            out.append((net, names.get(a["index"], "")))
    return out


# -- veth pairs -------------------------------------------------------------------------------

def create_veth(host_name: str, ns_fd: int, peer_name: str, mtu: int = 1500) -> int:
    """A veth pair: ``host_name`` here (down), ``peer_name`` inside ``ns_fd``."""
    ipr = _nl()
    try:
        ipr.link("add", ifname=host_name, kind="veth", mtu=mtu,
                 peer={"ifname": peer_name, "net_ns_fd": ns_fd, "mtu": mtu})
    except NetlinkError as exc:
        raise _err(f"cannot create veth pair {host_name}", exc) from None
    index = host_rtnl().link_index(host_name)
    if index is None:
        raise SystemError_(f"veth {host_name} vanished right after its creation")
    return index


def attach_port(veth_index: int, bridge_index: int, what: str) -> None:
    """Enslave the host end of a veth to the bridge and bring it up."""
    try:
        rtnl = host_rtnl()
        rtnl.set_link(veth_index, master=bridge_index, up=True)
        rtnl.set_hairpin(veth_index)
    except OSError as exc:
        raise _err(f"cannot attach {what}", exc) from None


def configure_inside(rtnl: Rtnl, index: int, ifname: str, mac: str, cidr: str,
                     gateway: str | None) -> None:
    """Inside the namespace (through a socket opened there): MAC and up,
    address, and the default route."""
    try:
        rtnl.set_link(index, mac=mac, up=True)
        rtnl.add_address(index, cidr)
        if gateway:
            rtnl.add_default_route(gateway, index)
    except OSError as exc:
        raise _err(f"cannot configure {ifname} in the container's namespace", exc) from None


def remove_inside(ns_fd: int, ifname: str) -> None:
    """Delete an interface inside the namespace (its veth peer goes with it)."""
    with entered(ns_fd), _ns_nl() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise _err(f"cannot remove {ifname} from the container's namespace", exc) from None


def links_inside(ns_fd: int) -> list[str]:
    with entered(ns_fd), _ns_nl() as ipr:
        return [m.get("ifname") for m in ipr.get_links()]


def set_default_route(ns_fd: int, gateway: str | None) -> None:
    """Replace the namespace's default route (``None``: remove it)."""
    with entered(ns_fd), _ns_nl() as ipr:
        try:
            ipr.route("del", dst="0.0.0.0/0")
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise _err("cannot remove the container's default route", exc) from None
        if gateway:
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            except NetlinkError as exc:
                raise _err(f"cannot route the container through {gateway}", exc) from None
