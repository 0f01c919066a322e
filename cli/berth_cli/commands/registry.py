"""Registry commands: pull, push, login, logout, and ``registry serve`` (berth's
own registry server, run in this process from the berth package).

Pull and push send the saved credentials of the registry as
``X-Registry-Auth`` and draw the daemon's progress like docker does: one
line per layer redrawn in place on a terminal, plain lines otherwise.
"""

from __future__ import annotations

from ..args import INT, STRING, Command, Flag, at_most, exact, no_args
from ..errors import APIError, CLIError, StreamError

ENCODED_ANONYMOUS = "e30="  # base64url("{}")


# -- credentials ----------------------------------------------------------------------

def saved_credentials(cli, domain: str) -> dict | None:
    from ..credentials import CredentialsError, lookup
    try:
        return lookup(cli.config_dir, cli.env.environ, domain)
    except CredentialsError as e:
        raise CLIError(f"Error: {e}") from None


def encoded_auth_for(cli, domain: str) -> str:
    """``X-Registry-Auth`` for ``domain`` (a reference's registry): the saved
    credentials, else anonymous. Used by pull, push, and run/create."""
    from ..credentials import encode_header
    creds = saved_credentials(cli, domain)
    return encode_header(creds) if creds else ENCODED_ANONYMOUS


# -- progress display -------------------------------------------------------------------

def _human_size(n: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def progress_string(detail: dict, width: int = 120) -> str:
    """docker's JSONProgress.String(): a bar (on wide terminals) and sizes."""
    current = detail.get("current") or 0
    total = detail.get("total") or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{_human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = f"[{'=' * percentage}>{' ' * max(50 - percentage, 0)}] "
    numbers = (f"{_human_size(current):>8}/{_human_size(total)}" if current <= total
               else f"{_human_size(current):>8}")
    return bar + numbers


def _terminal_width(out) -> int:
    import os
    try:
        return os.get_terminal_size(out.raw.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 200


def display_progress(messages, out, tty: bool, aux=None) -> None:
    """docker's DisplayJSONMessagesStream. A message with ``progressDetail``
    (even empty) is a progress line: on a terminal it owns a line per id,
    redrawn in place; elsewhere only lines without a bar are printed."""
    ids: dict[str, int] = {}
    width = _terminal_width(out) if tty else 0
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("aux") is not None:
            if aux is not None:
                aux(msg["aux"])
            continue
        error = msg.get("errorDetail") or ({"message": msg["error"]} if msg.get("error") else None)
        if error:
            raise StreamError(str(error.get("message") or msg.get("error") or "unknown error"))
        has_progress = "progressDetail" in msg and isinstance(msg["progressDetail"], dict)
        progress = progress_string(msg["progressDetail"], width) if has_progress else ""
        progress_message = msg.get("progress") or ""
        ident = msg.get("id") or ""
        diff = 0
        if ident and (has_progress or progress_message):
            if ident not in ids:
                ids[ident] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - ids[ident]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        endl = ""
        if tty and not msg.get("stream") and has_progress:
            out.write("\x1b[2K\r")
            endl = "\r"
        elif not tty and has_progress and progress:
            continue  # no bars off a terminal
        line = f"{ident}: " if ident else ""
        if has_progress and tty:
            line += f"{msg.get('status', '')} {progress}{endl}"
        elif progress_message and tty:
            line += f"{msg.get('status', '')} {progress_message}{endl}"
        elif msg.get("stream"):
            line += f"{msg['stream']}{endl}"
        else:
            line += f"{msg.get('status', '')}{endl}\n"
        out.write(line)
        if ident and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()


def _consume(resp, out, tty: bool, quiet: bool, aux=None) -> None:
    try:
        if quiet:
            for msg in resp.iter_json():
                if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                    detail = msg.get("errorDetail") or {}
                    raise StreamError(str(detail.get("message") or msg.get("error")))
        else:
            display_progress(resp.iter_json(), out, tty, aux)
    finally:
        resp.close()


def _parse_reference(text: str):
    from ..reference import InvalidReference, parse_normalized
    try:
        return parse_normalized(text)
    except InvalidReference as e:
        raise CLIError(str(e)) from None


# -- pull -----------------------------------------------------------------------------------

def run_pull(cli, opts, args) -> None:
    ref = _parse_reference(args[0])
    if opts.all_tags and (ref.tag or ref.digest):
        raise CLIError("tag can't be used with --all-tags/-a")
    if not opts.all_tags and not ref.tag and not ref.digest:
        if not opts.quiet:
            cli.out.write("Using default tag: latest\n")
        ref.tag = "latest"
    params = {"fromImage": ref.name, "tag": ref.digest or ref.tag or None,
              "platform": opts.platform or None}
    headers = {"X-Registry-Auth": encoded_auth_for(cli, ref.domain)}
    resp = cli.client.request("POST", "/images/create", params, headers=headers)
    _consume(resp, cli.out, cli.out.isatty(), opts.quiet)
    if opts.quiet:
        cli.out.write(f"{ref.name}" + (f":{ref.tag}" if ref.tag else "")
                      + (f"@{ref.digest}" if ref.digest else "") + "\n")


PULL = Command("pull", "[OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry",
               flags=[Flag("all-tags", "a", help="Download all tagged images in the repository"),
                      Flag("disable-content-trust", default=True,
                           help="Skip image verification"),
                      Flag("platform", None, STRING,
                           help="Set platform if server is multi-platform capable"),
                      Flag("quiet", "q", help="Suppress verbose output")],
               args=exact(1), run=run_pull, see_also=("berth image pull", "berth pull"))


# -- push -----------------------------------------------------------------------------------

def _check_compression(value: str) -> str:
    if value not in ("gzip", "zstd"):
        raise ValueError("must be gzip or zstd")
    return value


def _check_chunk(value: int) -> int:
    if value < 1:
        raise ValueError("must be a positive number of bytes")
    return value


def run_push(cli, opts, args) -> None:
    from ..transport import quote
    ref = _parse_reference(args[0])
    if opts.all_tags and (ref.tag or ref.digest):
        raise CLIError("tag can't be used with --all-tags/-a")
    if not opts.all_tags and not ref.tag and not ref.digest:
        if not opts.quiet:
            cli.out.write("Using default tag: latest\n")
        ref.tag = "latest"
    name = ref.name + (f"@{ref.digest}" if ref.digest else "")
    params: dict = {"tag": ref.tag or None}
    path = f"/images/{quote(name, '/:@')}/push"
    if opts.compression or opts.chunk_size:
        # berth-only options go to berth's own path; the Docker path stays Docker's.
        path = "/berth" + path
        params["compression"] = opts.compression or None
        params["chunk_size"] = opts.chunk_size or None
    headers = {"X-Registry-Auth": encoded_auth_for(cli, ref.domain)}
    resp = cli.client.request("POST", path, params, headers=headers)
    _consume(resp, cli.out, cli.out.isatty(), opts.quiet)
    if opts.quiet:
        cli.out.write(ref.familiar() + "\n")


PUSH = Command("push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry",
               flags=[Flag("all-tags", "a", help="Push all tags of an image to the repository"),
                      Flag("chunk-size", None, INT, type_name="bytes", check=_check_chunk,
                           help="Upload layers larger than this in chunks of this size (berth)"),
                      Flag("compression", None, STRING, check=_check_compression,
                           help='Compress layers with "gzip" or "zstd" (berth; default: '
                                'as stored, gzip for uncompressed layers)'),
                      Flag("disable-content-trust", default=True, help="Skip image signing"),
                      Flag("quiet", "q", help="Suppress verbose output")],
               args=exact(1), run=run_push, see_also=("berth image push", "berth push"))


# -- login / logout ---------------------------------------------------------------------------

def _server(args) -> tuple[str, str]:
    """(registry host for config.json, address sent to the daemon)."""
    from ..credentials import DOCKER_HUB, DOCKER_HUB_KEY, registry_host
    address = args[0] if args else ""
    host = registry_host(address)
    return host, (DOCKER_HUB_KEY if host == DOCKER_HUB else address or host)


def _read_password_stdin(cli) -> str:
    data = cli.env.stdin.raw.read()
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.rstrip("\r\n")


def run_login(cli, opts, args) -> None:
    from ..credentials import ConfigFile, CredentialsError
    host, address = _server(args)
    username, password = opts.username.strip(), opts.password
    if opts.password_stdin:
        if password:
            raise CLIError("--password and --password-stdin are mutually exclusive")
        if not username:
            raise CLIError("Must provide --username with --password-stdin")
        password = _read_password_stdin(cli)
    elif password:
        cli.err.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    config = ConfigFile(cli.config_dir, cli.env.environ)
    stored = None
    if not username and not password:
        stored = saved_credentials(cli, host)
    if stored is None and (not username or not password):
        if not cli.env.stdin.isatty():
            raise CLIError("Error: Cannot perform an interactive login from a non TTY device")
        if not username:
            cli.out.write("Username: ")
            cli.out.flush()
            username = cli.env.stdin.readline().strip()
            if not username:
                raise CLIError("Error: Non-null Username Required")
        if not password:
            import getpass
            password = getpass.getpass("Password: ")
            if not password:
                raise CLIError("Error: Password Required")
    body = {"username": username, "password": password, "serveraddress": address}
    if stored is not None:
        body = {"username": stored.get("username", ""), "password": stored.get("password", ""),
                "identitytoken": stored.get("identitytoken", ""), "serveraddress": address}
    import json
    try:
        with cli.client.request("POST", "/auth", body=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json"}) as resp:
            answer = resp.json()
    except APIError as e:
        raise CLIError(e.message) from None
    token = (answer or {}).get("IdentityToken") or ""
    if stored is None or token:
        try:
            config.store(host, body["username"], body["password"], token)
        except (CredentialsError, OSError) as e:
            raise CLIError(f"Error saving credentials: {e}") from None
        if config.helper_for(config.load(), host) is None:
            cli.err.write(f"WARNING! Your credentials are stored unencrypted in '{config.path}'.\n"
                          "Configure a credential helper to remove this warning.\n")
    cli.out.write(((answer or {}).get("Status") or "Login Succeeded") + "\n")


LOGIN = Command("login", "[OPTIONS] [SERVER]",
                "Authenticate to a registry.\nDefaults to Docker Hub if no server is specified.",
                flags=[Flag("password", "p", STRING, help="Password or Personal Access Token (PAT)"),
                       Flag("password-stdin", help="Take the Password or Personal Access Token "
                                                   "(PAT) from stdin"),
                       Flag("username", "u", STRING, help="Username")],
                args=at_most(1), run=run_login)


def run_logout(cli, opts, args) -> None:
    from ..credentials import ConfigFile, CredentialsError, server_key
    host, _ = _server(args)
    shown = server_key(host)
    try:
        removed = ConfigFile(cli.config_dir, cli.env.environ).erase(host)
    except (CredentialsError, OSError) as e:
        raise CLIError(f"Error: {e}") from None
    if not removed:
        cli.out.write(f"Not logged in to {shown}\n")
        return
    cli.out.write(f"Removing login credentials for {shown}\n")


LOGOUT = Command("logout", "[SERVER]",
                 "Log out from a registry.\nIf no server is specified, the default is defined by "
                 "the daemon.", args=at_most(1), run=run_logout)


# -- registry serve -----------------------------------------------------------------------------

DEFAULT_REGISTRY_ROOT = "/var/lib/berth-registry"


def run_serve(cli, opts, args) -> int:
    from ..engine import import_site
    import_site()
    try:
        import logging

        from berth.registryd import AddressError, parse_addr, serve
    except ImportError as e:
        raise CLIError(f"berth registry serve needs the berth engine package: {e}") from None
    try:
        parse_addr(opts.addr)
    except AddressError as e:
        raise CLIError(f"Error: {e}", 125) from None
    logging.basicConfig(level=logging.DEBUG if cli.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(server) -> None:
        auth = f", basic auth from {opts.htpasswd}" if opts.htpasswd else ""
        cli.out.write(f"berth registry serving {server.url} (root {opts.root}{auth})\n")
        cli.out.flush()

    code = serve(opts.root, opts.addr, opts.htpasswd or None, ready=ready)
    if code:
        raise CLIError("", code)
    return 0


SERVE = Command("serve", "[OPTIONS]", "Serve an OCI distribution registry",
                flags=[Flag("addr", None, STRING, default="127.0.0.1:5000",
                            help="Address to listen on (HOST:PORT; port 0 picks a free one)"),
                       Flag("htpasswd", None, STRING,
                            help="htpasswd file (bcrypt) for basic authentication"),
                       Flag("root", None, STRING, default=DEFAULT_REGISTRY_ROOT,
                            help="Storage directory")],
                args=no_args(), run=run_serve)

REGISTRY = Command("registry", short="Run a registry", commands=[SERVE])
