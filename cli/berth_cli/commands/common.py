"""Pieces several command groups share: flag types, help texts, inspect, prompts."""

from __future__ import annotations

from ..args import LIST, STRING, Flag
from ..errors import APIError, CLIError, TemplateError

FORMAT_HELP = """Format output using a custom template:
'table':            Print output in table format with column headers (default)
'table TEMPLATE':   Print output in table format using the given Go template
'json':             Print in JSON format
'TEMPLATE':         Print output using the given Go template.
Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates"""

INSPECT_FORMAT_HELP = """Format output using a custom template:
'json':             Print in JSON format
'TEMPLATE':         Print output using the given Go template.
Refer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates"""


def _filter_pair(value: str) -> tuple[str, str]:
    """opts.FilterOpt: "name=value", name lower-cased, both trimmed."""
    if "=" not in value:
        raise ValueError("bad format of filter (expected name=value)")
    name, _, val = value.partition("=")
    return name.strip().lower(), val.strip()


def filter_flag(short: str | None = "f",
                help: str = "Filter output based on conditions provided") -> Flag:
    return Flag("filter", short, LIST, help=help, type_name="filter", check=_filter_pair)


def format_flag(help: str = FORMAT_HELP, short: str | None = None) -> Flag:
    return Flag("format", short, STRING, help=help, type_name="string")


def filters_dict(pairs) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for name, value in pairs:
        filters.setdefault(name, []).append(value)
    return filters


def open_input(path: str, what: str = "open"):
    try:
        return open(path, "rb")
    except OSError as e:
        raise CLIError(f"{what} {path}: {(e.strerror or str(e)).lower()}") from None


def inspect_objects(cli, refs: list[str], fmt: str, getter, not_found=None) -> None:
    """docker's inspect.Inspect: a JSON array, or the template once per object.

    ``getter(ref)`` returns the decoded object; ``not_found(ref)`` the message
    for a missing one (without it, the daemon's error is shown, as docker's
    container and volume inspect do). Objects found are printed even when others
    are missing; the errors follow on stderr and the exit code is 1.
    """
    from ..formatting import parse_template
    tmpl = None
    if fmt and fmt != "json":
        tmpl = parse_template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    found, errors, rendered = [], [], []
    for ref in refs:
        try:
            obj = getter(ref)
        except APIError as e:
            errors.append(not_found(ref) if e.not_found and not_found else e.message)
            continue
        if tmpl is None:
            found.append(obj)
            continue
        try:
            rendered.append(tmpl.execute(obj, missingkey="error") + "\n")
        except TemplateError as e:
            errors.append("template parsing error: " + e.message)
    if tmpl is None:
        if fmt == "json":
            import json
            cli.out.write("".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n"
                                  for o in found))
        else:
            cli.out.write(indented_json_array(found))
    else:
        cli.out.write("".join(rendered))
    if errors:
        raise CLIError("\n".join(errors))


def indented_json_array(objects: list) -> str:
    """docker's indented inspect output: a JSON array indented by 4 spaces."""
    from ..jsonio import dumps_indented
    return dumps_indented(objects) + "\n"
