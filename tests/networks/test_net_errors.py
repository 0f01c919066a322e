"""Bad input and clean-up: each error is clear, and nothing is left behind
(the fixture checks interfaces, namespaces, addresses and rules after each
test; some tests also check midway)."""

from __future__ import annotations

import ipaddress
import os
import signal

from netkit import IMAGE
from netkit import free_port, http_get, links, our_addresses, our_links, our_rules, sh, wait_for


def test_invalid_cidr_and_other_bad_network_requests(net):
    before_addresses, before_rules = our_addresses(net), our_rules(net)
    for args, message in (
            (["--subnet", "10.0.0/24"], "invalid CIDR address: 10.0.0/24"),
            (["--subnet", "10.0.0.1/24"], "it should be 10.0.0.0/24"),
            (["--subnet", net.plan.subnet(0), "--gateway", "10.254.254.1"],
             "no matching subnet for gateway"),
            (["--driver", "overlay"], 'plugin "overlay" not found'),
            (["--ipv6", "--subnet", "fd00:1::/64"], "IPv6"),
            (["-o", "com.docker.network.bridge.name=much-too-long-name"], "invalid bridge name"),
            (["-o", f"com.docker.network.bridge.name={net.plan.bridge}"], "already used")):
        r = net.berth("network", "create", *args, "badnet", check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    assert "badnet" not in net.berth("network", "ls").stdout
    # No bridge got an address of the test's space, no veth or rule appeared.
    assert our_addresses(net) == before_addresses
    assert our_links(net, set()) in ([net.plan.bridge], [])
    assert our_rules(net) == before_rules
    r = net.berth("network", "create", "bridge", check=False)
    assert r.returncode == 1 and "pre-defined network" in r.stderr
    r = net.berth("network", "create", "--driver", "host", "h2", check=False)
    assert r.returncode == 1 and 'only one instance of "host" network is allowed' in r.stderr


def test_overlapping_subnets_are_refused(net, outside):
    subnet = ipaddress.IPv4Network(net.plan.subnet(0))
    net.berth("network", "create", "--subnet", str(subnet), "first")
    addresses = our_addresses(net)
    for candidate, what in ((str(list(subnet.subnets(new_prefix=26))[1]), 'network "first"'),
                            (str(subnet.supernet(new_prefix=22)), 'network'),
                            (str(ipaddress.IPv4Interface(net.plan.bip).network), 'network "bridge"'),
                            (str(net.plan.outside), f"interface {outside.host_if}")):
        r = net.berth("network", "create", "--subnet", candidate, "second", check=False)
        assert r.returncode == 1, candidate
        assert "Pool overlaps with other one on this address space" in r.stderr
        assert what in r.stderr, (candidate, r.stderr)
    assert our_addresses(net) == addresses
    assert net.berth("network", "ls", "-q", "--filter", "name=second").stdout == ""


def test_removing_a_network_in_use(net):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "busy")
    net.berth("run", "-d", "--name", "user1", "--network", "busy", IMAGE, "sleep", "300")
    r = net.berth("network", "rm", "busy", check=False)
    assert r.returncode == 1
    assert "error while removing network: network busy id" in r.stderr
    assert "has active endpoints (user1)" in r.stderr
    assert "busy" in net.berth("network", "ls").stdout
    assert net.berth("exec", "user1", "ping", "-c1", "-W2", "user1").returncode == 0
    # Pre-defined networks cannot go at all.
    for name in ("bridge", "host", "none"):
        r = net.berth("network", "rm", name, check=False)
        assert r.returncode == 1 and f"{name} is a pre-defined network and cannot be removed" in r.stderr
    # Stopped, the container no longer holds it (as with Docker), and then
    # cannot start on the network that is gone.
    net.berth("stop", "-t", "0", "user1")
    net.berth("network", "rm", "busy")
    r = net.berth("start", "user1", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    assert net.berth("inspect", "-f", "{{.State.Running}}", "user1").stdout.strip() == "false"


def test_connect_errors(net):
    net.berth("run", "-d", "--name", "lonely", IMAGE, "sleep", "300")
    r = net.berth("network", "connect", "nosuchnet", "lonely", check=False)
    assert r.returncode == 1 and "network nosuchnet not found" in r.stderr
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "real")
    r = net.berth("network", "connect", "real", "nosuchcontainer", check=False)
    assert r.returncode == 1 and "No such container: nosuchcontainer" in r.stderr
    r = net.berth("network", "connect", "host", "lonely", check=False)
    assert r.returncode == 1 and "host network" in r.stderr
    r = net.berth("network", "connect", "--ip", "192.0.2.50", "real", "lonely", check=False)
    assert r.returncode == 1 and "does not belong" in r.stderr
    # Nothing of the refused connects stayed.
    assert list(net.berth_json("inspect", "lonely")[0]["NetworkSettings"]["Networks"]) == ["bridge"]
    r = net.berth("run", "--rm", "--network", "nosuchnet", IMAGE, "true", check=False)
    assert r.returncode == 125 and "network nosuchnet not found" in r.stderr
    assert net.berth("ps", "-a", "--format", "{{.Names}}").stdout == "lonely\n"


def test_daemon_killed_while_containers_run(net, outside):
    net.berth("network", "create", "--subnet", net.plan.subnet(0), "app")
    port = free_port()
    net.berth("run", "-d", "--name", "web", "--network", "app", "-p", f"{port}:80", IMAGE,
              "httpd", "-f", "-p", "80", "-h", "/etc")
    net.berth("run", "-d", "--name", "client", "--network", "app", IMAGE, "sleep", "300")
    net.berth("run", "-d", "--name", "doomed", "--network", "app", IMAGE, "sleep", "300")
    hostname = net.berth("inspect", "-f", "{{.Config.Hostname}}", "web").stdout.strip() + "\n"
    doomed_ip = net.ip_of("doomed", "app")
    doomed_pid = int(net.berth("inspect", "-f", "{{.State.Pid}}", "doomed").stdout)
    net.kill9()
    # Without a daemon, running containers keep their network and published port.
    assert wait_for(lambda: _try_get(port)) == hostname
    out = outside.exec("busybox", "wget", "-qO-", f"http://{outside.host_ip}:{port}/hostname").stdout
    assert out == hostname
    # One container ends while no daemon runs.
    os.kill(doomed_pid, signal.SIGKILL)
    net.start()
    # Its address came back; the others kept theirs and are found by name again.
    wait_for(lambda: net.berth("inspect", "-f", "{{.State.Running}}", "doomed").stdout.strip()
             == "false", what="doomed to be seen as exited")
    r = net.berth("run", "--rm", "--network", "app", "--ip", doomed_ip, IMAGE, "true", check=False)
    assert r.returncode == 0, r.stderr
    assert net.berth("exec", "client", "wget", "-qO-", "http://web/hostname").stdout == hostname
    assert wait_for(lambda: _try_get(port)) == hostname
    # The port is still held by web: a new container cannot take it.
    r = net.berth("run", "--rm", "-p", f"{port}:80", IMAGE, "true", check=False)
    assert r.returncode == 125 and "already allocated" in r.stderr


def test_a_bridge_removed_behind_the_daemons_back(net):
    net.berth("run", "--rm", IMAGE, "true")
    sh("ip", "link", "del", net.plan.bridge)
    # The next start notices, and the one after works again.
    for _ in range(2):
        r = net.berth("run", "--rm", IMAGE, "ip", "addr", check=False)
        if r.returncode == 0:
            break
        assert "bridge" in r.stderr
    assert r.returncode == 0 and ipaddress.IPv4Interface(net.plan.bip).network.network_address \
        .exploded.rsplit(".", 1)[0] in r.stdout
    assert net.plan.bridge in links()


def _try_get(port: int):
    try:
        return http_get("127.0.0.1", port, "/hostname")
    except OSError:
        return None


def test_what_a_deleted_root_left_is_removed_by_the_next_daemon(net, workdir, busybox_rootfs):
    """A daemon killed with -9 whose root is then deleted (a test's temporary
    root) leaves its bridges and chains; another daemon's start removes them."""
    import shutil
    from netkit import NetDaemon, force_clean, new_plan, tag_of
    plan = new_plan()
    other = NetDaemon(root=workdir / "other" / "root", socket=workdir / "other.sock")
    other.plan, other.resolv_conf = plan, net.resolv_conf
    other.root.mkdir(parents=True)
    bridges = {plan.bridge}
    try:
        other.start()
        nid = other.berth("network", "create", "--subnet", plan.subnet(0), "gone").stdout.strip()
        bridges.add(f"br-{nid[:12]}")
        other.berth("import", str(busybox_rootfs), IMAGE)
        other.berth("run", "--rm", IMAGE, "true")  # the default bridge comes up with a container
        assert bridges <= set(links())
        assert our_rules(other)
        other.kill9()
        shutil.rmtree(workdir / "other")
        assert bridges <= set(links())  # nobody took them down
        net.stop()
        net.start()  # any daemon's start collects them
        wait_for(lambda: not (bridges & set(links())), what="the deleted root's bridges to go")
        assert our_rules(other) == []
        assert not os.path.exists(f"/run/berth/networks/{tag_of(other.root)}")
    finally:
        if other.proc is not None:
            other.stop()
        force_clean(other, bridges)
