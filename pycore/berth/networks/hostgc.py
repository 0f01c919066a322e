"""Host objects left by daemons whose data root is gone.

A daemon killed with ``kill -9`` cannot take its bridges and iptables chains
down; when it starts again on the same root it adopts them. But a root that
was deleted (a test's temporary root, say) never starts again, and its
bridges would keep their subnets and its chains their jumps forever. So each
daemon registers what it puts on the host in ``/run/berth/networks/<tag>``
(its root, its bridges), and a starting daemon removes what is registered
for roots that no longer exist. A root that exists is never touched: its own
daemon reconciles it when it starts.
"""

from __future__ import annotations

import json
import logging
import os

from . import plumbing
from .firewall import Firewall

log = logging.getLogger("berth.networks")

REGISTRY = "/run/berth/networks"


def _path(tag: str) -> str:
    return os.path.join(REGISTRY, tag)


def register(tag: str, root: str, bridges: list[str]) -> None:
    os.makedirs(REGISTRY, mode=0o755, exist_ok=True)
    tmp = f"{_path(tag)}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"root": root, "bridges": sorted(set(bridges))}, f)
    os.rename(tmp, _path(tag))


def unregister(tag: str) -> None:
    try:
        os.unlink(_path(tag))
    except FileNotFoundError:
        pass


def collect_abandoned(own_tag: str) -> list[str]:
    """Remove bridges, host-side veths and chains registered by daemons whose
    root is gone; returns what was removed."""
    removed: list[str] = []
    try:
        names = os.listdir(REGISTRY)
    except FileNotFoundError:
        return removed
    for tag in names:
        if tag == own_tag or "." in tag:
            continue
        try:
            with open(_path(tag)) as f:
                entry = json.load(f)
            root = entry["root"]
            bridges = list(entry.get("bridges") or [])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if os.path.isdir(root):
            continue
        for name in bridges:
            if plumbing.delete_link(name):
                removed.append(name)
        for name in plumbing.links_with_prefix(f"vb{tag}"):
            if plumbing.delete_link(name):
                removed.append(name)
        try:
            Firewall(f"BERTH-{tag}").apply([], [])
            removed.append(f"BERTH-{tag} chains")
        except Exception as exc:  # noqa: BLE001 - the next start tries again
            log.warning("cannot remove the chains of the daemon that had root %s: %s", root, exc)
            continue
        unregister(tag)
    if removed:
        log.info("removed what daemons with deleted data roots left on the host: %s",
                 ", ".join(removed))
    return removed
