"""Container commands: ps/ls, inspect, logs, stop, kill, restart, pause, unpause,
wait, rm, top, rename, export, commit, diff, update, port, prune, and the
`container` group (whose other members live in run, exec, cp and stats)."""

from __future__ import annotations

from ..args import INT, LIST, STRING, Command, Flag, at_least, exact, no_args
from ..errors import APIError, Cancelled, CLIError
from ..formatting import (Row, created_since, ellipsis, go_time_string, human_size, natural_key, render_rows,
                          truncate_id)
from .common import (FORMAT_HELP, INSPECT_FORMAT_HELP, filter_flag, filters_dict, format_flag,
                     inspect_objects)

# -- ps / ls ---------------------------------------------------------------------------

DEFAULT_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
QUIET_FORMAT = "{{.ID}}"
RAW_FORMAT = ("container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\n"
              "state: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\n"
              "labels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n")


def go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        elif c in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(c)])
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


def _join_host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def displayable_ports(ports: list[dict]) -> str:
    """docker's DisplayablePorts: "0.0.0.0:8080->80/tcp, 9000-9001/tcp"."""
    def key(p):
        return (p.get("PrivatePort") or 0, p.get("IP") or "", p.get("PublicPort") or 0, p.get("Type") or "")

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for port in sorted(ports or [], key=key):
        current = port.get("PrivatePort") or 0
        kind = port.get("Type") or ""
        group_key = kind
        ip = port.get("IP") or ""
        if ip:
            public = port.get("PublicPort") or 0
            if public != current:
                mappings.append(f"{_join_host_port(ip, public)}->{current}/{kind}")
                continue
            group_key = f"{ip}/{kind}"
        group = groups.get(group_key)
        if group is None:
            groups[group_key] = [current, current]
            order.append(group_key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(_form_group(group_key, group[0], group[1]))
        groups[group_key] = [current, current]
    result += [_form_group(k, *groups[k]) for k in order]
    return ", ".join(result + mappings)


def _form_group(key: str, first: int, last: int) -> str:
    ip, slash, kind = key.rpartition("/")
    if not slash:
        ip, kind = "", key
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{_join_host_port(ip, group)}->{group}"
    return f"{group}/{kind}"


class ContainerRow(Row):
    """One line of `berth ps` (docker's formatter.ContainerContext)."""

    type_name = "*formatter.ContainerContext"
    fields = ("ID", "Names", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "State", "Status",
              "Size", "Labels", "Label", "Mounts", "LocalVolumes", "Networks")
    headers = {"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE",
               "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS", "Label": "LABEL",
               "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS"}

    def __init__(self, c: dict, trunc: bool, now: float):
        self.c, self.trunc, self.now = c, trunc, now
        self.size_used = False

    def template_json(self) -> dict:
        return {name: getattr(self, name)() for name in sorted(self.fields) if name != "Label"}

    def ID(self):
        cid = self.c.get("Id") or ""
        return truncate_id(cid) if self.trunc else cid

    def Names(self):
        names = [n.lstrip("/") for n in self.c.get("Names") or []]
        if self.trunc:
            return next((n for n in names if "/" not in n), "")
        return ",".join(names)

    def Image(self):
        image = self.c.get("Image") or ""
        if not image:
            return "<no image>"
        if not self.trunc:
            return image
        if truncate_id(self.c.get("ImageID") or "") == truncate_id(image):
            return truncate_id(image)
        from ..reference import split_for_display  # the daemon's names are valid: no grammar needed
        ref = split_for_display(image)
        if ref is None:
            return image
        return ref.familiar_name + (":" + ref.tag if ref.tag else "")

    def Command(self):
        command = self.c.get("Command") or ""
        return go_quote(ellipsis(command, 20) if self.trunc else command)

    def CreatedAt(self):
        return go_time_string(self.c.get("Created") or 0)

    def RunningFor(self):
        return created_since(self.c.get("Created") or 0, self.now)

    def Ports(self):
        return displayable_ports(self.c.get("Ports") or [])

    def State(self):
        return self.c.get("State") or ""

    def Status(self):
        return self.c.get("Status") or ""

    def Size(self):
        self.size_used = True
        rw = human_size(self.c.get("SizeRw") or 0, 3)
        root = self.c.get("SizeRootFs") or 0
        return f"{rw} (virtual {human_size(root, 3)})" if root > 0 else rw

    def Labels(self):
        labels = self.c.get("Labels") or {}
        return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))

    def Label(self):
        labels = self.c.get("Labels") or {}
        return lambda name: labels.get(name, "")

    def Mounts(self):
        names = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source") or ""
            names.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(names)

    def LocalVolumes(self):
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def Networks(self):
        networks = ((self.c.get("NetworkSettings") or {}).get("Networks")) or {}
        return ",".join(sorted(networks))


def container_format(source: str, quiet: bool, size: bool) -> str:
    """docker's NewContainerFormat."""
    if source in ("table", ""):
        return QUIET_FORMAT if quiet else DEFAULT_TABLE + ("\t{{.Size}}" if size else "")
    if source == "raw":
        return "container_id: {{.ID}}" if quiet else RAW_FORMAT + ("size: {{.Size}}\n" if size else "")
    return QUIET_FORMAT if quiet else source


def _check_template(fmt: str) -> bool:
    """Parse and try a --format on an empty row, as docker does before listing;
    returns whether it reads .Size (then the daemon is asked for sizes)."""
    from ..formatting import expand_format
    from ..template import Template
    from ..errors import TemplateError
    _, source = expand_format(fmt)
    try:
        tmpl = Template(source)
    except TemplateError as e:
        raise CLIError("failed to parse template: " + e.message) from None
    probe = ContainerRow({}, True, 0)
    try:
        tmpl.execute(probe)
    except TemplateError as e:
        raise CLIError("failed to execute template: " + e.message) from None
    return probe.size_used


def run_ps(cli, opts, args) -> None:
    fmt = opts.format
    if fmt and opts.quiet:
        cli.err.write("WARNING: Ignoring custom format, because both --format and --quiet are set.\n")
    size = opts.size
    if fmt and fmt not in ("table", "raw"):
        uses_size = _check_template(fmt)
        if uses_size and not opts.quiet and not size and not opts.changed("size"):
            size = True
    limit = opts.last
    if opts.latest and limit == -1:
        limit = 1
    containers = cli.client.containers(all=opts.all, limit=limit, size=size,
                                       filters=filters_dict(opts.filter))
    now = cli.now()
    rows = [ContainerRow(c, not opts.no_trunc, now) for c in containers]
    cli.out.write(render_rows(container_format(fmt, opts.quiet, size), rows, ContainerRow.headers))


PS_FLAGS = [
    Flag("all", "a", help="Show all containers (default shows just running)"),
    filter_flag(),
    format_flag(FORMAT_HELP),
    Flag("last", "n", INT, default=-1, help="Show n last created containers (includes all states)",
         type_name="int"),
    Flag("latest", "l", help="Show the latest created container (includes all states)"),
    Flag("no-trunc", help="Don't truncate output"),
    Flag("quiet", "q", help="Only display container IDs"),
    Flag("size", "s", help="Display total file sizes"),
]
_PS_ALIASES = ("berth container ls", "berth container list", "berth container ps", "berth ps")
LS = Command("ls", "[OPTIONS]", "List containers", aliases=("ps", "list"), flags=PS_FLAGS,
             args=no_args(), run=run_ps, see_also=_PS_ALIASES)
PS = LS.copy_as("ps")


# -- inspect ------------------------------------------------------------------------------

def run_inspect(cli, opts, args) -> None:
    inspect_objects(cli, args, opts.format, lambda ref: cli.client.container_inspect(ref, opts.size))


INSPECT = Command("inspect", "[OPTIONS] CONTAINER [CONTAINER...]",
                  "Display detailed information on one or more containers",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f"),
                         Flag("size", "s", help="Display total file sizes")],
                  args=at_least(1), run=run_inspect)


# -- operations on several containers --------------------------------------------------------

def for_each(cli, names: list[str], operation, parallel: bool = True) -> list[CLIError]:
    """docker's parallelOperation: ``operation(client, name)`` for each container (at
    once when there are several); the names that succeed are printed in argument
    order, and the errors returned in that order."""
    if parallel and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor
        from ..client import APIClient
        host = cli.client.host

        def one(name):
            client = APIClient(host)  # a connection of its own per worker
            try:
                operation(client, name)
                return None
            except CLIError as e:
                return e
            finally:
                client.close()

        with ThreadPoolExecutor(min(50, len(names))) as pool:
            results = list(pool.map(one, names))
    else:
        results = []
        for name in names:
            try:
                operation(cli.client, name)
                results.append(None)
            except CLIError as e:
                results.append(e)
    errors = []
    for name, error in zip(names, results):
        if error is None:
            cli.out.write(name + "\n")
        else:
            errors.append(error)
    return errors


def raise_joined(errors: list[CLIError]) -> None:
    """docker's errors.Join: all messages, one per line, exit 1."""
    if errors:
        raise CLIError("\n".join(e.message for e in errors))


def run_stop(cli, opts, args) -> None:
    if opts.changed("time") and opts.changed("timeout"):
        raise CLIError("conflicting options: cannot specify both --timeout and --time")
    timeout = None
    if opts.changed("timeout") or opts.changed("time"):
        timeout = opts.timeout if opts.changed("timeout") else opts.time
    raise_joined(for_each(cli, args, lambda client, name: client.container_stop(name, timeout, opts.signal)))


_TIMEOUT_FLAGS = [
    Flag("signal", "s", STRING, help="Signal to send to the container"),
    Flag("time", None, INT, help="Seconds to wait before killing the container (deprecated: use --timeout)",
         type_name="int"),
    Flag("timeout", "t", INT, help="Seconds to wait before killing the container", type_name="int"),
]

STOP = Command("stop", "[OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers",
               flags=_TIMEOUT_FLAGS, args=at_least(1), run=run_stop,
               see_also=("berth container stop", "berth stop"))


def run_restart(cli, opts, args) -> None:
    if opts.changed("time") and opts.changed("timeout"):
        raise CLIError("conflicting options: cannot specify both --timeout and --time")
    timeout = None
    if opts.changed("timeout") or opts.changed("time"):
        timeout = opts.timeout if opts.changed("timeout") else opts.time
    raise_joined(for_each(cli, args, lambda client, name: client.container_stop(
        name, timeout, opts.signal, restart=True), parallel=False))


RESTART = Command("restart", "[OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers",
                  flags=_TIMEOUT_FLAGS, args=at_least(1), run=run_restart,
                  see_also=("berth container restart", "berth restart"))


def run_kill(cli, opts, args) -> None:
    raise_joined(for_each(cli, args, lambda client, name: client.container_kill(name, opts.signal)))


KILL = Command("kill", "[OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers",
               flags=[Flag("signal", "s", STRING, help="Signal to send to the container")],
               args=at_least(1), run=run_kill, see_also=("berth container kill", "berth kill"))


PAUSE = Command("pause", "CONTAINER [CONTAINER...]", "Pause all processes within one or more containers",
                args=at_least(1), see_also=("berth container pause", "berth pause"),
                run=lambda cli, opts, args: raise_joined(for_each(cli, args, lambda c, n: c.container_pause(n))))
UNPAUSE = Command("unpause", "CONTAINER [CONTAINER...]",
                  "Unpause all processes within one or more containers", args=at_least(1),
                  see_also=("berth container unpause", "berth unpause"),
                  run=lambda cli, opts, args: raise_joined(
                      for_each(cli, args, lambda c, n: c.container_pause(n, False))))


def run_rm(cli, opts, args) -> None:
    def remove(client, name):
        name = name.strip("/")
        if not name:
            raise CLIError("container name cannot be empty")
        client.container_remove(name, force=opts.force, volumes=opts.volumes, link=opts.link)

    errors = for_each(cli, args, remove)
    if opts.force:  # with --force, containers that are already gone are reported, not fatal
        gone = [e for e in errors if isinstance(e, APIError) and e.not_found]
        if gone:
            cli.out.flush()
            cli.err.write("".join(e.message + "\n" for e in gone))
        errors = [e for e in errors if e not in gone]
    raise_joined(errors)


RM = Command("rm", "[OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers",
             aliases=("remove",),
             flags=[Flag("force", "f", help="Force the removal of a running container (uses SIGKILL)"),
                    Flag("link", "l", help="Remove the specified link"),
                    Flag("volumes", "v", help="Remove anonymous volumes associated with the container")],
             args=at_least(1), run=run_rm,
             see_also=("berth container rm", "berth container remove", "berth rm"))


def run_wait(cli, opts, args) -> None:
    errors = []
    for name in args:
        try:
            resp = cli.client.container_wait(name).response()
            result = resp.json()
            resp.close()
        except CLIError as e:
            errors.append(e.message)
            continue
        cli.out.write(f"{int((result or {}).get('StatusCode') or 0)}\n")
        cli.out.flush()
    if errors:
        raise CLIError("\n".join(errors))


WAIT = Command("wait", "CONTAINER [CONTAINER...]",
               "Block until one or more containers stop, then print their exit codes",
               args=at_least(1), run=run_wait, see_also=("berth container wait", "berth wait"))


# -- logs ---------------------------------------------------------------------------------

def run_logs(cli, opts, args) -> None:
    from .system import get_timestamp
    info = cli.client.container_inspect(args[0])
    now = cli.now()
    since = get_timestamp(opts.since, now) if opts.since else None
    until = get_timestamp(opts.until, now) if opts.until else None
    tty = bool((info.get("Config") or {}).get("Tty"))
    resp = cli.client.container_logs(info.get("Id") or args[0], follow=opts.follow, since=since,
                                     until=until, timestamps=opts.timestamps, tail=opts.tail,
                                     details=opts.details)
    try:
        if tty:
            for chunk in resp.iter_content():
                cli.out.write_bytes(chunk)
                cli.out.flush()
            return
        from .hijack import FrameDemuxer
        demux = FrameDemuxer()
        for chunk in resp.iter_content():
            for stream, payload in demux.feed(chunk):
                if stream == 3:
                    raise CLIError("error from daemon in stream: " + payload.decode("utf-8", "replace"))
                target = cli.err if stream == 2 else cli.out
                target.write_bytes(payload)
                target.flush()
        demux.finish()
    finally:
        resp.close()


LOGS = Command("logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container",
               flags=[Flag("details", None, help="Show extra details provided to logs"),
                      Flag("follow", "f", help="Follow log output"),
                      Flag("since", None, STRING, help='Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") '
                           'or relative (e.g. "42m" for 42 minutes)'),
                      Flag("tail", "n", STRING, default="all",
                           help="Number of lines to show from the end of the logs"),
                      Flag("timestamps", "t", help="Show timestamps"),
                      Flag("until", None, STRING, help='Show logs before a timestamp (e.g. '
                           '"2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)')],
               args=exact(1), run=run_logs, see_also=("berth container logs", "berth logs"))


# -- top, rename, port, diff -------------------------------------------------------------------

def run_top(cli, opts, args) -> None:
    from ..formatting import tabwrite
    top = cli.client.container_top(args[0], " ".join(args[1:]) or None)
    lines = ["\t".join(top.get("Titles") or [])]
    lines += ["\t".join(proc) for proc in top.get("Processes") or []]
    cli.out.write(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))


TOP = Command("top", "CONTAINER [ps OPTIONS]", "Display the running processes of a container",
              args=at_least(1), run=run_top, interspersed=False,
              see_also=("berth container top", "berth top"))


def run_rename(cli, opts, args) -> None:
    old, new = args[0].strip(), args[1].strip()
    if not old or not new:
        raise CLIError("Error: Neither old nor new names may be empty")
    try:
        cli.client.container_rename(old, new)
    except CLIError as e:
        cli.err.write(e.message + "\n")
        raise CLIError(f"Error: failed to rename container named {old}") from None


RENAME = Command("rename", "CONTAINER NEW_NAME", "Rename a container", args=exact(2), run=run_rename,
                 see_also=("berth container rename", "berth rename"))


def run_port(cli, opts, args) -> None:
    info = cli.client.container_inspect(args[0])
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    out = []
    if len(args) > 1:
        port, _, proto = args[1].partition("/")
        if not port.isdigit() or int(port) > 65535:
            raise CLIError(f'Error: invalid port ({port}): strconv.ParseUint: parsing "{port}": '
                           + ("value out of range" if port.isdigit() else "invalid syntax"))
        frontends = ports.get(f"{port}/{proto or 'tcp'}") or []
        if not frontends:
            raise CLIError(f"Error: No public port '{args[1]}' published for {args[0]}")
        out = [_join_host_port(f.get("HostIp") or "", f.get("HostPort") or "") for f in frontends]
    else:
        for private, frontends in ports.items():
            for f in frontends or []:
                out.append(f"{private} -> {_join_host_port(f.get('HostIp') or '', f.get('HostPort') or '')}")
    if out:
        cli.out.write("\n".join(sorted(out, key=natural_key)) + "\n")


PORT = Command("port", "CONTAINER [PRIVATE_PORT[/PROTO]]",
               "List port mappings or a specific mapping for the container", args=(1, 2), run=run_port,
               see_also=("berth container port", "berth port"))


_CHANGE_KINDS = {0: "C", 1: "A", 2: "D"}


def run_diff(cli, opts, args) -> None:
    changes = cli.client.container_changes(args[0]) or []
    cli.out.write("".join(f"{_CHANGE_KINDS.get(c.get('Kind'), '?')} {c.get('Path', '')}\n" for c in changes))


DIFF = Command("diff", "CONTAINER", "Inspect changes to files or directories on a container's filesystem",
               args=exact(1), run=run_diff, see_also=("berth container diff", "berth diff"))


# -- export, commit ---------------------------------------------------------------------------

def run_export(cli, opts, args) -> None:
    from .images import write_atomically
    if not opts.output:
        if cli.out.isatty():
            raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        with cli.client.container_export(args[0]) as resp:
            for chunk in resp.iter_content():
                cli.out.write_bytes(chunk)
        return
    import os
    directory = os.path.dirname(os.path.abspath(opts.output))
    if not os.path.isdir(directory):
        raise CLIError(f"failed to export container: invalid output path: directory \"{directory}\" "
                       "does not exist")
    with cli.client.container_export(args[0]) as resp:
        write_atomically(opts.output, resp.iter_content())


EXPORT = Command("export", "[OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive",
                 flags=[Flag("output", "o", STRING, help="Write to a file, instead of STDOUT")],
                 args=exact(1), run=run_export, see_also=("berth container export", "berth export"))


def run_commit(cli, opts, args) -> None:
    repo = tag = None
    if len(args) > 1:
        from ..reference import InvalidReference, parse_normalized
        try:
            ref = parse_normalized(args[1])
        except InvalidReference as e:
            raise CLIError(str(e)) from None
        if ref.digest:
            raise CLIError("refusing to create a tag with a digest reference")
        repo, tag = ref.name, ref.tag or "latest"
    result = cli.client.commit(args[0], repo, tag, opts.message, opts.author, opts.change, opts.pause)
    cli.out.write((result or {}).get("Id", "") + "\n")


COMMIT = Command("commit", "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                 "Create a new image from a container's changes",
                 flags=[Flag("author", "a", STRING, help='Author (e.g., "John Hannibal Smith '
                             '<hannibal@a-team.com>")'),
                        Flag("change", "c", LIST, help="Apply Dockerfile instruction to the created image",
                             type_name="list"),
                        Flag("message", "m", STRING, help="Commit message"),
                        Flag("pause", "p", default=True, help="Pause container during commit")],
                 args=(1, 2), run=run_commit, interspersed=False,
                 see_also=("berth container commit", "berth commit"))


# -- update ------------------------------------------------------------------------------------

def run_update(cli, opts, args) -> None:
    from .containeropts import ParseError, parse_restart_policy
    if not opts._changed:
        raise CLIError("you must provide one or more flags when using this command")
    try:
        restart = parse_restart_policy(opts.restart)
    except ParseError as e:
        raise CLIError(e.message) from None
    update = {
        "CpuShares": opts.cpu_shares, "Memory": opts.memory, "NanoCpus": opts.cpus, "CgroupParent": "",
        "BlkioWeight": opts.blkio_weight, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None,
        "CpuPeriod": opts.cpu_period, "CpuQuota": opts.cpu_quota, "CpuRealtimePeriod": opts.cpu_rt_period,
        "CpuRealtimeRuntime": opts.cpu_rt_runtime, "CpusetCpus": opts.cpuset_cpus,
        "CpusetMems": opts.cpuset_mems, "Devices": None, "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": opts.memory_reservation, "MemorySwap": opts.memory_swap,
        "MemorySwappiness": None, "OomKillDisable": None,
        "PidsLimit": opts.pids_limit if opts.pids_limit != 0 else None, "Ulimits": None,
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "RestartPolicy": restart,
    }
    warnings, errors = [], []
    for name in args:
        try:
            result = cli.client.container_update(name, update) or {}
        except CLIError as e:
            errors.append(e.message)
            continue
        cli.out.write(name + "\n")
        warnings += result.get("Warnings") or []
    if warnings:
        cli.out.write("\n".join(warnings) + "\n")
    if errors:
        raise CLIError("\n".join(errors))


def _update_flags() -> list[Flag]:
    from .containeropts import nano_cpus, ram_in_bytes, swap_bytes
    return [
        Flag("blkio-weight", None, INT, help="Block IO (relative weight), between 10 and 1000, or 0 to "
             "disable (default 0)", type_name="uint16"),
        Flag("cpu-period", None, INT, help="Limit CPU CFS (Completely Fair Scheduler) period", type_name="int"),
        Flag("cpu-quota", None, INT, help="Limit CPU CFS (Completely Fair Scheduler) quota", type_name="int"),
        Flag("cpu-rt-period", None, INT, help="Limit the CPU real-time period in microseconds",
             type_name="int"),
        Flag("cpu-rt-runtime", None, INT, help="Limit the CPU real-time runtime in microseconds",
             type_name="int"),
        Flag("cpu-shares", "c", INT, help="CPU shares (relative weight)", type_name="int"),
        Flag("cpus", None, STRING, default=0, help="Number of CPUs", type_name="decimal", check=nano_cpus),
        Flag("cpuset-cpus", None, STRING, help="CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", None, STRING, help="MEMs in which to allow execution (0-3, 0,1)"),
        Flag("memory", "m", STRING, default=0, help="Memory limit", type_name="bytes", check=ram_in_bytes),
        Flag("memory-reservation", None, STRING, default=0, help="Memory soft limit", type_name="bytes",
             check=ram_in_bytes),
        Flag("memory-swap", None, STRING, default=0, type_name="bytes", check=swap_bytes,
             help="Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
        Flag("pids-limit", None, INT, help="Tune container pids limit (set -1 for unlimited)", type_name="int"),
        Flag("restart", None, STRING, help="Restart policy to apply when a container exits"),
    ]


UPDATE = Command("update", "[OPTIONS] CONTAINER [CONTAINER...]",
                 "Update configuration of one or more containers", flags=_update_flags(),
                 args=at_least(1), run=run_update, see_also=("berth container update", "berth update"))


# -- prune -------------------------------------------------------------------------------------

PRUNE_WARNING = "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"


def prune_containers(cli, all_: bool, filters: dict[str, list[str]]) -> tuple[int, str]:
    """Prune stopped containers; (space reclaimed, report text). Also a `system prune` step."""
    report = cli.client.containers_prune(filters) or {}
    deleted = report.get("ContainersDeleted") or []
    if not deleted:
        return 0, ""
    return report.get("SpaceReclaimed") or 0, "Deleted Containers:\n" + "".join(d + "\n" for d in deleted)


def run_prune(cli, opts, args) -> None:
    if not opts.force and not cli.confirm(PRUNE_WARNING):
        raise Cancelled()
    reclaimed, output = prune_containers(cli, False, filters_dict(opts.filter))
    if output:
        cli.out.write(output + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(reclaimed)}\n")


PRUNE = Command("prune", "[OPTIONS]", "Remove all stopped containers",
                flags=[filter_flag(None, 'Provide filter values (e.g. "until=<timestamp>")'),
                       Flag("force", "f", help="Do not prompt for confirmation")],
                args=no_args(), run=run_prune)


# -- the `container` group -----------------------------------------------------------------------

# Members defined in other modules are looked up lazily, so `berth container ls`
# does not import the run/exec/cp machinery.
_MEMBERS = {
    "attach": ("run", "ATTACH"), "commit": None, "cp": ("cp", "CP"), "create": ("run", "CREATE"),
    "diff": None, "exec": ("exec", "EXEC"), "export": None, "inspect": None, "kill": None,
    "logs": None, "ls": None, "pause": None, "port": None, "prune": None, "rename": None,
    "restart": None, "rm": None, "run": ("run", "RUN"), "start": ("run", "START"),
    "stats": ("stats", "STATS"), "stop": None, "top": None, "unpause": None, "update": None,
    "wait": None,
}
_ALIASES = {"ps": "ls", "list": "ls", "remove": "rm"}


def _member(name: str):
    name = _ALIASES.get(name, name)
    if name not in _MEMBERS:
        return None
    where = _MEMBERS[name]
    if where is None:
        return globals()[name.upper()]
    module = __import__(f"berth_cli.commands.{where[0]}", fromlist=[where[1]])
    return getattr(module, where[1])


CONTAINER = Command("container", short="Manage containers", lookup=_member,
                    listing=lambda: [_member(n) for n in _MEMBERS])
