"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from ..args import LIST, STRING, Command, Flag, at_least, at_most, no_args
from ..errors import Cancelled, CLIError
from ..formatting import Row, human_size, natural_key, render_rows
from .common import FORMAT_HELP, INSPECT_FORMAT_HELP, filter_flag, filters_dict, format_flag, inspect_objects

DEFAULT_TABLE = "table {{.Driver}}\t{{.Name}}"


class VolumeRow(Row):
    """One line of `berth volume ls` (docker's volumeContext)."""

    type_name = "*formatter.volumeContext"
    fields = ("Name", "Driver", "Scope", "Mountpoint", "Labels", "Label", "Links", "Size", "Group",
              "Availability", "Status")
    headers = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
               "Labels": "LABELS", "Label": "LABEL", "Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
               "Availability": "AVAILABILITY", "Status": "STATUS"}

    def __init__(self, v: dict):
        self.v = v

    def template_json(self) -> dict:
        return {name: getattr(self, name)() for name in sorted(self.fields) if name != "Label"}

    def Name(self):
        return self.v.get("Name") or ""

    def Driver(self):
        return self.v.get("Driver") or ""

    def Scope(self):
        return self.v.get("Scope") or ""

    def Mountpoint(self):
        return self.v.get("Mountpoint") or ""

    def Labels(self):
        labels = self.v.get("Labels") or {}
        return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))

    def Label(self):
        labels = self.v.get("Labels") or {}
        return lambda name: labels.get(name, "")

    def Links(self):
        usage = self.v.get("UsageData")
        return "N/A" if not usage else str(usage.get("RefCount", -1))

    def Size(self):
        usage = self.v.get("UsageData")
        return "N/A" if not usage else human_size(usage.get("Size") or 0, 3)

    def Group(self):
        return "" if not self.v.get("ClusterVolume") else (self.v["ClusterVolume"].get("Spec") or {}).get("Group", "")

    def Availability(self):
        return "N/A"

    def Status(self):
        return "N/A"


def volume_format(source: str, quiet: bool) -> str:
    if source == "table":
        return "{{.Name}}" if quiet else DEFAULT_TABLE
    if source == "raw":
        return "name: {{.Name}}" if quiet else "name: {{.Name}}\ndriver: {{.Driver}}\n"
    return source


def run_ls(cli, opts, args) -> None:
    listing = cli.client.volumes(filters_dict(opts.filter)) or {}
    volumes = sorted(listing.get("Volumes") or [], key=lambda v: natural_key(v.get("Name") or ""))
    fmt = volume_format(opts.format or "table", opts.quiet)
    cli.out.write(render_rows(fmt, [VolumeRow(v) for v in volumes], VolumeRow.headers))


LS = Command("ls", "[OPTIONS]", "List volumes", aliases=("list",),
             flags=[filter_flag(help='Provide filter values (e.g. "dangling=true")'),
                    format_flag(FORMAT_HELP),
                    Flag("quiet", "q", help="Only display volume names")],
             args=no_args(), run=run_ls)


def run_create(cli, opts, args) -> None:
    name = opts.name
    if args:
        if name:
            raise CLIError("conflicting options: cannot specify a volume-name through both --name "
                           "and as a positional arg")
        name = args[0]
    driver_opts = {}
    for item in opts.opt:
        key, _, value = item.partition("=")
        driver_opts[key] = value
    labels = {}
    for item in opts.label:
        key, _, value = item.partition("=")
        labels[key] = value
    volume = cli.client.volume_create({"Driver": opts.driver, "DriverOpts": driver_opts,
                                       "Labels": labels, "Name": name}) or {}
    cli.out.write((volume.get("Name") or "") + "\n")


def _check_label(value: str) -> str:
    from .containeropts import check_label
    return check_label(value)


CREATE = Command("create", "[OPTIONS] [VOLUME]", "Create a volume",
                 flags=[Flag("driver", "d", STRING, default="local", help="Specify volume driver name"),
                        Flag("label", None, LIST, help="Set metadata for a volume", type_name="list",
                             check=_check_label),
                        Flag("name", None, STRING, help="Specify volume name"),
                        Flag("opt", "o", LIST, help="Set driver specific options", type_name="map")],
                 args=at_most(1), run=run_create)


def run_inspect(cli, opts, args) -> None:
    inspect_objects(cli, args, opts.format, cli.client.volume_inspect)


INSPECT = Command("inspect", "[OPTIONS] VOLUME [VOLUME...]", "Display detailed information on one or more volumes",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f")], args=at_least(1), run=run_inspect)


def run_rm(cli, opts, args) -> None:
    errors = []
    for name in args:
        try:
            cli.client.volume_remove(name, force=opts.force)
        except CLIError as e:
            errors.append(e.message)
            continue
        cli.out.write(name + "\n")
    if errors:
        raise CLIError("\n".join(errors))


RM = Command("rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", aliases=("remove",),
             long="Remove one or more volumes. You cannot remove a volume that is in use by a container.",
             flags=[Flag("force", "f", help="Force the removal of one or more volumes")],
             args=at_least(1), run=run_rm)


ANONYMOUS_WARNING = ("WARNING! This will remove anonymous local volumes not used by at least one container.\n"
                     "Are you sure you want to continue?")
ALL_WARNING = ("WARNING! This will remove all local volumes not used by at least one container.\n"
               "Are you sure you want to continue?")


def prune_volumes(cli, all_: bool, filters: dict[str, list[str]]) -> tuple[int, str]:
    """Prune unused volumes; (space reclaimed, report text). Also a `system prune` step."""
    filters = {k: list(v) for k, v in filters.items()}
    if all_:
        filters["all"] = ["true"]
    report = cli.client.volumes_prune(filters) or {}
    deleted = report.get("VolumesDeleted") or []
    if not deleted:
        return 0, ""
    return report.get("SpaceReclaimed") or 0, "Deleted Volumes:\n" + "".join(d + "\n" for d in deleted)


def run_prune(cli, opts, args) -> None:
    filters = filters_dict(opts.filter)
    if opts.all and "all" in filters:
        raise CLIError("conflicting options: cannot specify both --all and --filter all=1")
    if not opts.force and not cli.confirm(ALL_WARNING if opts.all else ANONYMOUS_WARNING):
        raise Cancelled()
    reclaimed, output = prune_volumes(cli, opts.all, filters)
    if output:
        cli.out.write(output + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(reclaimed)}\n")


PRUNE = Command("prune", "[OPTIONS]", "Remove unused local volumes",
                flags=[Flag("all", "a", help="Remove all unused volumes, not just anonymous ones"),
                       filter_flag(None, 'Provide filter values (e.g. "label=<label>")'),
                       Flag("force", "f", help="Do not prompt for confirmation")],
                args=no_args(), run=run_prune)


VOLUME = Command("volume", short="Manage volumes", commands=[CREATE, INSPECT, LS, PRUNE, RM])
