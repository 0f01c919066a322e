"""`berth inspect`: low-level information on any kind of object."""

from __future__ import annotations

from ..args import STRING, Command, Flag, at_least
from ..errors import APIError, CLIError
from .common import INSPECT_FORMAT_HELP, format_flag, inspect_objects

# Tried in this order when --type is not given (docker's order). Each object
# kind adds one line: its name and how to fetch one by name or ID.
INSPECTORS = {
    "container": lambda client: client.container_inspect,
    "image": lambda client: client.image_inspect,
    "volume": lambda client: client.volume_inspect,
}
VALID_TYPES = ("config", "container", "image", "network", "node", "plugin", "secret", "service",
               "task", "volume")


def run_inspect(cli, opts, args) -> None:
    kind = opts.type
    if kind and kind not in VALID_TYPES:
        raise CLIError(f'"{kind}" is not a valid value for --type')
    if kind and kind not in INSPECTORS:
        raise CLIError(f"berth does not support objects of type {kind} yet")
    kinds = [kind] if kind else list(INSPECTORS)
    getters = [INSPECTORS[k](cli.client) for k in kinds]
    if opts.size and "container" in kinds:  # -s: sizes for containers
        getters[kinds.index("container")] = lambda ref: cli.client.container_inspect(ref, size=True)

    def get(ref: str):
        for getter in getters:
            try:
                return getter(ref)
            except APIError as e:
                if not e.not_found:
                    raise
        raise APIError(404, f"No such object: {ref}")

    inspect_objects(cli, args, opts.format, get,
                    lambda ref: f"Error: No such {kind or 'object'}: {ref}")


INSPECT = Command("inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on berth objects",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f"),
                         Flag("size", "s", help="Display total file sizes if the type is container"),
                         Flag("type", None, STRING, help="Only inspect objects of the given type")],
                  args=at_least(1), run=run_inspect)
