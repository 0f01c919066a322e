"""The `berth` entry point: parse, dispatch, and turn every failure into docker's
exit code and stderr message, in this one place."""

import sys

from . import API_VERSION, __version__
from .args import LIST, STRING, Command, Flag, parse
from .env import Env
from .errors import Cancelled, CLIError, HelpRequested


def build_root() -> Command:
    from .commands import listing, lookup
    return Command(
        "berth", "[OPTIONS] COMMAND", "A self-sufficient runtime for containers",
        flags=[
            Flag("config", None, STRING, help="Location of client config files (default \"~/.berth\")"),
            Flag("debug", "D", help="Enable debug mode"),
            Flag("host", "H", LIST, help="Daemon socket to connect to (default $BERTH_HOST or "
                                         "unix:///run/berth/berth.sock)"),
            Flag("log-level", "l", STRING, default="info",
                 help='Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")'),
            Flag("version", "v", help="Print version information and quit"),
        ],
        lookup=lookup, listing=listing)


def run(argv: list[str], env: Env) -> int:
    """Run one command line; return the exit code. Never raises."""
    from .cli import Cli
    debug = False
    try:
        inv = parse(build_root(), argv)
        g = inv.global_opts
        debug = g.debug or g.log_level == "debug"
        if g.version:
            env.out.write(f"berth version {__version__}, API {API_VERSION}\n")
            return 0
        if len(g.host) > 1:
            raise CLIError("Specify only one -H")
        cli = Cli(env, host=g.host[0] if g.host else None, debug=debug, config_dir=g.config or None)
        return inv.command.run(cli, inv.opts, inv.args) or 0
    except HelpRequested as h:
        env.out.write(h.text)
        return 0
    except Cancelled:
        return 0
    except CLIError as e:
        _flush(env.out)
        if e.message:
            env.err.write(e.message.rstrip("\n") + "\n")
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as e:  # a bug, or an OS error nobody turned into a message
        _flush(env.out)
        if debug:
            import traceback
            env.err.write(traceback.format_exc())
        env.err.write(f"Error: {e}\n")
        return 1


def _flush(stream) -> None:
    try:
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass


def _broken_pipe() -> int:
    # The reader went away (`berth images | head -1`): exit as a process killed by
    # SIGPIPE would, without Python's "Exception ignored" noise at shutdown.
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    env = Env.from_process()
    code = run(sys.argv[1:] if argv is None else argv, env)
    try:
        env.out.flush()
        env.err.flush()
    except BrokenPipeError:
        code = _broken_pipe()
    return code


def entry() -> None:
    """The launcher's entry point: main(), then exit without the interpreter's
    clean-up (module teardown, GC), which costs milliseconds on every command.
    Everything the CLI writes goes through env.out and env.err, flushed by main()."""
    code = main()
    from .lean_os import exit_now
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    exit_now(code)


if __name__ == "__main__":
    sys.exit(main())
