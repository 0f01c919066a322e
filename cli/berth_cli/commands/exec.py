"""`berth exec`: run a command in a running container (docker's exec flow: inspect,
create the exec, start it hijacked or detached, then its exit code as ours)."""

from __future__ import annotations

from ..args import LIST, STRING, Command, Flag, at_least
from ..errors import CLIError
from .containeropts import ParseError, check_env, read_kv_file
from .hijack import terminal_size, validate_detach_keys


def exec_config(cli, opts, command: list[str]) -> dict:
    """docker's parseExec: the body of POST /containers/{id}/exec."""
    environ = cli.env.environ
    env: list[str] = []
    for path in opts.env_file:
        try:
            env += read_kv_file(path, environ.get)
        except ParseError as e:
            raise CLIError(e.message) from None
    for value in opts.env:
        if "=" not in value and value in environ:
            value = f"{value}={environ[value]}"
        env.append(value)
    attach = not opts.detach
    config = {"User": opts.user, "Privileged": opts.privileged, "Tty": opts.tty}
    if opts.tty:
        config["ConsoleSize"] = list(terminal_size(cli.out))
    config.update({"AttachStdin": attach and opts.interactive, "AttachStderr": attach,
                   "AttachStdout": attach, "Detach": False, "DetachKeys": opts.detach_keys,
                   "Env": env or None, "WorkingDir": opts.workdir, "Cmd": command})
    return config


def run_exec(cli, opts, args) -> None:
    keys = validate_detach_keys(opts.detach_keys)
    container, command = args[0], args[1:]
    config = exec_config(cli, opts, command)
    client = cli.client
    client.container_inspect(container)  # "No such container" before anything else, as docker
    if not opts.detach and config["Tty"] and config["AttachStdin"] and not cli.env.stdin.isatty():
        raise CLIError("the input device is not a TTY")
    created = client.exec_create(container, config)
    exec_id = (created or {}).get("Id") or ""
    if not exec_id:
        raise CLIError("exec ID empty")
    if opts.detach:
        resp = client.exec_start(exec_id, detach=True, tty=config["Tty"],
                                 console_size=config.get("ConsoleSize")).response()
        client.release(resp)
        return
    from .run import Session
    session = Session(cli, exec_id, tty=config["Tty"], stdin=config["AttachStdin"], stdout=True,
                      stderr=True, detach_keys=keys, sig_proxy=False, is_exec=True)
    try:
        pending = client.exec_start(exec_id, detach=False, tty=config["Tty"],
                                    console_size=config.get("ConsoleSize"))
        raw = client.upgraded(pending, "POST", f"/exec/{exec_id}/start")
        if session.track_size and cli.env.stdin.isatty():
            session.resize(initial=True)
        if session.stream(raw):
            return
    finally:
        session.close()
    code = (client.exec_inspect(exec_id) or {}).get("ExitCode") or 0
    if code:
        raise CLIError("", code)


EXEC = Command("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command in a running container",
               flags=[Flag("detach", "d", help="Detached mode: run command in the background"),
                      Flag("detach-keys", None, STRING, help="Override the key sequence for detaching a container"),
                      Flag("env", "e", LIST, help="Set environment variables", type_name="list", check=check_env),
                      Flag("env-file", None, LIST, help="Read in a file of environment variables",
                           type_name="list"),
                      Flag("interactive", "i", help="Keep STDIN open even if not attached"),
                      Flag("privileged", None, help="Give extended privileges to the command"),
                      Flag("tty", "t", help="Allocate a pseudo-TTY"),
                      Flag("user", "u", STRING, help='Username or UID (format: "<name|uid>[:<group|gid>]")'),
                      Flag("workdir", "w", STRING, help="Working directory inside the container")],
               args=at_least(2), run=run_exec, interspersed=False,
               see_also=("berth container exec", "berth exec"))
