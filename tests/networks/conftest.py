"""Fixtures of the network tests.

``net``: a berthd with the test's own default bridge name, subnets, address
pool and resolv.conf, and the busybox image as ``bb``. Afterwards — even when
the test failed — its containers and networks are removed through the CLI,
the daemon is stopped, and the host is checked: no interface, address,
namespace or iptables rule of this daemon may be left (the check waits for
the kernel's asynchronous namespace teardown). Whatever is found is cleaned
up by force and fails the test.
"""

from __future__ import annotations

import time

import pytest

from netkit import IMAGE, NetDaemon, Outside, force_clean, leftovers, new_plan


def _networks_of(d: NetDaemon) -> set[str]:
    """Bridge interfaces of the daemon's networks (to check they are gone)."""
    out = d.berth("network", "ls", "-q", "--no-trunc", check=False).stdout.split()
    bridges = set()
    for nid in out:
        info = d.berth("network", "inspect", "-f",
                       '{{index .Options "com.docker.network.bridge.name"}}|{{.Id}}|{{.Driver}}',
                       nid, check=False).stdout.strip()
        name, _, rest = info.partition("|")
        net_id, _, driver = rest.partition("|")
        if driver == "bridge":
            bridges.add(name or f"br-{net_id[:12]}")
    return bridges


def teardown_daemon(d: NetDaemon, bridges: set[str]) -> None:
    if d.proc is not None:
        ids = d.berth("ps", "-aq", check=False).stdout.split()
        if ids:
            d.berth("rm", "-f", *ids, check=False)
        custom = d.berth("network", "ls", "-q", "--filter", "type=custom", check=False).stdout.split()
        if custom:
            d.berth("network", "rm", *custom, check=False)
        d.stop()


def check_host_clean(d: NetDaemon, bridges: set[str]) -> None:
    found = leftovers(d, bridges)
    deadline = time.monotonic() + 20
    while found and time.monotonic() < deadline:
        # Namespaces (and the veths in them) are freed by the kernel after their
        # last reference goes, asynchronously.
        time.sleep(0.2)
        found = leftovers(d, bridges)
    if found:
        force_clean(d, bridges)
        pytest.fail(f"leftovers on the host after the test: {found}")


@pytest.fixture
def net(workdir, busybox_rootfs):
    plan = new_plan()
    d = NetDaemon(root=workdir / "root", socket=workdir / "berthd.sock")
    d.plan = plan
    d.resolv_conf = workdir / "resolv.conf"
    d.resolv_conf.write_text("nameserver 127.0.0.1\nsearch example.test\n")
    d.root.mkdir()
    d.start()
    bridges: set[str] = {plan.bridge}
    try:
        d.berth("import", str(busybox_rootfs), IMAGE)
        yield d
    finally:
        try:
            if d.proc is not None:
                bridges |= _networks_of(d)
        finally:
            teardown_daemon(d, bridges)
            check_host_clean(d, bridges)


@pytest.fixture
def outside(net):
    o = Outside(net.plan)
    try:
        yield o
    finally:
        o.close()
