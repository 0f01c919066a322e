"""Typed instructions from parsed Dockerfile nodes, grouped into stages.

:func:`parse_stages` turns a :class:`~berth.builder.dockerfile.Dockerfile`
into the global ``ARG`` s before the first ``FROM`` and a list of
:class:`Stage` s, each with its commands. Flags are checked here
(``--from``, ``--chown``, ``--chmod``, ``--link``, ``--checksum``,
``--mount``, ``--network`` ...), so a typo fails before anything runs, with
the line number. Variables are *not* expanded here: that happens when a
stage runs, with the ARG/ENV values in scope at that point.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from typing import Any

from .dockerfile import KEYWORDS, Dockerfile, DockerfileSyntaxError, Heredoc, Node

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-_.]*$")
_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


class InstructionError(DockerfileSyntaxError):
    pass


# -- flags -------------------------------------------------------------------------

_BOOL, _STRING, _STRINGS = "bool", "string", "strings"


class _Flags:
    """``--name=value`` flags of one instruction, with Docker's checks."""

    def __init__(self, raw: list[str], spec: dict[str, str]):
        self.values: dict[str, Any] = {}
        self.used: list[str] = []
        for arg in raw:
            if arg == "--":
                break
            if not arg.startswith("--"):
                raise ValueError(f"arg should start with -- : {arg}")
            name, eq, value = arg.partition("=")
            key = name[2:]
            kind = spec.get(key)
            if kind is None:
                message = f"unknown flag: {name}"
                suggestion = _suggest(key, list(spec), case_sensitive=True)
                raise ValueError(message + (f" (did you mean {suggestion}?)" if suggestion else ""))
            if key in self.used and kind != _STRINGS:
                raise ValueError(f"duplicate flag specified: {name}")
            self.used.append(key)
            if kind == _BOOL:
                if eq and value == "":
                    raise ValueError(f"missing a value on flag: {name}")
                if value.lower() in ("true", ""):
                    self.values[key] = True
                elif value.lower() == "false":
                    self.values[key] = False
                else:
                    raise ValueError(f"expecting boolean value for flag {name}, not: {value}")
            elif not eq:
                raise ValueError(f"missing a value on flag: {name}")
            elif kind == _STRING:
                self.values[key] = value
            else:
                self.values.setdefault(key, []).append(value)

    def str(self, key: str) -> str:
        return self.values.get(key, "")

    def bool(self, key: str) -> bool:
        return bool(self.values.get(key, False))

    def list(self, key: str) -> list[str]:
        return list(self.values.get(key, []))


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _suggest(value: str, options: list[str], case_sensitive: bool) -> str:
    """The closest option within an edit distance of 2, in the user's case."""
    probe = value if case_sensitive else value.lower()
    best, best_distance = "", 3
    for option in options:
        candidate = option if case_sensitive else option.lower()
        if candidate == probe:
            return ""
        distance = _levenshtein(probe, candidate)
        if distance < best_distance:
            best, best_distance = candidate, distance
    if best and not case_sensitive:
        if value == value.upper():
            best = best.upper()
        elif value == value.lower():
            best = best.lower()
    return best


# -- commands ----------------------------------------------------------------------

@dataclass
class Command:
    node: Node

    @property
    def name(self) -> str:
        return self.node.keyword.upper()

    @property
    def text(self) -> str:
        """The instruction as written (what ``Step N/M :`` shows)."""
        return self.node.original

    @property
    def line(self) -> int:
        return self.node.start_line


@dataclass
class ArgCommand(Command):
    args: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class EnvCommand(Command):
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LabelCommand(Command):
    pairs: list[tuple[str, str]] = field(default_factory=list)
    expand: bool = True


@dataclass
class MaintainerCommand(Command):
    maintainer: str = ""


@dataclass
class ShellDependent(Command):
    """RUN, CMD and ENTRYPOINT: an exec-form argv, or a shell-form string."""

    cmd_line: list[str] | None = None
    prepend_shell: bool = True
    files: list[Heredoc] = field(default_factory=list)


@dataclass
class Mount:
    """One ``RUN --mount``."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    id: str = ""
    sharing: str = "shared"
    readonly: bool | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    required: bool = False

    def key(self) -> str:
        return (f"{self.type},target={self.target},source={self.source},from={self.from_},"
                f"id={self.id},sharing={self.sharing},ro={self.readonly},mode={self.mode},"
                f"uid={self.uid},gid={self.gid},size={self.size}")


@dataclass
class RunCommand(ShellDependent):
    mounts: list[str] = field(default_factory=list)   # raw, expanded at run time
    network: str = ""
    security: str = ""


@dataclass
class CmdCommand(ShellDependent):
    pass


@dataclass
class EntrypointCommand(ShellDependent):
    pass


@dataclass
class SourcesAndDest(Command):
    sources: list[str] = field(default_factory=list)
    contents: list[Heredoc] = field(default_factory=list)   # heredoc sources
    dest: str = ""
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: list[str] = field(default_factory=list)


@dataclass
class CopyCommand(SourcesAndDest):
    from_: str = ""
    parents: bool = False


@dataclass
class AddCommand(SourcesAndDest):
    checksum: str = ""
    keep_git_dir: bool | None = None
    unpack: bool | None = None


@dataclass
class WorkdirCommand(Command):
    path: str = ""


@dataclass
class UserCommand(Command):
    user: str = ""


@dataclass
class ExposeCommand(Command):
    ports: list[str] = field(default_factory=list)


@dataclass
class VolumeCommand(Command):
    volumes: list[str] = field(default_factory=list)


@dataclass
class StopSignalCommand(Command):
    signal: str = ""


@dataclass
class HealthcheckCommand(Command):
    test: list[str] = field(default_factory=list)
    interval: int = 0        # nanoseconds
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def config(self) -> dict[str, Any]:
        """The image config's Healthcheck object (durations in nanoseconds;
        zero values left out, as Docker's JSON does)."""
        out: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (("Interval", self.interval), ("Timeout", self.timeout),
                           ("StartPeriod", self.start_period),
                           ("StartInterval", self.start_interval), ("Retries", self.retries)):
            if value:
                out[key] = value
        return out


@dataclass
class ShellCommand(Command):
    shell: list[str] = field(default_factory=list)


@dataclass
class OnbuildCommand(Command):
    expression: str = ""


@dataclass
class Stage:
    index: int
    name: str                 # lower case, "" if unnamed
    base: str                 # as written (variables not yet expanded)
    platform: str
    node: Node
    commands: list[Command] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.node.original

    @property
    def line(self) -> int:
        return self.node.start_line

    def label(self) -> str:
        return self.name or str(self.index)


# -- parsing ------------------------------------------------------------------------

def parse_stages(dockerfile: Dockerfile) -> tuple[list[ArgCommand], list[Stage]]:
    """(global ARGs, stages). Stage names must be unique."""
    meta: list[ArgCommand] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    for node in dockerfile.nodes:
        try:
            if node.keyword == "from":
                stage = _parse_from(node, len(stages))
                if stage.name:
                    if stage.name in names:
                        raise ValueError(f"duplicate stage name {stage.name!r} "
                                         f"(first used on line {stages[names[stage.name]].line})")
                    names[stage.name] = stage.index
                stages.append(stage)
                continue
            command = parse_command(node)
        except ValueError as e:
            raise InstructionError(str(e), node.start_line, node.end_line) from None
        if not stages:
            if isinstance(command, ArgCommand):
                meta.append(command)
                continue
            raise InstructionError(
                f"no build stage in current context: {node.command} comes before the first FROM",
                node.start_line, node.end_line)
        stages[-1].commands.append(command)
    if not stages:
        last = dockerfile.nodes[-1]
        raise InstructionError("no build stage in current context: the Dockerfile has no FROM",
                               last.start_line, last.end_line)
    return meta, stages


def parse_command(node: Node) -> Command:
    """One non-FROM instruction. Raises ValueError (the caller adds the line)."""
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        if node.keyword == "from":
            raise ValueError("FROM is not allowed here")
        message = f"unknown instruction: {node.command}"
        suggestion = _suggest(node.command, [k.upper() for k in KEYWORDS], case_sensitive=False)
        raise ValueError(message + (f" (did you mean {suggestion}?)" if suggestion else ""))
    return parser(node)


def _no_flags(node: Node) -> None:
    _Flags(node.flags, {})


def _parse_from(node: Node, index: int) -> Stage:
    flags = _Flags(node.flags, {"platform": _STRING})
    args = node.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME_RE.match(name):
            raise ValueError(f"invalid name for build stage: {args[2]!r}, name can't start with "
                             "a number or contain symbols")
    elif len(args) != 1:
        raise ValueError("FROM requires either one or three arguments")
    return Stage(index=index, name=name, base=args[0], platform=flags.str("platform"), node=node)


def _arg(node: Node) -> ArgCommand:
    _no_flags(node)
    if not node.args:
        raise ValueError("ARG requires at least one argument")
    args = []
    for word in node.args:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise ValueError("ARG names can not be blank")
            args.append((key, value))
        else:
            args.append((word, None))
    return ArgCommand(node, args)


def _pairs(node: Node, what: str) -> list[tuple[str, str]]:
    _no_flags(node)
    if not node.pairs:
        raise ValueError(f"{what} requires at least one argument")
    for key, _, _ in node.pairs:
        if not key:
            raise ValueError(f"{what} names can not be blank")
    return [(k, v) for k, v, _ in node.pairs]


def _env(node: Node) -> EnvCommand:
    return EnvCommand(node, _pairs(node, "ENV"))


def _label(node: Node) -> LabelCommand:
    return LabelCommand(node, _pairs(node, "LABEL"))


def _maintainer(node: Node) -> MaintainerCommand:
    if len(node.args) != 1:
        raise ValueError("MAINTAINER requires exactly one argument")
    _no_flags(node)
    return MaintainerCommand(node, node.args[0])


def _shell_dependent(cls, node: Node, empty_as_none: bool, **extra):
    args = list(node.args)
    if not node.json and args:
        args = [" ".join(args)]
    cmd_line: list[str] | None = args
    if empty_as_none and not args:
        cmd_line = None
    return cls(node, cmd_line=cmd_line, prepend_shell=not node.json,
               files=list(node.heredocs), **extra)


def _run(node: Node) -> RunCommand:
    flags = _Flags(node.flags, {"mount": _STRINGS, "network": _STRING, "security": _STRING})
    network = flags.str("network")
    if network and network not in ("default", "none", "host"):
        raise ValueError(f"unsupported network mode {network!r} for RUN (use default, none or host)")
    security = flags.str("security")
    if security and security not in ("sandbox", "insecure"):
        raise ValueError(f"unsupported security mode {security!r} for RUN (use sandbox or insecure)")
    mounts = flags.list("mount")
    for raw in mounts:
        parse_mount(raw)  # syntax only; values are expanded when the step runs
    if not node.args and not node.heredocs:
        raise ValueError("RUN requires at least one argument")
    return _shell_dependent(RunCommand, node, False, mounts=mounts, network=network,
                            security=security)


def _cmd(node: Node) -> CmdCommand:
    _no_flags(node)
    return _shell_dependent(CmdCommand, node, False)


def _entrypoint(node: Node) -> EntrypointCommand:
    _no_flags(node)
    return _shell_dependent(EntrypointCommand, node, True)


def _sources_and_dest(node: Node, what: str) -> tuple[list[str], list[Heredoc], str]:
    if len(node.args) < 2:
        raise ValueError(f"{what} requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    from .dockerfile import parse_heredoc
    dest = node.args[-1]
    if parse_heredoc(dest) is not None:
        raise ValueError(f"{what} cannot accept a heredoc as a destination")
    by_name = {h.name: h for h in node.heredocs}
    sources, contents = [], []
    for src in node.args[:-1]:
        doc = parse_heredoc(src)
        if doc is not None and not node.json:
            found = by_name.get(doc.name)
            contents.append(Heredoc(doc.name, found.content if found else "", doc.expand,
                                    doc.chomp, doc.fd))
        else:
            sources.append(src)
    return sources, contents, dest


def _copy(node: Node) -> CopyCommand:
    flags = _Flags(node.flags, {"chown": _STRING, "from": _STRING, "chmod": _STRING,
                                "link": _BOOL, "exclude": _STRINGS, "parents": _BOOL})
    sources, contents, dest = _sources_and_dest(node, "COPY")
    return CopyCommand(node, sources=sources, contents=contents, dest=dest,
                       chown=flags.str("chown"), chmod=flags.str("chmod"),
                       link=flags.bool("link"), excludes=flags.list("exclude"),
                       from_=flags.str("from"), parents=flags.bool("parents"))


def _add(node: Node) -> AddCommand:
    flags = _Flags(node.flags, {"chown": _STRING, "chmod": _STRING, "link": _BOOL,
                                "keep-git-dir": _BOOL, "checksum": _STRING, "unpack": _BOOL,
                                "exclude": _STRINGS})
    sources, contents, dest = _sources_and_dest(node, "ADD")
    return AddCommand(node, sources=sources, contents=contents, dest=dest,
                      chown=flags.str("chown"), chmod=flags.str("chmod"), link=flags.bool("link"),
                      excludes=flags.list("exclude"), checksum=flags.str("checksum"),
                      keep_git_dir=flags.values.get("keep-git-dir"),
                      unpack=flags.values.get("unpack"))


def _workdir(node: Node) -> WorkdirCommand:
    if len(node.args) != 1:
        raise ValueError("WORKDIR requires exactly one argument")
    _no_flags(node)
    return WorkdirCommand(node, node.args[0])


def _user(node: Node) -> UserCommand:
    if len(node.args) != 1:
        raise ValueError("USER requires exactly one argument")
    _no_flags(node)
    return UserCommand(node, node.args[0])


def _expose(node: Node) -> ExposeCommand:
    if not node.args:
        raise ValueError("EXPOSE requires at least one argument")
    _no_flags(node)
    return ExposeCommand(node, sorted(node.args))


def _volume(node: Node) -> VolumeCommand:
    if not node.args:
        raise ValueError("VOLUME requires at least one argument")
    _no_flags(node)
    volumes = []
    for v in node.args:
        v = v.strip()
        if not v:
            raise ValueError("VOLUME specified can not be an empty string")
        volumes.append(v)
    return VolumeCommand(node, volumes)


def _stopsignal(node: Node) -> StopSignalCommand:
    if len(node.args) != 1:
        raise ValueError("STOPSIGNAL requires exactly one argument")
    _no_flags(node)
    return StopSignalCommand(node, node.args[0])


def parse_duration(text: str, flag: str) -> int:
    """Go's time.ParseDuration (``1m30s``, ``500ms``, ``1.5h``) -> nanoseconds."""
    if text == "":
        return 0
    s = text
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    total = 0.0
    pos = 0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        unit = _DURATION_UNITS.get(m.group(2))
        if unit is None:
            if not m.group(2):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: unknown unit "{m.group(2)}" in duration "{text}"')
        total += float(m.group(1)) * unit
        pos = m.end()
    value = sign * int(round(total))
    if value == 0:
        return 0
    if value < 1_000_000:
        raise ValueError(f"Interval {flag!r} cannot be less than 1ms")
    return value


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): ``1m30s``, ``500ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim_fraction(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim_fraction(rest / 1_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + f"{seconds}s"


def _trim_fraction(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _healthcheck(node: Node) -> HealthcheckCommand:
    if not node.args:
        raise ValueError("HEALTHCHECK requires at least one argument")
    kind = node.args[0].upper()
    args = node.args[1:]
    if kind == "NONE":
        if args:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        _no_flags(node)
        return HealthcheckCommand(node, ["NONE"])
    flags = _Flags(node.flags, {"interval": _STRING, "timeout": _STRING, "start-period": _STRING,
                                "start-interval": _STRING, "retries": _STRING})
    if kind != "CMD":
        raise ValueError(f'Unknown type "{node.args[0].upper()}" in HEALTHCHECK (try CMD)')
    cmd = args if node.json else ([" ".join(args)] if args else [])
    if not cmd:
        raise ValueError("Missing command after HEALTHCHECK CMD")
    test = ["CMD" if node.json else "CMD-SHELL", *cmd]
    retries = 0
    if flags.str("retries"):
        try:
            retries = int(flags.str("retries"), 10)
        except ValueError:
            raise ValueError(f'strconv.ParseInt: parsing "{flags.str("retries")}": invalid syntax') from None
        if retries < 0:
            raise ValueError(f"--retries cannot be negative ({retries})")
    return HealthcheckCommand(
        node, test,
        interval=parse_duration(flags.str("interval"), "interval"),
        timeout=parse_duration(flags.str("timeout"), "timeout"),
        start_period=parse_duration(flags.str("start-period"), "start-period"),
        start_interval=parse_duration(flags.str("start-interval"), "start-interval"),
        retries=retries)


def _shell(node: Node) -> ShellCommand:
    _no_flags(node)
    if not node.args:
        raise ValueError("SHELL requires at least one argument")
    if not node.json:
        raise ValueError(f"SHELL requires the arguments to be in JSON form (got {node.original!r})")
    return ShellCommand(node, list(node.args))


def _onbuild(node: Node) -> OnbuildCommand:
    if node.child is None:
        raise ValueError("ONBUILD requires at least one argument")
    _no_flags(node)
    trigger = node.child.command.upper()
    if trigger == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise ValueError(f"{trigger} isn't allowed as an ONBUILD trigger")
    # Checked now, so a broken trigger fails this build rather than a child's.
    parse_command(node.child)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    for doc in node.child.heredocs:
        expression += "\n" + doc.content + doc.name
    return OnbuildCommand(node, expression)


_PARSERS = {
    "add": _add, "arg": _arg, "cmd": _cmd, "copy": _copy, "entrypoint": _entrypoint,
    "env": _env, "expose": _expose, "healthcheck": _healthcheck, "label": _label,
    "maintainer": _maintainer, "onbuild": _onbuild, "run": _run, "shell": _shell,
    "stopsignal": _stopsignal, "user": _user, "volume": _volume, "workdir": _workdir,
}


# -- RUN --mount ----------------------------------------------------------------------

_MOUNT_TYPES = ("bind", "cache", "tmpfs")


def parse_mount(raw: str) -> Mount:
    """``type=cache,target=/root/.cache,sharing=locked`` -> Mount."""
    try:
        fields = next(csv.reader([raw]))
    except (csv.Error, StopIteration):
        raise ValueError(f"invalid --mount {raw!r}: not a comma-separated list") from None
    m = Mount()
    explicit_type = False
    for item in fields:
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m.readonly = True
                continue
            if key in ("readwrite", "rw"):
                m.readonly = False
                continue
            if key == "required":
                m.required = True
                continue
            raise ValueError(f"invalid --mount field {item!r}: expected key=value")
        if key == "type":
            if value not in _MOUNT_TYPES:
                if value in ("secret", "ssh"):
                    raise ValueError(f"--mount type={value} is not supported by this builder")
                raise ValueError(f"unsupported mount type {value!r} (use bind, cache or tmpfs)")
            m.type = value
            explicit_type = True
        elif key in ("target", "dst", "destination"):
            m.target = value
        elif key in ("source", "src"):
            m.source = value
        elif key == "from":
            m.from_ = value
        elif key == "id":
            m.id = value
        elif key == "sharing":
            if value not in ("shared", "private", "locked"):
                raise ValueError(f"unsupported sharing value {value!r} (use shared, private or locked)")
            m.sharing = value
        elif key in ("readonly", "ro", "readwrite", "rw", "required"):
            flag = _mount_bool(key, value)
            if key in ("readonly", "ro"):
                m.readonly = flag
            elif key in ("readwrite", "rw"):
                m.readonly = not flag
            else:
                m.required = flag
        elif key == "mode":
            try:
                m.mode = int(value, 8)
            except ValueError:
                raise ValueError(f"invalid --mount mode {value!r}: expected an octal number") from None
        elif key in ("uid", "gid"):
            try:
                number = int(value, 10)
            except ValueError:
                raise ValueError(f"invalid --mount {key} {value!r}: expected a number") from None
            setattr(m, key, number)
        elif key == "size":
            m.size = _parse_size(value)
        else:
            raise ValueError(f"unexpected key {key!r} in --mount {raw!r}")
    if not explicit_type:
        m.type = "bind"
    if not m.target:
        raise ValueError(f"--mount {raw!r}: target is required")
    return m


def _mount_bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValueError(f"invalid value {value!r} for --mount {key}: expected true or false")


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)b?", text.strip().lower())
    if not m:
        raise ValueError(f"invalid --mount size {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]
