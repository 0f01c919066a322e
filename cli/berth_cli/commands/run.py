"""`run`, `create`, `start` and `attach`: creating containers and attaching to them.

`run` is docker's sequence of calls: create (pulling the image when the daemon
has none), then attach and wait sent together, start, resize for a tty, and the
container's exit code as ours. Parse errors and daemon errors exit 125, and an
error text that says the command cannot be found or run exits 127 or 126, like
the docker CLI. This module is on `run`'s path: keep its imports lean.
"""

from .. import lean_os
from ..args import STRING, Command, Flag, at_least, exact
from ..errors import APIError, CLIError
from ..jsonio import loads
from . import containeropts
from .hijack import CONTROL_STREAM, SignalRelay, terminal_size, validate_detach_keys

PULL_OPTIONS = ("always", "missing", "never")


def with_help(message: str, command: str) -> str:
    return f"berth: {message}\n\nRun 'berth {command} --help' for more information"


def status_error(e: CLIError, command: str = "run") -> CLIError:
    """docker's toStatusError: 127 when the command is missing, 126 when it cannot be
    run, 125 for anything else the daemon or the CLI refused."""
    text = e.message
    if ("executable file not found" in text or "no such file or directory" in text
            or "system cannot find the file specified" in text):
        code = 127
    elif "permission denied" in text or "is a directory" in text:
        code = 126
    else:
        code = 125
    return CLIError(with_help(text, command), code)


# -- create (shared by run) ------------------------------------------------------------

def pull_image(cli, image: str, platform: str | None, quiet: bool) -> None:
    """POST /images/create?fromImage=...; progress on stderr, as docker's run shows it."""
    from ..errors import StreamError
    from ..reference import parse_normalized
    from .registry import display_progress, encoded_auth_for
    ref = parse_normalized(image)
    params = {"fromImage": ref.name, "tag": ref.digest or ref.tag or "latest",
              "platform": platform or None}
    headers = {"X-Registry-Auth": encoded_auth_for(cli, ref.domain)}
    resp = cli.client.request("POST", "/images/create", params, headers=headers)
    try:
        if not quiet:
            display_progress(resp.iter_json(), cli.err, cli.err.isatty())
            return
        for msg in resp.iter_json():
            if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                detail = msg.get("errorDetail") or {}
                raise StreamError(str(detail.get("message") or msg.get("error")))
    finally:
        resp.close()


class CidFile:
    """--cidfile: refused if it exists, written with the new ID, removed if none comes."""

    def __init__(self, path: str):
        self.path = path
        self.written = False
        self.fd = -1
        if not path:
            return
        if lean_os.exists(path):
            raise CLIError(f"container ID file found, make sure the other container isn't running "
                           f"or delete {path}")
        try:
            self.fd = lean_os.open(path, lean_os.O_WRONLY | lean_os.O_CREAT | lean_os.O_TRUNC
                                   | lean_os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise CLIError(f"failed to create the container ID file: open {path}: "
                           f"{(e.strerror or str(e)).lower()}") from None

    def write(self, cid: str) -> None:
        if self.fd >= 0:
            lean_os.write(self.fd, cid.encode())
            self.written = True

    def close(self) -> None:
        if self.fd < 0:
            return
        lean_os.close(self.fd)
        self.fd = -1
        if not self.written:
            try:
                lean_os.unlink(self.path)
            except FileNotFoundError:
                pass


def create_container(cli, config: dict, opts, create=None) -> str:
    """docker's createContainer: the new container's ID (pulls a missing image when
    --pull allows it; warnings go to stderr). ``create()``, if given, makes it
    instead of POST /containers/create and returns the same answer."""
    image = config["Image"]
    named = None if _is_image_id(image) else _named_reference(image)
    cidfile = CidFile(config["HostConfig"]["ContainerIDFile"])
    if create is None:
        def create():
            return cli.client.container_create(config, opts.name, opts.platform)
    try:
        if opts.pull == "always":
            pull_image(cli, image, opts.platform, opts.quiet)
        try:
            created = create()
        except APIError as e:
            if not (e.not_found and "No such image" in e.explanation and named is not None
                    and opts.pull == "missing"):
                raise
            if not opts.quiet:
                familiar = named.familiar_name + ":" + (named.tag or "latest") if not named.digest \
                    else named.familiar()
                cli.err.write(f"Unable to find image '{familiar}' locally\n")
                cli.err.flush()
            pull_image(cli, image, opts.platform, opts.quiet)
            created = create()
        for warning in created.get("Warnings") or []:
            cli.err.write(f"WARNING: {warning}\n")
        cid = created.get("Id") or ""
        cidfile.write(cid)
        return cid
    finally:
        cidfile.close()


# Characters of the references people type every day ("busybox", "localhost:5000/app:1.2");
# those are left to the daemon to validate, so that `run` does not compile the
# reference grammar (re) on every start. Anything else is checked here as docker does.
_PLAIN_REFERENCE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/:")


class _LazyReference:
    """A reference parsed only if it is needed (to pull, or to say it is invalid)."""

    def __init__(self, text: str):
        self.text = text

    def __getattr__(self, name):
        from ..reference import InvalidReference, parse_normalized
        try:
            ref = parse_normalized(self.text)
        except InvalidReference as e:
            raise CLIError(str(e)) from None
        return getattr(ref, name)


def _named_reference(image: str):
    if image and set(image) <= _PLAIN_REFERENCE and image[0].isalnum():
        return _LazyReference(image)
    from ..reference import InvalidReference, parse_normalized
    try:
        return parse_normalized(image)
    except InvalidReference as e:
        raise CLIError(str(e)) from None


def _is_image_id(image: str) -> bool:
    hexpart = image[7:] if image.startswith("sha256:") else image
    return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


def _container_config(cli, opts, args, command: str) -> dict:
    if opts.pull not in PULL_OPTIONS and opts.pull != "":
        raise CLIError(with_help(f"invalid pull option: '{opts.pull}': must be one of \"always\", "
                                 "\"missing\" or \"never\"", command), 125)
    console = terminal_size(cli.out) if opts.tty else (0, 0)
    try:
        return containeropts.build_config(opts, args[0], args[1:], cli.env.environ, console)
    except containeropts.ParseError as e:
        raise CLIError(with_help(e.message, command), 125) from None


def run_create(cli, opts, args) -> None:
    config = _container_config(cli, opts, args, "create")
    cid = create_container(cli, config, opts)
    cli.out.write(cid + "\n")


CREATE = Command("create", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                 flags=containeropts.create_flags, args=at_least(1), run=run_create,
                 interspersed=False, see_also=("berth container create", "berth create"))


# -- attached sessions (run, start -a, attach) -------------------------------------------

class Session:
    """What an attached container needs around its stream: signal forwarding, tty
    size tracking, raw mode, the detach keys."""

    def __init__(self, cli, cid: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
                 detach_keys: bytes, sig_proxy: bool, is_exec: bool = False):
        self.cli, self.cid, self.tty = cli, cid, tty
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.detach_keys, self.is_exec = detach_keys, is_exec
        self.track_size = tty and cli.out.isatty()
        self.relay = None
        if sig_proxy or self.track_size:
            relay = SignalRelay(sig_proxy, on_signal=self._forward,
                                on_winch=self.resize if self.track_size else None)
            self.relay = relay if relay.active else None

    def _forward(self, name: str) -> None:
        try:
            self.cli.client.container_kill(self.cid, name)
        except CLIError:
            pass  # docker only logs a failed forward at debug level

    def resize(self, initial: bool = False) -> None:
        height, width = terminal_size(self.cli.out)
        if not height and not width:
            return
        try:
            self.cli.client.container_resize(self.cid, height, width, exec_=self.is_exec)
        except CLIError:
            if initial:
                self.cli.err.write("failed to resize tty, using default size\n")

    def stream(self, raw, control=None) -> bool:
        """Pump the stream until it ends; True if the user detached."""
        from .hijack import EscapeDetector, RawTerminal, pump
        cli = self.cli
        terminal = escape = None
        stdin = cli.env.stdin.raw if self.stdin else None
        if self.stdin and self.tty:
            escape = EscapeDetector(self.detach_keys)
            if cli.env.stdin.isatty() and not cli.env.get("NORAW"):
                terminal = RawTerminal(cli.env.stdin.raw.fileno())
        try:
            cli.out.flush()
            return pump(raw, stdin=stdin, out=cli.out if self.stdout else None,
                        err=(cli.out if self.tty else cli.err) if self.stderr else None,
                        tty=self.tty, escape=escape, relay=self.relay, control=control)
        finally:
            if terminal is not None:
                terminal.restore()
            raw.close()

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
            self.relay = None


def wait_status(cli, pending_answer) -> int:
    """The exit code in a wait answer ({"StatusCode": N, "Error": ...}); 125 if it failed."""
    from ..transport import ProtocolError
    try:
        result = pending_answer.json()
    except (ProtocolError, OSError, ValueError) as e:
        cli.err.write(f"error waiting for container: {e}\n")
        return 125
    finally:
        pending_answer.close()
    if not isinstance(result, dict):
        return 125
    error = result.get("Error") or {}
    if error.get("Message"):
        cli.err.write(f"Error waiting for container: {error['Message']}\n")
        return 125
    return int(result.get("StatusCode") or 0)


class _NoRunEndpoint(Exception):
    """The daemon has no /berth/containers/run (not berthd): docker's sequence then."""


def run_in_one_request(cli, config: dict, opts) -> int | None:
    """`run` attached, without stdin or tty (scripts and CI): berth's one-request
    form of docker's create, attach, wait and start (POST /berth/containers/run).
    The answer is a frame stream: a control frame with the Id first, the output,
    and a control frame with the exit status (or the failed start) last.
    None if the daemon does not have that endpoint (nothing was created)."""
    stream = {}

    def create():
        try:
            raw = cli.client.container_run(config, opts.name, opts.platform,
                                           stdout=config["AttachStdout"],
                                           stderr=config["AttachStderr"])
        except APIError as e:
            if e.status == 404 and e.explanation.startswith("page not found"):
                raise _NoRunEndpoint() from None
            raise
        stream["raw"] = raw
        first = next(raw.frames(), None)
        if first is None or first[0] != CONTROL_STREAM:
            raw.close()
            raise CLIError("the daemon ended the run stream before the container's ID")
        return loads(first[1])

    try:
        cid = create_container(cli, config, opts, create)
    except CLIError as e:
        raise status_error(e) from None
    except _NoRunEndpoint:
        return None
    raw = stream["raw"]
    final: dict = {}

    def control(payload: bytes) -> None:
        final.update(loads(payload))

    session = Session(cli, cid, tty=False, stdin=False, stdout=config["AttachStdout"],
                      stderr=config["AttachStderr"], detach_keys=b"", sig_proxy=opts.sig_proxy)
    try:
        session.stream(raw, control=control)
    finally:
        session.close()
    if "StartError" in final:
        raise status_error(APIError(int(final.get("StartStatus") or 500), final["StartError"]))
    if "StatusCode" not in final:
        raise CLIError("error waiting for container: the daemon ended the run stream early", 125)
    if final.get("Error"):
        cli.err.write(f"Error waiting for container: {final['Error']}\n")
    return int(final["StatusCode"] or 0)


def run_run(cli, opts, args) -> None:
    config = _container_config(cli, opts, args, "run")
    keys = validate_detach_keys(opts.detach_keys)
    if opts.detach:
        if opts.attach:
            raise CLIError("conflicting options: cannot specify both --attach and --detach")
        config.update(AttachStdin=False, AttachStdout=False, AttachStderr=False, StdinOnce=False)
    elif config["Tty"] and config["AttachStdin"] and not cli.env.stdin.isatty():
        raise CLIError("the input device is not a TTY")
    attach = config["AttachStdin"] or config["AttachStdout"] or config["AttachStderr"]
    if attach and not config["AttachStdin"] and not config["Tty"]:
        status = run_in_one_request(cli, config, opts)
        if status:
            raise CLIError("", status)
        if status is not None:
            return
    try:
        cid = create_container(cli, config, opts)
    except CLIError as e:
        raise status_error(e) from None
    client = cli.client
    auto_remove = config["HostConfig"]["AutoRemove"]
    if not attach:
        cli.out.write(cid + "\n")
        cli.out.flush()
        try:
            client.container_start(cid)
        except CLIError as e:
            raise status_error(e) from None
        return

    session = Session(cli, cid, tty=config["Tty"], stdin=config["AttachStdin"],
                      stdout=config["AttachStdout"], stderr=config["AttachStderr"],
                      detach_keys=keys, sig_proxy=opts.sig_proxy)
    try:
        # attach and wait go out together; start only once both are in place
        attaching = client.container_attach(cid, stdin=config["AttachStdin"],
                                            stdout=config["AttachStdout"],
                                            stderr=config["AttachStderr"],
                                            detach_keys=opts.detach_keys)
        waiting = client.container_wait(cid, "removed" if auto_remove else "next-exit")
        raw = client.upgraded(attaching, "POST", f"/containers/{cid}/attach")
        waited = waiting.response()
        try:
            client.container_start(cid)
        except CLIError as e:
            raw.close()
            if auto_remove:
                wait_status(cli, waited)  # the daemon removes it; return once it is gone
            else:
                waited.close()
            raise status_error(e) from None
        if session.track_size:
            session.resize(initial=True)
        if session.stream(raw):
            waited.close()
            return
        status = wait_status(cli, waited)
    finally:
        session.close()
    if status:
        raise CLIError("", status)


RUN = Command("run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image",
              flags=containeropts.run_flags, args=at_least(1), run=run_run, interspersed=False,
              see_also=("berth container run", "berth run"))


# -- start -------------------------------------------------------------------------------

def run_start(cli, opts, args) -> None:
    keys = validate_detach_keys(opts.detach_keys)
    if not (opts.attach or opts.interactive):
        failed = []
        for name in args:
            try:
                cli.client.container_start(name)
            except CLIError as e:
                cli.out.flush()
                cli.err.write(e.message + "\n")
                failed.append(name)
                continue
            cli.out.write(name + "\n")
        if failed:
            raise CLIError("Error: failed to start containers: " + ", ".join(failed))
        return
    if len(args) > 1:
        raise CLIError("you cannot start and attach multiple containers at once")
    client = cli.client
    info = client.container_inspect(args[0])
    cid = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    stdin = bool(opts.interactive and config.get("OpenStdin"))
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    session = Session(cli, cid, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=keys,
                      sig_proxy=not tty)
    try:
        attaching = client.container_attach(cid, stdin=stdin, stdout=True, stderr=True,
                                            detach_keys=opts.detach_keys)
        waiting = client.container_wait(cid, "removed" if auto_remove else "next-exit")
        raw = client.upgraded(attaching, "POST", f"/containers/{cid}/attach")
        waited = waiting.response()
        try:
            client.container_start(cid)
        except CLIError:
            raw.close()
            if auto_remove:
                wait_status(cli, waited)
            else:
                waited.close()
            raise
        if session.track_size:
            session.resize(initial=True)
        if session.stream(raw):
            waited.close()
            return
        status = wait_status(cli, waited)
    finally:
        session.close()
    if status:
        raise CLIError("", status)


START = Command("start", "[OPTIONS] CONTAINER [CONTAINER...]", "Start one or more stopped containers",
                flags=[Flag("attach", "a", help="Attach STDOUT/STDERR and forward signals"),
                       Flag("detach-keys", None, STRING,
                            help="Override the key sequence for detaching a container"),
                       Flag("interactive", "i", help="Attach container's STDIN")],
                args=at_least(1), run=run_start, see_also=("berth container start", "berth start"))


# -- attach ------------------------------------------------------------------------------

def _check_attachable(info: dict) -> None:
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CLIError("You cannot attach to a paused container, unpause it first")
    if state.get("Restarting"):
        raise CLIError("You cannot attach to a restarting container, wait until it is running")


def run_attach(cli, opts, args) -> None:
    keys = validate_detach_keys(opts.detach_keys)
    client = cli.client
    waiting = client.container_wait(args[0])  # first, as docker: no exit can slip by unseen
    try:
        info = client.container_inspect(args[0])
        _check_attachable(info)
    except CLIError:
        waiting.conn.close()
        raise
    cid = info.get("Id") or args[0]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    if tty and not opts.no_stdin and not cli.env.stdin.isatty():
        raise CLIError("the input device is not a TTY")
    stdin = bool(not opts.no_stdin and config.get("OpenStdin"))
    session = Session(cli, cid, tty=tty, stdin=stdin, stdout=True, stderr=True, detach_keys=keys,
                      sig_proxy=opts.sig_proxy and not tty)
    try:
        attaching = client.container_attach(cid, stdin=stdin, stdout=True, stderr=True,
                                            detach_keys=opts.detach_keys)
        waited = waiting.response()
        raw = client.upgraded(attaching, "POST", f"/containers/{cid}/attach")
        if session.track_size:
            session.resize(initial=True)
        if session.stream(raw):
            waited.close()
            raise CLIError("read escape sequence")
        status = wait_status(cli, waited)
    finally:
        session.close()
    if status:
        raise CLIError("", status)


ATTACH = Command("attach", "[OPTIONS] CONTAINER",
                 "Attach local standard input, output, and error streams to a running container",
                 flags=[Flag("detach-keys", None, STRING, help="Override the key sequence for detaching a container"),
                        Flag("no-stdin", None, help="Do not attach STDIN"),
                        Flag("sig-proxy", None, default=True, help="Proxy all received signals to the process")],
                 args=exact(1), run=run_attach, see_also=("berth container attach", "berth attach"))
