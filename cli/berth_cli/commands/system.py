"""System commands: version, info, events, system df, system prune."""

from __future__ import annotations

import os
import sys

from .. import API_VERSION, __version__
from ..args import STRING, Command, Flag, no_args
from ..errors import Cancelled, CLIError, TemplateError
from ..formatting import (Row, bytes_size, created_since, human_size, render_rows, rfc3339,
                          tabwrite, truncate_id)
from .common import (FORMAT_HELP, INSPECT_FORMAT_HELP, filter_flag, filters_dict, format_flag)

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def _render_template(fmt: str, data) -> str:
    from ..formatting import parse_template
    tmpl = parse_template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    try:
        return tmpl.execute(data)
    except TemplateError as e:
        raise TemplateError("template parsing error: " + e.message) from None


# -- version -------------------------------------------------------------------------

def client_version(cli) -> dict:
    machine = os.uname().machine
    return {
        "Platform": {"Name": "berth"},
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "DefaultAPIVersion": API_VERSION,
        "PythonVersion": sys.version.split()[0],
        "Os": sys.platform if sys.platform != "linux" else "linux",
        "Arch": _GO_ARCH.get(machine, machine),
        "Context": "default",
    }


_ENGINE_DETAILS = (("ApiVersion", "API version"), ("GoVersion", "Go version"),
                   ("PythonVersion", "Python version"), ("GitCommit", "Git commit"),
                   ("BuildTime", "Built"), ("OsArch", "OS/Arch"), ("Experimental", "Experimental"))


def _server_components(server: dict) -> list[dict]:
    components = server.get("Components")
    if components:
        return components
    details = {k: server[k] for k in ("ApiVersion", "MinAPIVersion", "GoVersion", "PythonVersion",
                                      "GitCommit", "BuildTime", "Os", "Arch", "Experimental")
               if k in server}
    return [{"Name": "Engine", "Version": server.get("Version", ""), "Details": details}]


def _fmt_detail(value) -> str:
    from ..template import go_str
    return go_str(value)


def version_text(client: dict, server: dict | None) -> str:
    lines = [f"Client: {client['Platform']['Name']}",
             f" Version:\t{client['Version']}",
             f" API version:\t{client['ApiVersion']}",
             f" Python version:\t{client['PythonVersion']}",
             f" OS/Arch:\t{client['Os']}/{client['Arch']}",
             f" Context:\t{client['Context']}"]
    if server is not None:
        name = (server.get("Platform") or {}).get("Name") or ""
        lines += ["", "Server:" + (f" {name}" if name else "")]
        for comp in _server_components(server):
            details = dict(comp.get("Details") or {})
            lines.append(f" {comp.get('Name', '')}:")
            lines.append(f"  Version:\t{comp.get('Version', '')}")
            if comp.get("Name") == "Engine":
                if "Os" in details or "Arch" in details:
                    details["OsArch"] = f"{details.get('Os', '')}/{details.get('Arch', '')}"
                for key, label in _ENGINE_DETAILS:
                    if details.get(key) in (None, ""):
                        continue  # berthd has no Go version, git commit or build time to show
                    value = _fmt_detail(details[key])
                    if key == "GoVersion" and "Python" in value:
                        label = "Python version"  # berthd reports its runtime in Docker's field
                    if key == "ApiVersion" and details.get("MinAPIVersion"):
                        value += f" (minimum version {details['MinAPIVersion']})"
                    lines.append(f"  {label}:\t{value}")
            else:
                for key in sorted(details):
                    lines.append(f"  {key}:\t{_fmt_detail(details[key])}")
    return tabwrite("\n".join(lines) + "\n", minwidth=20, padding=1)


def run_version(cli, opts, args) -> None:
    client = client_version(cli)
    server, error = None, None
    try:
        server = cli.client.version_info()
    except CLIError as e:
        error = e
    if opts.format:
        from ..template import Ordered
        data = Ordered(Client=Ordered(client), Server=Ordered(server) if server is not None else None)
        cli.out.write(_render_template(opts.format, data) + "\n")
    else:
        cli.out.write(version_text(client, server))
    if error is not None:
        cli.out.flush()
        raise error


VERSION = Command("version", "[OPTIONS]", "Show the berth version information",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f")], args=no_args(), run=run_version)


# -- info ------------------------------------------------------------------------------

def _line(lines: list[str], label: str, value) -> None:
    """docker's fprintlnNonEmpty: the line only when there is a value."""
    from ..template import go_str
    if value not in (None, "") and value != []:
        lines.append(f"{label} {go_str(value)}")


def info_text(cli, client: dict, info: dict) -> str:
    lines = ["Client:", f" Version:    {client['Version']}", f" Context:    {client['Context']}",
             f" Debug Mode: {'true' if client['Debug'] else 'false'}", "", "Server:"]
    g = info.get
    lines += [f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
              f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
              f" Images: {g('Images', 0)}"]
    _line(lines, " Server Version:", g("ServerVersion"))
    if g("Driver"):
        lines.append(f" Storage Driver: {g('Driver')}")
        for pair in g("DriverStatus") or []:
            if isinstance(pair, list) and len(pair) == 2:
                lines.append(f"  {pair[0]}: {pair[1]}")
    _line(lines, " Logging Driver:", g("LoggingDriver"))
    _line(lines, " Cgroup Driver:", g("CgroupDriver"))
    _line(lines, " Cgroup Version:", g("CgroupVersion"))
    plugins = g("Plugins") or {}
    if plugins:
        lines.append(" Plugins:")
        for kind in ("Volume", "Network", "Authorization", "Log"):
            if plugins.get(kind) or kind in ("Volume", "Network", "Log"):
                lines.append(f"  {kind}: {' '.join(plugins.get(kind) or [])}".rstrip())
    swarm = g("Swarm") or {}
    if swarm.get("LocalNodeState"):
        lines.append(f" Swarm: {swarm['LocalNodeState']}")
    runtimes = g("Runtimes") or {}
    if runtimes:
        lines.append(" Runtimes: " + " ".join(sorted(runtimes)))
        _line(lines, " Default Runtime:", g("DefaultRuntime"))
    if g("OSType") == "linux":
        _line(lines, " Init Binary:", g("InitBinary"))
        for label, key in (("containerd version", "ContainerdCommit"), ("runc version", "RuncCommit"),
                           ("init version", "InitCommit")):
            commit = g(key) or {}
            if commit.get("ID"):
                lines.append(f" {label}: {commit['ID']}")
    security = g("SecurityOptions") or []
    if security:
        lines.append(" Security Options:")
        for option in security:
            parts = dict(p.split("=", 1) for p in option.split(",") if "=" in p)
            lines.append(f"  {parts.get('name', option)}")
            for k, v in parts.items():
                if k != "name":
                    lines.append(f"   {k.capitalize()}: {v}")
    _line(lines, " Kernel Version:", g("KernelVersion"))
    _line(lines, " Operating System:", g("OperatingSystem"))
    _line(lines, " OSType:", g("OSType"))
    _line(lines, " Architecture:", g("Architecture"))
    lines.append(f" CPUs: {g('NCPU', 0)}")
    lines.append(f" Total Memory: {bytes_size(g('MemTotal') or 0)}")
    _line(lines, " Name:", g("Name"))
    _line(lines, " ID:", g("ID"))
    lines.append(f" Docker Root Dir: {g('DockerRootDir', '')}".rstrip())
    lines.append(f" Debug Mode: {'true' if g('Debug') else 'false'}")
    for label, key in ((" HTTP Proxy:", "HttpProxy"), (" HTTPS Proxy:", "HttpsProxy"),
                       (" No Proxy:", "NoProxy")):
        _line(lines, label, g(key))
    labels = g("Labels") or []
    if labels:
        lines.append(" Labels:")
        lines += [f"  {label}" for label in labels]
    lines.append(f" Experimental: {'true' if g('ExperimentalBuild') else 'false'}")
    registry = g("RegistryConfig") or {}
    insecure = list(registry.get("InsecureRegistryCIDRs") or [])
    insecure += [name for name, idx in (registry.get("IndexConfigs") or {}).items()
                 if not (idx or {}).get("Secure", True)]
    if insecure:
        lines.append(" Insecure Registries:")
        lines += [f"  {r}" for r in insecure]
    mirrors = registry.get("Mirrors") or []
    if mirrors:
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in mirrors]
    lines.append(f" Live Restore Enabled: {'true' if g('LiveRestoreEnabled') else 'false'}")
    return "\n".join(lines) + "\n\n"


def run_info(cli, opts, args) -> None:
    client = {"Version": __version__, "Context": "default", "Debug": cli.debug, "Plugins": [],
              "Warnings": None}
    info = cli.client.info()
    if opts.format:
        from ..template import Ordered
        data = Ordered(info)
        data["ClientInfo"] = Ordered(client)
        cli.out.write(_render_template(opts.format, data) + "\n")
        return
    cli.out.write(info_text(cli, client, info))
    warnings = info.get("Warnings") or []
    if warnings:
        cli.out.flush()
        cli.err.write("".join(w + "\n" for w in warnings))


INFO = Command("info", "[OPTIONS]", "Display system-wide information",
               flags=[format_flag(INSPECT_FORMAT_HELP, "f")], args=no_args(), run=run_info,
               see_also=("berth system info", "berth info"))


# -- events --------------------------------------------------------------------------------

class EventView(Row):
    """An event as docker's templates see it (the events.Message Go struct)."""

    type_name = "events.Message"
    _KEYS = {"Status": ("status", ""), "ID": ("id", ""), "From": ("from", ""), "Type": ("Type", ""),
             "Action": ("Action", ""), "Actor": ("Actor", None), "Scope": ("scope", ""),
             "Time": ("time", 0), "TimeNano": ("timeNano", 0)}
    _FOLDED = {k.lower(): k for k in _KEYS}

    def __init__(self, event: dict):
        self.event = event

    def template_field(self, name: str):
        canonical = self._FOLDED.get(name.lower())
        if canonical is None:
            raise KeyError(name)
        key, default = self._KEYS[canonical]
        value = self.event.get(key, default)
        if canonical == "Actor":
            value = dict(value or {})
            value.setdefault("ID", "")
            value.setdefault("Attributes", {})
        return value

    def template_json(self) -> dict:
        from ..template import Ordered
        out = Ordered()
        for canonical, (key, _) in self._KEYS.items():
            value = self.template_field(canonical)
            if key in ("status", "id", "from") and not value:
                continue  # omitempty in docker's struct
            if canonical == "Actor":
                value = Ordered(ID=value["ID"], Attributes=value["Attributes"])
            out[key] = value
        return out


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """time.ParseDuration ("1h30m", "10m", "1.5s"); None when it is not a duration."""
    import re
    m = re.fullmatch(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)", text)
    if not m:
        return None
    total = sum(float(num) * _DURATION_UNITS[unit]
                for num, unit in re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", m.group(2)))
    return -total if m.group(1) == "-" else total


def get_timestamp(value: str, now: float) -> str:
    """docker's timetypes.GetTimestamp: a duration ago, a date/time, or a unix timestamp,
    as the "seconds.nanoseconds" string the API takes."""
    import calendar
    import re
    import time
    duration = parse_go_duration(value) if value != "0" else None
    if duration is not None:
        return str(int(now - duration))
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?"
                     r"(Z|z|[+-]\d{2}:\d{2})?", value)
    if m:
        y, mo, d, hh, mm, ss, frac, zone = m.groups()
        fields = (int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        try:
            if zone:
                seconds = calendar.timegm(fields + (0, 0, 0))
                if zone not in ("Z", "z"):
                    sign = 1 if zone[0] == "+" else -1
                    seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
            else:
                seconds = int(time.mktime(fields + (0, 0, -1)))
        except (OverflowError, ValueError):
            raise CLIError(f'parsing time "{value}": value out of range') from None
        nanos = int((frac or ".0")[1:].ljust(9, "0")[:9])
        return f"{seconds}.{nanos:09d}"
    if "-" in value:
        raise CLIError(f'parsing time "{value}" as a timestamp: cannot parse')
    if not re.fullmatch(r"\d+(\.\d{1,9})?", value):
        raise CLIError(f'failed to parse value as time or duration: "{value}"')
    return value


def pretty_event(event: dict) -> str:
    parts = []
    nano = event.get("timeNano") or 0
    if nano:
        parts.append(rfc3339(nano // 1_000_000_000, nano % 1_000_000_000) + " ")
    elif event.get("time"):
        parts.append(rfc3339(event["time"], 0) + " ")
    actor = event.get("Actor") or {}
    parts.append(f"{event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}")
    attributes = actor.get("Attributes") or {}
    if attributes:
        parts.append(" (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")")
    return "".join(parts) + "\n"


def run_events(cli, opts, args) -> None:
    from ..template import Template
    tmpl = None
    if opts.format:
        source = "{{json .}}" if opts.format == "json" else opts.format
        try:
            tmpl = Template(source)
            tmpl.execute(EventView({}))  # reject bad fields before waiting for events
        except TemplateError as e:
            raise CLIError("Error parsing format: " + e.message, 64) from None
    now = cli.now()
    since = get_timestamp(opts.since, now) if opts.since else None
    until = get_timestamp(opts.until, now) if opts.until else None
    with cli.client.events(since, until, filters_dict(opts.filter)) as resp:
        for event in resp.iter_json():
            if not isinstance(event, dict):
                continue
            cli.out.write(tmpl.execute(EventView(event)) + "\n" if tmpl else pretty_event(event))
            cli.out.flush()


EVENTS = Command("events", "[OPTIONS]", "Get real time events from the server",
                 flags=[filter_flag(), format_flag(INSPECT_FORMAT_HELP),
                        Flag("since", None, STRING, help="Show all events created since timestamp"),
                        Flag("until", None, STRING, help="Stream events until this timestamp")],
                 args=no_args(), run=run_events, see_also=("berth system events", "berth events"))


# -- df ---------------------------------------------------------------------------------------

DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_IMAGES_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
                   "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}")
DF_CONTAINERS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t"
                       "{{.RunningFor}}\t{{.Status}}\t{{.Names}}")
DF_VOLUMES_TABLE = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
DF_CACHE_TABLE = ("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t"
                  "{{.UsageCount}}\t{{.Shared}}")


class DfRow(Row):
    type_name = "diskUsageContext"
    fields = ("Type", "TotalCount", "Active", "Size", "Reclaimable")
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}

    def __init__(self, kind: str, total: int, active: int, size: int, reclaimable: int,
                 percent: bool = True):
        self.kind, self.total, self.active = kind, total, active
        self.size, self.reclaimable, self.percent = size, reclaimable, percent

    def Type(self):
        return self.kind

    def TotalCount(self):
        return str(self.total)

    def Active(self):
        return str(self.active)

    def Size(self):
        return human_size(self.size)

    def Reclaimable(self):
        if self.percent and self.size > 0:
            return f"{human_size(self.reclaimable)} ({self.reclaimable * 100 // self.size}%)"
        return human_size(self.reclaimable)


def _known(n) -> bool:
    return n is not None and n != -1


def disk_usage_summary(du: dict) -> list[DfRow]:
    images = du.get("Images") or []
    containers = du.get("Containers") or []
    volumes = du.get("Volumes") or []
    cache = du.get("BuildCache") or []
    layers = du.get("LayersSize") or 0
    used = sum(i["Size"] - i["SharedSize"] for i in images
               if (i.get("Containers") or 0) > 0 and _known(i.get("Size")) and _known(i.get("SharedSize")))
    rows = [DfRow("Images", len(images), sum(1 for i in images if (i.get("Containers") or 0) > 0),
                  layers, layers - used)]
    running = [c for c in containers if c.get("State") == "running"]
    rows.append(DfRow("Containers", len(containers), len(running),
                      sum(c.get("SizeRw") or 0 for c in containers),
                      sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running")))
    vol_sizes = [((v.get("UsageData") or {}).get("Size", -1), (v.get("UsageData") or {}).get("RefCount", -1))
                 for v in volumes]
    rows.append(DfRow("Local Volumes", len(volumes), sum(1 for _, refs in vol_sizes if refs and refs > 0),
                      sum(s for s, _ in vol_sizes if _known(s)),
                      sum(s for s, refs in vol_sizes if _known(s) and refs == 0)))
    own = [c for c in cache if not c.get("Shared")]
    rows.append(DfRow("Build Cache", len(cache), sum(1 for c in cache if c.get("InUse")),
                      sum(c.get("Size") or 0 for c in own),
                      sum(c.get("Size") or 0 for c in own if not c.get("InUse")), percent=False))
    return rows


class DfContainerRow(Row):
    type_name = "ContainerContext"
    fields = ("ID", "Image", "Command", "LocalVolumes", "Size", "RunningFor", "Status", "Names")
    headers = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE", "RunningFor": "CREATED",
               "Status": "STATUS", "Names": "NAMES"}

    def __init__(self, c: dict, trunc: bool, now: float):
        self.c, self.trunc, self.now = c, trunc, now

    def ID(self):
        return truncate_id(self.c.get("Id", "")) if self.trunc else self.c.get("Id", "")

    def Image(self):
        image = self.c.get("Image") or "<no image>"
        return truncate_id(image) if self.trunc and image.startswith("sha256:") else image

    def Command(self):
        from ..formatting import ellipsis
        command = f'"{self.c.get("Command", "")}"'
        return ellipsis(command, 20) if self.trunc else command

    def LocalVolumes(self):
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Type") == "volume"))

    def Size(self):
        return human_size(self.c.get("SizeRw") or 0, 3)

    def RunningFor(self):
        return created_since(self.c.get("Created") or 0, self.now)

    def Status(self):
        return self.c.get("Status") or ""

    def Names(self):
        return ",".join(n.lstrip("/") for n in self.c.get("Names") or [])


class DfVolumeRow(Row):
    type_name = "volumeContext"
    fields = ("Name", "Links", "Size")
    headers = {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}

    def __init__(self, v: dict):
        self.v = v

    def Name(self):
        return self.v.get("Name", "")

    def Links(self):
        refs = (self.v.get("UsageData") or {}).get("RefCount", -1)
        return "N/A" if not _known(refs) else str(refs)

    def Size(self):
        size = (self.v.get("UsageData") or {}).get("Size", -1)
        return "N/A" if not _known(size) else human_size(size, 3)


class DfCacheRow(Row):
    type_name = "buildCacheContext"
    fields = ("ID", "CacheType", "Size", "CreatedSince", "LastUsedSince", "UsageCount", "Shared")
    headers = {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE", "CreatedSince": "CREATED",
               "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"}

    def __init__(self, c: dict, trunc: bool, now: float):
        self.c, self.trunc, self.now = c, trunc, now

    def ID(self):
        cid = self.c.get("ID", "")
        return cid[:12] + ("*" if self.c.get("InUse") else "") if self.trunc else cid

    def CacheType(self):
        return self.c.get("Type", "")

    def Size(self):
        return human_size(self.c.get("Size") or 0, 3)

    def _since(self, key):
        from .. import formatting
        value = self.c.get(key)
        if not value:
            return ""
        seconds = _parse_rfc3339(value)
        return "" if seconds is None else formatting.created_since(seconds, self.now)

    def CreatedSince(self):
        return self._since("CreatedAt")

    def LastUsedSince(self):
        return self._since("LastUsedAt")

    def UsageCount(self):
        return str(self.c.get("UsageCount") or 0)

    def Shared(self):
        return "true" if self.c.get("Shared") else "false"


def _parse_rfc3339(text: str) -> float | None:
    import calendar
    import re
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})", text)
    if not m:
        return None
    seconds = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    zone = m.group(7)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


def _df_image_rows(images: list[dict], trunc: bool, now: float) -> list:
    from ..reference import split_for_display
    from .images import ImageRow, _is_dangling
    rows = []
    for image in images:
        repo, tag = "<none>", "<none>"
        if image.get("RepoTags") and not _is_dangling(image):
            ref = split_for_display(image["RepoTags"][0])  # docker shows the first tag only
            if ref is not None and ref.tag:
                repo, tag = ref.familiar_name, ref.tag
        rows.append(ImageRow(image, repo, tag, "", trunc, now))
    return rows


def run_df(cli, opts, args) -> None:
    du = cli.client.system_df()
    now = cli.now()
    fmt = opts.format or "table"
    if not opts.verbose:
        cli.out.write(render_rows(DF_TABLE if fmt == "table" else fmt, disk_usage_summary(du),
                                  DfRow.headers))
        return
    trunc = fmt.startswith("table")
    from .images import ImageRow
    sections = {
        "Images": _df_image_rows(du.get("Images") or [], trunc, now),
        "Containers": [DfContainerRow(c, trunc, now) for c in du.get("Containers") or []],
        "Volumes": [DfVolumeRow(v) for v in du.get("Volumes") or []],
        "BuildCache": [DfCacheRow(c, trunc, now) for c in du.get("BuildCache") or []],
    }
    if fmt != "table":
        cli.out.write(_render_template(fmt, sections))
        return
    cache_size = disk_usage_summary(du)[3].size
    out = ["Images space usage:\n\n",
           render_rows(DF_IMAGES_TABLE, sections["Images"], ImageRow.headers),
           "\nContainers space usage:\n\n",
           render_rows(DF_CONTAINERS_TABLE, sections["Containers"], DfContainerRow.headers),
           "\nLocal Volumes space usage:\n\n",
           render_rows(DF_VOLUMES_TABLE, sections["Volumes"], DfVolumeRow.headers),
           f"\nBuild cache usage: {human_size(cache_size)}\n\n",
           render_rows(DF_CACHE_TABLE, sections["BuildCache"], DfCacheRow.headers)]
    cli.out.write("".join(out))


DF = Command("df", "[OPTIONS]", "Show docker disk usage",
             flags=[format_flag(FORMAT_HELP), Flag("verbose", "v", help="Show detailed information on space usage")],
             args=no_args(), run=run_df)


# -- prune ------------------------------------------------------------------------------------

class Pruner:
    """One kind of object `system prune` removes."""

    def __init__(self, warning: str, warning_all: str, module: str, function: str,
                 flag: str | None = None):
        self.warning, self.warning_all = warning, warning_all
        self.module, self.function = module, function
        self.flag = flag  # a `system prune` flag this step needs (--volumes), else always on

    def enabled(self, opts) -> bool:
        return self.flag is None or bool(getattr(opts, self.flag, False))

    def run(self, cli, all_: bool, filters: dict[str, list[str]]) -> tuple[int, str]:
        module = __import__(f"berth_cli.commands.{self.module}", fromlist=[self.function])
        return getattr(module, self.function)(cli, all_, filters)


# In docker's order; each kind of object is one line here (networks and build cache
# join when their commands land).
PRUNERS = [
    Pruner("all stopped containers", "all stopped containers", "containers", "prune_containers"),
    Pruner("all anonymous volumes not used by at least one container",
           "all anonymous volumes not used by at least one container", "volumes", "prune_volumes",
           flag="volumes"),
    Pruner("all dangling images", "all images without at least one container associated to them",
           "images", "prune_images"),
]

_CONFIRMATION = """WARNING! This will remove:
{{- range $_, $warning := .warnings }}
  - {{ $warning }}
{{- end }}
{{if .filters}}
  Items to be pruned will be filtered with:
{{- range $_, $filters := .filters }}
  - {{ $filters }}
{{- end }}
{{end}}
Are you sure you want to continue?"""


def _natural_key(text: str):
    import re
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def prune_confirmation(all_: bool, filters: dict[str, list[str]], opts=None) -> str:
    from ..template import Template
    warnings = [p.warning_all if all_ else p.warning for p in PRUNERS if opts is None or p.enabled(opts)]
    shown = sorted((f"{name}={v}" for name in ("label", "label!", "until")
                    for v in filters.get(name, [])), key=_natural_key)
    return Template(_CONFIRMATION).execute({"warnings": warnings, "filters": shown})


def run_system_prune(cli, opts, args) -> None:
    filters = filters_dict(opts.filter)
    if opts.volumes and "until" in filters:
        raise CLIError('ERROR: The "until" filter is not supported with "--volumes"')
    if not opts.force and not cli.confirm(prune_confirmation(opts.all, filters, opts)):
        raise Cancelled()
    total = 0
    for pruner in PRUNERS:
        if not pruner.enabled(opts):
            continue
        # volumes go only when anonymous, even with --all (as docker's system prune)
        reclaimed, output = pruner.run(cli, opts.all and pruner.flag is None, filters)
        total += reclaimed
        if output:
            cli.out.write(output + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(total)}\n")


PRUNE = Command("prune", "[OPTIONS]", "Remove unused data",
                flags=[Flag("all", "a", help="Remove all unused images not just dangling ones"),
                       filter_flag(None, 'Provide filter values (e.g. "label=<key>=<value>")'),
                       Flag("force", "f", help="Do not prompt for confirmation"),
                       Flag("volumes", None, help="Prune anonymous volumes")],
                args=no_args(), run=run_system_prune)

SYSTEM = Command("system", short="Manage berth", commands=[DF, EVENTS, INFO, PRUNE])
