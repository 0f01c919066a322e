"""Networks: the none, host and bridge drivers, user-defined bridge networks
with an embedded DNS server, IPAM, port publishing and the NAT/filter rules
of one daemon.

Public interface:

- :class:`NetworkService` — the networks API (``create``, ``list``,
  ``inspect``, ``remove``, ``prune``, ``connect``, ``disconnect``) and the
  hooks containers call along their lifecycle:

  ========================  ====================================================
  at create, before         ``check(config, host_config, networking_config)``:
  anything is recorded      validates and normalises (NetworkMode, --ip,
                            --network-alias, --mac-address, -p/-P, --dns,
                            --add-host); raises a BerthError
  at create, once the       ``await register(c)``: records the container's
  container is reserved     endpoints (undone by ``forget``)
  at start, before the      ``await prepare(c) -> str``: wires the container
  spec is written           and writes its hosts/hostname/resolv.conf; returns
                            the spec's ``namespaces.net`` ("host", "none" or a
                            namespace path to join)
  when it exited (and       ``await release(cid)``: addresses, host ports,
  when a start failed)      rules and namespace go (idempotent)
  at removal                ``await forget(cid)``: release + endpoints removed
  inspect / ps              ``settings(c)`` -> NetworkSettings;
                            ``summary(c)`` -> {"Networks", "Ports"};
                            ``network_names(cid)``
  daemon start              ``await start_background()`` before containers
                            are reconciled, ``await reconcile(running_ids)``
                            after; ``await stop_background()``, ``close()``
  ========================  ====================================================

  ``c`` is a container record with ``id``, ``name``, ``config``,
  ``host_config``, ``networking_config``, ``hosts_path``, ``hostname_path``,
  ``resolv_conf_path``, ``running`` and ``pid`` (berth.containers.Container).
  The service finds other containers (``container:ID`` mode, ``network
  connect``, DNS names) through the ``containers`` callable it is given:
  name, ID or ID prefix -> such a record, or NotFound.

- :class:`NetworkOptions` and :func:`add_arguments` / :func:`from_args` —
  berthd's network flags (``--bridge``, ``--bip``, ``--default-address-pool``,
  ``--host-gateway-ip``, ``--resolv-conf``).
"""

from berth.networks.options import NetworkOptions, add_arguments, from_args
from berth.networks.service import NetworkService

__all__ = ["NetworkOptions", "NetworkService", "add_arguments", "from_args"]
