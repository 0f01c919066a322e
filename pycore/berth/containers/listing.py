"""``GET /containers/json`` (filters, ContainerSummary) and
``GET /containers/{id}/json`` (ContainerInspect) in Docker's shapes."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from berth.errors import BerthError, InvalidArgument

from . import config as cfg
from .model import DEAD, EXITED, PAUSED, REMOVING, RESTARTING, RUNNING, STATUSES, Container

if TYPE_CHECKING:
    from .service import ContainerService


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, as `docker ps` shows ages."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def status_text(c: Container) -> str:
    now = time.time_ns()
    st = c.state
    if st.status in (RUNNING, PAUSED):
        text = f"Up {human_duration((now - (st.started_ns or now)) / 1e9)}"
        return text + " (Paused)" if st.status == PAUSED else text
    if st.status == RESTARTING:
        return f"Restarting ({st.exit_code}) {human_duration((now - (st.finished_ns or now)) / 1e9)} ago"
    if st.status == REMOVING:
        return "Removal In Progress"
    if st.status == DEAD:
        return "Dead"
    if st.status == EXITED and st.finished_ns:
        return f"Exited ({st.exit_code}) {human_duration((now - st.finished_ns) / 1e9)} ago"
    return "Created"


def command_text(c: Container) -> str:
    args = [f"'{a}'" if " " in a else a for a in c.args]
    return " ".join([c.path, *args]) if args else c.path


def network_name(c: Container) -> str:
    mode = c.host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def _endpoint() -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None}


def _networks(c: Container) -> dict[str, Any]:
    name = network_name(c)
    if name.startswith("container:"):
        return {}
    return {name: _endpoint()}


def _on_network(service: "ContainerService", c: Container, wanted: list[str]) -> bool:
    """The ``network`` filter: a network name or ID (prefix) the container is on."""
    networks = getattr(service, "networks", None)
    if networks is None:
        return network_name(c) in wanted
    for name in networks.network_names(c.id):
        try:
            net = networks.get(name)
        except BerthError:
            continue
        if any(w == net.name or (w and net.id.startswith(w)) for w in wanted):
            return True
    return False


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _sizes(service: "ContainerService", c: Container) -> tuple[int, int]:
    rw = _tree_size(c.upperdir)
    image = 0
    for d in c.lowerdirs:
        image += _tree_size(d)
    return rw, rw + image


def _image_shown(service: "ContainerService", c: Container) -> str:
    """The image as the user named it, or its ID once that name means another
    image (retagged) or nothing (removed), as `docker ps` shows it."""
    try:
        if service.images.resolve(c.image) == c.image_id:
            return c.image
    except BerthError:
        pass
    return c.image_id


def summary(service: "ContainerService", c: Container, size: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": _image_shown(service, c),
        "ImageID": c.image_id,
        "Command": command_text(c),
        "Created": c.created_ns // 1_000_000_000,
        "Ports": [],   # filled from the network service below
        "Labels": c.labels,
        "State": c.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": _networks(c)},
        "Mounts": list(c.mounts),
    }
    networks = getattr(service, "networks", None)
    if networks is not None:
        net = networks.summary(c)
        out["Ports"] = net["Ports"]
        out["NetworkSettings"] = {"Networks": net["Networks"]}
    if size:
        out["SizeRw"], out["SizeRootFs"] = _sizes(service, c)
    return out


def _graph_driver(c: Container) -> dict[str, Any]:
    return {"Name": "overlay2",
            "Data": {"LowerDir": ":".join(c.lowerdirs), "MergedDir": c.rootfs,
                     "UpperDir": c.upperdir, "WorkDir": c.workdir}}


def inspect(service: "ContainerService", c: Container, size: bool = False) -> dict[str, Any]:
    execs = [e.id for e in service.execs.values() if e.container_id == c.id]
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": c.state.inspect(),
        "Image": c.image_id,
        "ResolvConfPath": c.resolv_conf_path,
        "HostnamePath": c.hostname_path,
        "HostsPath": c.hosts_path,
        "LogPath": c.log_path,
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": execs or None,
        "HostConfig": cfg.inspect_host_config(c.host_config),
        "GraphDriver": _graph_driver(c),
        "Mounts": list(c.mounts),
        "Config": cfg.inspect_config(c.config),
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SandboxKey": f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": _networks(c),
        },
    }
    networks = getattr(service, "networks", None)
    if networks is not None:
        out["NetworkSettings"] = networks.settings(c)
    if size:
        out["SizeRw"], out["SizeRootFs"] = _sizes(service, c)
    return out


# --- filters ---------------------------------------------------------------------------

def _check_filters(filters: dict[str, list[str]]) -> None:
    from .service import LIST_FILTERS
    for key, values in filters.items():
        if key not in LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "status":
            for v in values:
                if v not in STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={v}'")
        if key == "exited":
            for v in values:
                try:
                    int(v)
                except ValueError:
                    raise InvalidArgument(f"invalid filter 'exited={v}'") from None
        if key in ("before", "since") and len(values) > 1:
            raise InvalidArgument(f"invalid filter '{key}': give one container")


def _match_name(patterns: list[str], name: str) -> bool:
    for p in patterns:
        try:
            if re.search(p, "/" + name):
                return True
        except re.error:
            if p.lstrip("/") == name:
                return True
    return False


def _label_match(values: list[str], labels: dict[str, str]) -> bool:
    for v in values:
        key, sep, want = v.partition("=")
        if key not in labels or (sep and labels[key] != want):
            return False
    return True


def select(service: "ContainerService", containers: list[Container], all_: bool,
           limit: int | None, filters: dict[str, list[str]]) -> list[Container]:
    _check_filters(filters)
    ordered = sorted(containers, key=lambda c: c.created_ns, reverse=True)
    before = since = None
    if filters.get("before"):
        before = service.get(filters["before"][0]).created_ns
    if filters.get("since"):
        since = service.get(filters["since"][0]).created_ns
    ancestors: set[str] = set()
    for ref in filters.get("ancestor", []):
        try:
            ancestors.add(service.images.resolve(ref))
        except BerthError:
            ancestors.add(ref)
    show_all = all_ or bool(limit and limit > 0) or bool(filters.get("status")) \
        or bool(filters.get("exited"))
    out = []
    for c in ordered:
        if not show_all and c.status not in (RUNNING, PAUSED, RESTARTING):
            continue
        if "id" in filters and not any(c.id.startswith(v) for v in filters["id"]):
            continue
        if "name" in filters and not _match_name(filters["name"], c.name):
            continue
        if "label" in filters and not _label_match(filters["label"], c.labels):
            continue
        if "label!" in filters and _label_match(filters["label!"], c.labels):
            continue
        if "status" in filters and c.status not in filters["status"]:
            continue
        if "exited" in filters and not (c.status == EXITED
                                        and str(c.state.exit_code) in filters["exited"]):
            continue
        if ancestors and c.image_id not in ancestors and c.image not in ancestors:
            continue
        if "network" in filters and not _on_network(service, c, filters["network"]):
            continue
        if "volume" in filters and not any(
                m.get("Name") in filters["volume"] or m.get("Destination") in filters["volume"]
                or m.get("Source") in filters["volume"] for m in c.mounts):
            continue
        if "health" in filters and "none" not in filters["health"]:
            continue
        if "is-task" in filters and "false" not in filters["is-task"]:
            continue
        if "expose" in filters:
            exposed = set((c.config.get("ExposedPorts") or {}).keys())
            if not any(w in exposed or f"{w}/tcp" in exposed for w in filters["expose"]):
                continue
        if "publish" in filters:
            published = set((c.host_config.get("PortBindings") or {}).keys())
            if not any(w in published or f"{w}/tcp" in published for w in filters["publish"]):
                continue
        if before is not None and c.created_ns >= before:
            continue
        if since is not None and c.created_ns <= since:
            continue
        out.append(c)
    if limit and limit > 0:
        out = out[:limit]
    return out
