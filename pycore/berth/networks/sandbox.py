"""Network namespaces prepared ahead of need.

Creating a namespace and a veth pair are the slowest netlink steps of a
start, and they contend with the kernel's (serialised) teardown of the
namespaces of containers that just exited. A few are kept ready — namespace
with ``lo`` up, ``eth0`` inside, the host end named and down — so a start
only has to plug one in: attach to the bridge, address, route. A background
thread tops the pool up after each take.

A prepared sandbox is held by a file descriptor only: if the daemon dies,
the kernel frees it (and its veth pair) with the process.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from berth.errors import SystemError_

from . import plumbing
from .rtnl import Rtnl

log = logging.getLogger("berth.networks")

FIRST_IFNAME = "eth0"
#: Refills wait this long after a take: the start that took one is still
#: spawning its container, and a refill would compete with it for the CPU.
QUIET = 0.05


@dataclass
class Sandbox:
    """A network namespace held by the daemon, a netlink socket inside it, and
    its first veth pair (host end down and unattached, ``eth0`` inside)."""

    fd: int
    veth: str = ""           # host end of eth0's pair ("" for an adopted namespace)
    veth_index: int = 0
    eth0_index: int = 0
    rtnl: Rtnl | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return plumbing.fd_path(self.fd)

    def inside(self) -> Rtnl:
        """The netlink socket inside (opened on first use for an adopted namespace)."""
        if self.rtnl is None:
            self.rtnl = plumbing.rtnl_inside(self.fd)
        return self.rtnl

    def close(self) -> None:
        if self.rtnl is not None:
            self.rtnl.close()
            self.rtnl = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def new_veth_name(prefix: str) -> str:
    return prefix + secrets.token_hex(3)


def make_sandbox(veth_prefix: str, mtu: int = 1500) -> Sandbox:
    fd, rtnl = plumbing.new_netns()
    sandbox = Sandbox(fd, rtnl=rtnl)
    try:
        sandbox.veth = new_veth_name(veth_prefix)
        sandbox.veth_index = plumbing.create_veth(sandbox.veth, fd, FIRST_IFNAME, mtu)
        index = rtnl.link_index(FIRST_IFNAME)
        if index is None:
            raise SystemError_(f"{FIRST_IFNAME} is missing from a new namespace")
        sandbox.eth0_index = index
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def make_bare_sandbox() -> Sandbox:
    """A namespace with only ``lo`` (up): Docker's ``none`` network."""
    fd, rtnl = plumbing.new_netns()
    rtnl.close()
    return Sandbox(fd)


class SandboxPool:
    """Sandboxes made ahead of need by a background thread: with their first veth
    pair (``make``: bridge networks), or bare (``make_bare_sandbox``: ``none``)."""

    def __init__(self, veth_prefix: str, size: int, busy=lambda: False, make=None):
        self.veth_prefix = veth_prefix
        self._make = make or (lambda: make_sandbox(veth_prefix))
        self.size = max(0, size)
        # Refills wait while starts are in flight: they would compete with them
        # for the CPU and the kernel's rtnl lock.
        self._busy = busy
        self._ready: collections.deque[Sandbox] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failures = 0
        self._last_take = 0.0

    def take(self, mtu: int = 1500) -> Sandbox:
        """A ready sandbox, or a new one made now when none is ready."""
        sandbox = None
        with self._cond:
            self._last_take = time.monotonic()
            if self._ready and mtu == 1500:
                sandbox = self._ready.popleft()
            self._start_locked()
            self._cond.notify()
        if sandbox is not None:
            return sandbox
        return make_sandbox(self.veth_prefix, mtu)

    def try_take(self) -> Sandbox | None:
        """A ready sandbox, or None (the caller has a cheaper way than making one now)."""
        with self._cond:
            self._last_take = time.monotonic()
            sandbox = self._ready.popleft() if self._ready else None
            self._start_locked()
            self._cond.notify()
        return sandbox

    def _start_locked(self) -> None:
        if self._thread is None and self.size and not self._closed:
            self._thread = threading.Thread(target=self._fill, name="berth-netns-pool",
                                            daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) >= self.size:
                    self._cond.wait()
                while not self._closed and (self._busy() or
                                            time.monotonic() - self._last_take < QUIET):
                    self._cond.wait(QUIET)
                if self._closed:
                    return
            try:
                sandbox = self._make()
                self._failures = 0
            except plumbing.PoisonedThread:
                log.error("the namespace pool's thread is stuck in a namespace; pool disabled")
                return
            except Exception as exc:  # noqa: BLE001 - a start makes its own then
                self._failures += 1
                log.warning("cannot prepare a network namespace: %s", exc)
                with self._cond:
                    # Back off; a start still makes its own sandbox meanwhile.
                    self._cond.wait(min(30.0, 0.5 * 2 ** self._failures))
                continue
            with self._cond:
                if self._closed:
                    sandbox.close()
                    return
                self._ready.append(sandbox)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            ready, self._ready = list(self._ready), collections.deque()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for s in ready:
            s.close()
