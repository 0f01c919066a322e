"""Argument parsing, help and usage errors: docker's messages and exit codes.

Nothing here needs a daemon: usage errors are caught before any request, and
the runner disables auto-start and points at no socket.
"""

import pytest

from berth_cli.args import BOOL, INT, LIST, STRING, Command, Flag, parse
from berth_cli.commands import TOP_LEVEL, listing, lookup
from berth_cli.errors import ArgumentError, HelpRequested, UsageError


def _leaf(**kw):
    return Command("ls", "[OPTIONS]", "List", flags=[
        Flag("all", "a"), Flag("quiet", "q"), Flag("format", None, STRING),
        Flag("output", "o", STRING), Flag("filter", "f", LIST), Flag("count", "n", INT),
        Flag("human", "H", BOOL, default=True)], args=(0, None), run=lambda *a: 0, **kw)


def _root(leaf=None):
    return Command("berth", "[OPTIONS] COMMAND", "root", flags=[Flag("debug", "D"), Flag("host", "H", LIST)],
                   commands=[Command("thing", short="Manage things", commands=[leaf or _leaf()])])


def _parse(*argv):
    return parse(_root(), ["thing", "ls", *argv])


def test_grouped_short_flags_and_values_in_every_spelling():
    inv = _parse("-aq", "-ofile1", "--format={{.ID}}", "-f", "a=1", "--filter", "b=2", "-n=3", "x")
    o = inv.opts
    assert (o.all, o.quiet, o.output, o.format, o.filter, o.count) == (True, True, "file1", "{{.ID}}", ["a=1", "b=2"], 3)
    assert inv.args == ["x"]
    assert _parse("-o", "f2").opts.output == "f2"
    assert _parse("-qo", "f3").opts.output == "f3"
    assert _parse("-o=f4").opts.output == "f4"


def test_flags_may_follow_arguments_and_double_dash_ends_them():
    inv = _parse("x", "-a", "y", "--", "-q", "--format")
    assert inv.opts.all and not inv.opts.quiet
    assert inv.args == ["x", "y", "-q", "--format"]
    assert _parse("-").args == ["-"]


def test_bool_flags_take_go_boolean_values():
    assert _parse("--human=false").opts.human is False
    assert _parse("-H=0").opts.human is False
    assert _parse().opts.human is True
    assert _parse("--all=TRUE").opts.all is True
    assert _parse("--all=false").opts.changed("all") and not _parse().opts.changed("all")


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unknown flag: --bogus"),
    (["-x"], "unknown shorthand flag: 'x' in -x"),
    (["-ax"], "unknown shorthand flag: 'x' in -ax"),
    (["--format"], "flag needs an argument: --format"),
    (["-o"], "flag needs an argument: 'o' in -o"),
    (["--human=maybe"], 'invalid argument "maybe" for "-H, --human" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["-n", "x"], 'invalid argument "x" for "-n, --count" flag: strconv.ParseInt: parsing "x": invalid syntax'),
])
def test_flag_errors_are_usage_errors_with_the_command_usage(argv, message):
    with pytest.raises(UsageError) as e:
        _parse(*argv)
    assert e.value.code == 125
    assert e.value.message == (f"{message}\n\nUsage:  berth thing ls [OPTIONS]\n\n"
                               "Run 'berth thing ls --help' for more information")


def test_global_flags_only_before_the_command():
    inv = parse(_root(), ["-D", "-H", "unix:///x.sock", "thing", "ls"])
    assert inv.global_opts.debug and inv.global_opts.host == ["unix:///x.sock"]
    with pytest.raises(UsageError):
        parse(_root(), ["thing", "ls", "-D"])


def test_help_and_groups():
    with pytest.raises(HelpRequested) as e:
        parse(_root(), ["thing", "ls", "-a", "--help"])
    assert e.value.text.startswith("Usage:  berth thing ls [OPTIONS]\n\nList\n\nOptions:\n")
    with pytest.raises(HelpRequested) as e:
        parse(_root(), ["thing"])
    assert "Commands:\n  ls          List\n" in e.value.text
    with pytest.raises(ArgumentError) as e:
        parse(_root(), ["thing", "nope"])
    assert e.value.message.startswith("berth: unknown command: berth thing nope\n")


@pytest.mark.parametrize("bounds, n, message", [
    ((2, 2), 1, "requires 2 arguments"),
    ((1, None), 0, "requires at least 1 argument"),
    ((0, 1), 2, "requires at most 1 argument"),
    ((0, 0), 1, "accepts no arguments"),
    ((1, 2), 3, "requires at least 1 and at most 2 arguments"),
])
def test_argument_count_errors(bounds, n, message):
    leaf = Command("ls", "ARG", "List", args=bounds, run=lambda *a: 0)
    with pytest.raises(ArgumentError) as e:
        parse(_root(leaf), ["thing", "ls"] + ["a"] * n)
    assert e.value.code == 1
    assert e.value.message == (f"berth: 'berth thing ls' {message}\n\nUsage:  berth thing ls ARG\n\n"
                               "Run 'berth thing ls --help' for more information")


# -- the real command tree, through main.run ------------------------------------------

def test_unknown_command_exits_1(run_cli):
    r = run_cli("frobnicate")
    assert (r.code, r.out) == (1, "")
    assert r.err == "berth: unknown command: berth frobnicate\n\nRun 'berth --help' for more information\n"


def test_unknown_flag_exits_125(run_cli):
    r = run_cli("images", "--bogus")
    assert r.code == 125
    assert r.err == ("unknown flag: --bogus\n\nUsage:  berth images [OPTIONS] [REPOSITORY[:TAG]]\n\n"
                     "Run 'berth images --help' for more information\n")


def test_bad_filter_is_a_flag_error(run_cli):
    r = run_cli("images", "--filter", "dangling")
    assert r.code == 125
    assert r.err.startswith('invalid argument "dangling" for "-f, --filter" flag: '
                            "bad format of filter (expected name=value)\n")


def test_wrong_argument_count_exits_1(run_cli):
    r = run_cli("tag", "onlyone")
    assert r.code == 1
    assert r.err.startswith("berth: 'berth tag' requires 2 arguments\n\nUsage:  berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")


def test_no_arguments_and_groups_print_help(run_cli):
    r = run_cli()
    assert r.code == 0 and r.out.startswith("Usage:  berth [OPTIONS] COMMAND\n")
    r = run_cli("image")
    assert r.code == 0 and "Run 'berth image COMMAND --help'" in r.out
    r = run_cli("system")
    assert r.code == 0 and "  df          Show docker disk usage" in r.out


def test_version_flag(run_cli):
    r = run_cli("-v")
    assert (r.code, r.out) == (0, "berth version 0.1.0, API 1.41\n")
    assert run_cli("--version", "images").out == r.out


def test_only_one_host(run_cli):
    r = run_cli("-H", "unix:///a", "-H", "unix:///b", "images")
    assert (r.code, r.err) == (1, "Specify only one -H\n")


def _all_commands():
    for name in TOP_LEVEL:
        cmd = lookup(name)
        yield [name]
        for sub in cmd.commands:
            yield [name, sub.name]


@pytest.mark.parametrize("path", list(_all_commands()), ids=" ".join)
def test_every_command_has_help(run_cli, path):
    r = run_cli(*path, "--help")
    assert r.code == 0, r
    assert r.out.startswith(f"Usage:  berth {' '.join(path)}")
    assert r.err == ""


def test_short_forms_are_the_management_commands():
    image = lookup("image")
    pairs = {"images": "ls", "rmi": "rm", "tag": "tag", "history": "history", "import": "import",
             "load": "load", "save": "save"}
    for short, sub in pairs.items():
        assert lookup(short).run is image.find(sub).run
        assert lookup(short).flags == image.find(sub).flags
    assert image.find("list") is image.find("ls") and image.find("remove") is image.find("rm")
    assert lookup("events").run is lookup("system").find("events").run
    assert lookup("info").run is lookup("system").find("info").run


def test_registry_names_match_the_commands_they_load():
    for name, cmd in zip(TOP_LEVEL, listing()):
        assert cmd.name == name
