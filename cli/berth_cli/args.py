"""Command-line parsing with docker's (cobra/pflag) rules, separate from execution.

A command tree of ``Command`` objects is parsed into an ``Invocation`` (the leaf
command, its options and positional arguments). Nothing here talks to the daemon.

Rules kept from pflag/cobra: ``--flag=value``, ``--flag value``, ``-abc`` (grouped
booleans), ``-ovalue`` / ``-o=value`` / ``-o value``, ``--bool=false``, repeated
list flags, flags interspersed with arguments, ``--`` ends the flags, global flags
only before the command name. Flag errors exit 125, argument-count errors and
unknown commands exit 1, like docker.
"""

from .errors import ArgumentError, HelpRequested, UsageError

BOOL, STRING, INT, LIST = "bool", "string", "int", "list"

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


class Flag:
    __slots__ = ("name", "short", "kind", "default", "help", "type_name", "check", "attr")

    def __init__(self, name: str, short: str | None = None, kind: str = BOOL, default=None,
                 help: str = "", type_name: str | None = None, check=None):
        self.name = name
        self.short = short
        self.kind = kind
        self.default = default
        self.help = help
        self.type_name = type_name or ("" if kind == BOOL else kind)
        self.check = check  # value -> value, raises ValueError(reason)
        self.attr = name.replace("-", "_")

    @property
    def display(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"

    def initial(self):
        if self.kind == LIST:
            return list(self.default or ())
        if self.default is not None:
            return self.default
        return {BOOL: False, STRING: "", INT: 0}[self.kind]


class Options:
    """Parsed flag values as attributes (``--no-trunc`` -> ``opts.no_trunc``)."""

    def __init__(self, flags):
        self._changed: set[str] = set()
        for flag in flags:
            setattr(self, flag.attr, flag.initial())

    def changed(self, name: str) -> bool:
        """Whether the user set this flag (docker's Flags().Changed)."""
        return name in self._changed


def no_args():
    return (0, 0)


def exact(n: int):
    return (n, n)


def at_least(n: int):
    return (n, None)


def at_most(n: int):
    return (0, n)


class Command:
    """One node of the command tree: a group (has subcommands) or a leaf (has run)."""

    def __init__(self, name: str, usage: str = "", short: str = "", *, aliases=(), flags=(),
                 args=(0, 0), run=None, commands=(), see_also=(), long: str = "",
                 interspersed: bool = True, lookup=None, listing=None):
        self.name = name
        self.usage = usage
        self.short = short
        self.long = long
        self.aliases = tuple(aliases)
        # A callable is called on first use: a module that defines several commands
        # (run, create, start...) builds only the flags of the one invoked.
        self._flags = flags if callable(flags) else list(flags)
        self.args = args
        self.run = run
        self.commands = list(commands)
        self.see_also = tuple(see_also)  # full command paths that do the same thing
        self.interspersed = interspersed
        self._lookup = lookup            # lazy child lookup (the root command)
        self._listing = listing          # lazy child listing for help
        self._by_name: tuple[dict, dict] | None = None

    @property
    def flags(self) -> list:
        if callable(self._flags):
            self._flags = list(self._flags())
        return self._flags

    @property
    def _long(self) -> dict:
        return self._flag_maps()[0]

    @property
    def _short(self) -> dict:
        return self._flag_maps()[1]

    def _flag_maps(self) -> tuple[dict, dict]:
        if self._by_name is None:
            self._by_name = ({f.name: f for f in self.flags},
                             {f.short: f for f in self.flags if f.short})
        return self._by_name

    @property
    def is_group(self) -> bool:
        return self.run is None

    def find(self, name: str) -> "Command | None":
        if self._lookup is not None:
            return self._lookup(name)
        for cmd in self.commands:
            if cmd.name == name or name in cmd.aliases:
                return cmd
        return None

    def children(self) -> list["Command"]:
        return self._listing() if self._listing is not None else self.commands

    def copy_as(self, name: str, usage: str | None = None, aliases=()) -> "Command":
        """The same command under another name (``images`` for ``image ls``)."""
        return Command(name, self.usage if usage is None else usage, self.short, aliases=aliases,
                       flags=self._flags, args=self.args, run=self.run, see_also=self.see_also,
                       long=self.long, interspersed=self.interspersed)


class Invocation:
    __slots__ = ("command", "path", "opts", "args", "global_opts")

    def __init__(self, command: Command, path: list[str], opts: Options, args: list[str],
                 global_opts: Options):
        self.command = command
        self.path = path
        self.opts = opts
        self.args = args
        self.global_opts = global_opts

    @property
    def name(self) -> str:
        return " ".join(self.path)


def parse(root: Command, argv: list[str]) -> Invocation:
    global_opts = Options(root.flags)
    path = [root.name]
    rest, help_ = _parse_flags(root, path, argv, global_opts, interspersed=False)
    if help_:
        raise HelpRequested(render_help(root, path))
    if getattr(global_opts, "version", False):  # -v/--version wins over a command, as in docker
        return Invocation(root, path, global_opts, [], global_opts)
    if not rest:
        raise HelpRequested(render_help(root, path))
    cmd: Command = root
    while True:
        name, rest = rest[0], rest[1:]
        child = cmd.find(name)
        if child is None:
            raise _unknown_command(cmd, path, name)
        cmd = child
        path = path + [cmd.name]
        opts = Options(cmd.flags)
        if not cmd.is_group:
            break
        rest, help_ = _parse_flags(cmd, path, rest, opts, interspersed=False)
        if help_ or not rest:
            raise HelpRequested(render_help(cmd, path))
    args, help_ = _parse_flags(cmd, path, rest, opts, interspersed=cmd.interspersed)
    if help_:
        raise HelpRequested(render_help(cmd, path))
    _check_args(cmd, path, args)
    return Invocation(cmd, path, opts, args, global_opts)


def _parse_flags(cmd: Command, path: list[str], argv: list[str], opts: Options,
                 interspersed: bool) -> tuple[list[str], bool]:
    """Consume flags; return the positional arguments left and whether help was asked."""
    positionals: list[str] = []
    help_ = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positionals.extend(argv[i + 1:])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            flag = cmd._long.get(name)
            if flag is None:
                if name == "help":
                    help_ = True
                    i += 1
                    continue
                raise _flag_error(f"unknown flag: --{name}", cmd, path)
            if flag.kind == BOOL:
                value = value if eq else "true"
            elif not eq:
                if i + 1 >= len(argv):
                    raise _flag_error(f"flag needs an argument: --{name}", cmd, path)
                i += 1
                value = argv[i]
            _set(flag, opts, value, cmd, path)
        elif arg.startswith("-") and len(arg) > 1:
            shorts = arg[1:]
            j = 0
            while j < len(shorts):
                c = shorts[j]
                flag = cmd._short.get(c)
                if flag is None:
                    if c == "h":
                        help_ = True
                        j += 1
                        continue
                    raise _flag_error(f"unknown shorthand flag: '{c}' in {arg}", cmd, path)
                if shorts[j + 1:j + 2] == "=":
                    _set(flag, opts, shorts[j + 2:], cmd, path)
                    break
                if flag.kind == BOOL:
                    _set(flag, opts, "true", cmd, path)
                    j += 1
                    continue
                if j + 1 < len(shorts):
                    _set(flag, opts, shorts[j + 1:], cmd, path)
                    break
                if i + 1 >= len(argv):
                    raise _flag_error(f"flag needs an argument: '{c}' in {arg}", cmd, path)
                i += 1
                _set(flag, opts, argv[i], cmd, path)
                break
        else:
            if not interspersed:
                positionals.extend(argv[i:])
                break
            positionals.append(arg)
        i += 1
    return positionals, help_


def _set(flag: Flag, opts: Options, value: str, cmd: Command, path: list[str]) -> None:
    try:
        if flag.kind == BOOL:
            if value in _TRUE:
                parsed = True
            elif value in _FALSE:
                parsed = False
            else:
                raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')
        elif flag.kind == INT:
            try:
                parsed = int(value, 10)
            except ValueError:
                raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
        else:
            parsed = value
        if flag.check is not None:
            parsed = flag.check(parsed)
    except ValueError as e:
        raise _flag_error(f'invalid argument "{value}" for "{flag.display}" flag: {e}', cmd, path) from None
    if flag.kind == LIST:
        getattr(opts, flag.attr).append(parsed)
    else:
        setattr(opts, flag.attr, parsed)
    opts._changed.add(flag.name)


def _use_line(cmd: Command, path: list[str]) -> str:
    if cmd.is_group:
        return " ".join(path) + (" [OPTIONS]" if cmd.flags else "") + " COMMAND"
    return " ".join(path) + (" " + cmd.usage if cmd.usage else "")


def _flag_error(message: str, cmd: Command, path: list[str]) -> UsageError:
    name = " ".join(path)
    usage = _use_line(cmd, path)
    if len(path) == 1:
        usage = f"{name} [OPTIONS] COMMAND [ARG...]"
    return UsageError(f"{message}\n\nUsage:  {usage}\n\nRun '{name} --help' for more information")


def _unknown_command(cmd: Command, path: list[str], name: str) -> ArgumentError:
    prog = path[0]
    full = " ".join(path)
    if len(path) == 1:
        return ArgumentError(f"{prog}: unknown command: {full} {name}\n\n"
                             f"Run '{full} --help' for more information")
    return ArgumentError(f"{prog}: unknown command: {full} {name}\n\nUsage:  {full}\n\n"
                         f"Run '{full} --help' for more information")


def _plural(n: int) -> str:
    return "argument" if n == 1 else "arguments"


def _check_args(cmd: Command, path: list[str], args: list[str]) -> None:
    lo, hi = cmd.args
    n = len(args)
    if lo <= n and (hi is None or n <= hi):
        return
    if hi == 0:
        what = "accepts no arguments"
    elif lo == hi:
        what = f"requires {lo} {_plural(lo)}"
    elif hi is None:
        what = f"requires at least {lo} {_plural(lo)}"
    elif lo == 0:
        what = f"requires at most {hi} {_plural(hi)}"
    else:
        what = f"requires at least {lo} and at most {hi} {_plural(hi)}"
    name = " ".join(path)
    raise ArgumentError(f"{path[0]}: '{name}' {what}\n\nUsage:  {_use_line(cmd, path)}\n\n"
                        f"Run '{name} --help' for more information")


def render_flags(flags: list[Flag]) -> str:
    """pflag's FlagUsages layout: the help text starts 3 columns after the widest flag."""
    rows = []
    for flag in flags:
        left = f"  -{flag.short}, --{flag.name}" if flag.short else f"      --{flag.name}"
        if flag.type_name:
            left += " " + flag.type_name
        text = flag.help
        if flag.kind == BOOL and flag.default:
            text += " (default true)"
        elif flag.kind == STRING and flag.default:
            text += f' (default "{flag.default}")'
        elif flag.kind == INT and flag.default:
            text += f" (default {flag.default})"
        rows.append((left, text))
    width = max((len(left) for left, _ in rows), default=0) + 3
    lines = []
    for left, text in rows:
        first, *more = text.split("\n")
        lines.append((left.ljust(width) + first).rstrip())
        lines.extend((" " * width + line).rstrip() for line in more)
    return "\n".join(lines)


def render_help(cmd: Command, path: list[str]) -> str:
    name = " ".join(path)
    out = [f"Usage:  {_use_line(cmd, path)}", "", (cmd.long or cmd.short).strip()]
    if cmd.see_also:
        out += ["", "Aliases:", "  " + ", ".join(cmd.see_also)]
    elif cmd.aliases:
        out += ["", "Aliases:", "  " + ", ".join((cmd.name,) + cmd.aliases)]
    if cmd.is_group:
        children = cmd.children()
        groups = [c for c in children if c.is_group]
        leaves = [c for c in children if not c.is_group]
        pad = max([11] + [len(c.name) for c in children])
        for title, members in (("Management Commands:", groups), ("Commands:", leaves)):
            if members:
                out += ["", title]
                out += [f"  {c.name.ljust(pad)} {c.short}" for c in sorted(members, key=lambda c: c.name)]
    visible = [f for f in cmd.flags]
    if visible:
        out += ["", "Global Options:" if len(path) == 1 else "Options:", render_flags(visible)]
    if cmd.is_group:
        out += ["", f"Run '{name} COMMAND --help' for more information on a command."]
    return "\n".join(out) + "\n"
