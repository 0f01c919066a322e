"""build and builder prune.

``berth build DIR`` asks the daemon to read the context in place
(``POST /berth/build``): no tar, no upload. The daemon checks it sees the
same directory (device and inode); if it does not (another mount namespace,
an older daemon), the context is sent as a tar to ``POST /build``, as the
docker CLI does. ``berth build - < Dockerfile`` and ``berth build - <
context.tar`` always send a tar.
"""

from __future__ import annotations

import io
import os

from ..args import BOOL, LIST, STRING, Command, Flag, exact, no_args
from ..errors import APIError, Cancelled, CLIError
from .common import filter_flag, filters_dict

_PROGRESS = ("auto", "plain", "tty", "quiet", "rawjson")
_TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _build_args(values: list[str], environ: dict[str, str]) -> dict[str, str | None]:
    """``K=V`` as is; ``K`` alone takes the client's environment value (None if unset)."""
    out: dict[str, str | None] = {}
    for item in values:
        key, eq, value = item.partition("=")
        out[key] = value if eq else environ.get(key)
    return out


def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _json(value) -> str:
    from ..jsonio import dumps
    return dumps(value)


def _is_archive(head: bytes) -> bool:
    if head.startswith(_TAR_MAGICS):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _dockerfile_tar(data: bytes, name: str = "Dockerfile") -> bytes:
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _context_tar(root: str, dockerfile: str | None, out,
                 dockerfile_data: bytes | None = None) -> str | None:
    """Tar ``root`` (minus what its .dockerignore excludes) into ``out``; a
    Dockerfile outside the context (or given as bytes) is added under a
    private name, which is returned."""
    import tarfile
    from ..engine import import_site
    matcher = None
    import_site()
    try:
        from berth.builder.ignore import PatternMatcher, read_ignore
        try:
            with open(os.path.join(root, ".dockerignore"), "rb") as f:
                matcher = PatternMatcher(read_ignore(f.read()))
        except FileNotFoundError:
            pass
    except ImportError:  # the daemon applies .dockerignore again anyway
        pass
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirs, files in os.walk(root):
            rel_dir = os.path.relpath(directory, root)
            dirs.sort()
            kept = []
            for name in dirs:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if matcher is not None and matcher.matches(rel) and not matcher.may_include_below(rel):
                    continue
                kept.append(name)
            dirs[:] = kept
            for name in sorted(files) + [d for d in kept]:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if matcher is not None and matcher.matches(rel) and rel not in (".dockerignore",):
                    continue
                tar.add(os.path.join(directory, name), arcname=rel, recursive=False)
        if dockerfile_data is not None:
            import time
            name = f".berth-dockerfile-{os.getpid()}"
            info = tarfile.TarInfo(name)
            info.size = len(dockerfile_data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(dockerfile_data))
            return name
        if dockerfile is not None:
            real_root = os.path.realpath(root)
            real_file = os.path.realpath(dockerfile)
            if os.path.commonpath([real_root, real_file]) == real_root:
                return os.path.relpath(real_file, real_root)
            name = f".berth-dockerfile-{os.getpid()}"
            tar.add(real_file, arcname=name, recursive=False)
            return name
    return None


class _Progress:
    """Shows the daemon's JSON messages; remembers the image ID."""

    def __init__(self, cli, quiet: bool, raw: bool):
        self.cli = cli
        self.quiet = quiet
        self.raw = raw
        self.image_id = ""
        self.quiet_output = []

    def show(self, messages) -> None:
        out = self.cli.out
        tty = out.isatty()
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            if self.raw:
                out.write(_json(msg) + "\n")
                out.flush()
            if msg.get("aux") is not None:
                aux = msg["aux"]
                if isinstance(aux, dict) and aux.get("ID"):
                    self.image_id = aux["ID"]
                continue
            error = msg.get("errorDetail") or ({"message": msg["error"]} if msg.get("error") else None)
            if error:
                code = error.get("code") or 1
                raise CLIError(str(error.get("message") or msg.get("error") or "unknown error"),
                               code if isinstance(code, int) and code > 0 else 1)
            if self.raw:
                continue
            if self.quiet:
                text = msg.get("stream") or ""
                if text.strip().startswith("sha256:"):
                    self.image_id = text.strip()
                self.quiet_output.append(text)
                continue
            from ..formatting import display_json_messages
            display_json_messages([msg], out, tty)


def run_build(cli, opts, args) -> None:
    if opts.progress not in _PROGRESS:
        raise CLIError(f'invalid value "{opts.progress}" for --progress: use one of '
                       f'{", ".join(_PROGRESS)}', 125)
    quiet = opts.quiet or opts.progress == "quiet"
    if opts.iidfile:
        try:
            os.unlink(opts.iidfile)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CLIError(f"Removing image ID file: {e.strerror}") from None
    params = {
        "t": list(opts.tag) or None,
        "buildargs": _json(_build_args(opts.build_arg, cli.env.environ)) if opts.build_arg else None,
        "labels": _json(_labels(opts.label)) if opts.label else None,
        "target": opts.target or None,
        "nocache": True if opts.no_cache else None,
        "pull": True if opts.pull else None,
        "q": True if quiet else None,
        "platform": opts.platform or None,
        "networkmode": opts.network or None,
        "rm": opts.rm,
        "forcerm": True if opts.force_rm else None,
    }
    context = args[0]
    if context.startswith(("http://", "https://", "git://", "git@")):
        raise CLIError(f"unable to prepare context: remote contexts are not supported ({context})")
    progress = _Progress(cli, quiet, opts.progress == "rawjson")
    if context == "-":
        _build_from_stdin(cli, opts, params, progress)
    else:
        _build_dir(cli, opts, params, progress, context)
    if quiet and not opts.progress == "rawjson":
        cli.out.write("".join(progress.quiet_output) if progress.quiet_output else
                      (progress.image_id + "\n" if progress.image_id else ""))
    if opts.iidfile and progress.image_id:
        try:
            with open(opts.iidfile, "w") as f:
                f.write(progress.image_id)
        except OSError as e:
            raise CLIError(f"Cannot write image ID file {opts.iidfile}: {e.strerror}") from None


def _stream(cli, path: str, params: dict, body, progress: _Progress,
            headers: dict | None = None) -> None:
    with cli.client.request("POST", path, params, body, headers) as resp:
        progress.show(resp.iter_json())


def _build_from_stdin(cli, opts, params, progress) -> None:
    if opts.file == "-":
        raise CLIError("invalid argument: can't use stdin for both build context and dockerfile")
    data = cli.env.stdin.raw.read()
    if _is_archive(data[:512]):
        if opts.file:
            params["dockerfile"] = opts.file
        body = data
    else:
        body = _dockerfile_tar(data)
        params["dockerfile"] = "Dockerfile"
    _stream(cli, "/build", params, body, progress, {"Content-Type": "application/x-tar"})


def _build_dir(cli, opts, params, progress, context: str) -> None:
    if not os.path.isdir(context):
        raise CLIError(f'unable to prepare context: path "{context}" not found')
    root = os.path.abspath(context)
    dockerfile = None
    body = None
    if opts.file == "-":
        body = cli.env.stdin.raw.read()
        params["dockerfile"] = "-"
    elif opts.file:
        # As with docker: -f is relative to the current directory.
        dockerfile = os.path.abspath(opts.file)
        if not os.path.isfile(dockerfile):
            raise CLIError(f"unable to prepare context: the Dockerfile ({opts.file}) "
                           "cannot be found")
        params["dockerfile"] = dockerfile
    st = os.stat(root)
    in_place = dict(params, context=root, context_id=f"{st.st_dev}:{st.st_ino}")
    try:
        _stream(cli, "/berth/build", in_place, body, progress)
        return
    except APIError as e:
        if e.status not in (404, 412):
            raise
        if cli.debug:
            cli.log(f"in-place build refused ({e.explanation}); sending the context as a tar")
    import tempfile
    with tempfile.TemporaryFile() as tar:
        name = _context_tar(root, dockerfile, tar, body)
        tar.seek(0)
        params = dict(params)
        if name:
            params["dockerfile"] = name
        _stream(cli, "/build", params, tar, progress, {"Content-Type": "application/x-tar"})


BUILD = Command(
    "build", "[OPTIONS] PATH | URL | -", "Build an image from a Dockerfile",
    flags=[
        Flag("build-arg", None, LIST, help="Set build-time variables", type_name="list"),
        Flag("file", "f", STRING, help="Name of the Dockerfile (Default is 'PATH/Dockerfile')"),
        Flag("force-rm", help="Always remove intermediate containers"),
        Flag("iidfile", None, STRING, help="Write the image ID to the file"),
        Flag("label", None, LIST, help="Set metadata for an image", type_name="list"),
        Flag("network", None, STRING, default="default",
             help="Set the networking mode for the RUN instructions during build"),
        Flag("no-cache", help="Do not use cache when building the image"),
        Flag("platform", None, STRING, help="Set platform if server is multi-platform capable"),
        Flag("progress", None, STRING, default="auto",
             help="Set type of progress output (auto, plain, tty, quiet, rawjson)"),
        Flag("pull", help="Always attempt to pull a newer version of the image"),
        Flag("quiet", "q", help="Suppress the build output and print image ID on success"),
        Flag("rm", None, BOOL, default=True,
             help="Remove intermediate containers after a successful build"),
        Flag("tag", "t", LIST, help="Name and optionally a tag in the 'name:tag' format",
             type_name="list"),
        Flag("target", None, STRING, help="Set the target build stage to build."),
    ],
    args=exact(1), run=run_build, see_also=("berth build", "berth builder build"))


# -- builder prune ---------------------------------------------------------------------

def _bytes(text: str) -> int:
    """``10GB``, ``512m``, ``1024`` -> bytes (binary units, as docker's RAMInBytes)."""
    import re
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*", text.lower())
    if not m:
        raise CLIError(f'invalid argument "{text}" for "--keep-storage" flag: invalid size', 125)
    return int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2) or " "))


PRUNE_WARNING = "WARNING! This will remove all dangling build cache. Are you sure you want to continue?"
PRUNE_ALL_WARNING = "WARNING! This will remove all build cache. Are you sure you want to continue?"


def run_prune(cli, opts, args) -> None:
    from ..formatting import human_size
    if not opts.force and not cli.confirm(PRUNE_ALL_WARNING if opts.all else PRUNE_WARNING):
        raise Cancelled()
    params = {"all": True if opts.all else None, "filters": None,
              "keep-storage": _bytes(opts.keep_storage) if opts.keep_storage else None}
    filters = filters_dict(opts.filter)
    if filters:
        from ..client import encode_filters
        params["filters"] = encode_filters(filters)
    with cli.client.request("POST", "/build/prune", params) as resp:
        report = resp.json() or {}
    deleted = report.get("CachesDeleted") or []
    if deleted:
        cli.out.write("Deleted build cache objects:\n" + "".join(f"{d}\n" for d in deleted) + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}\n")


PRUNE = Command("prune", "", "Remove build cache",
                flags=[Flag("all", "a", help="Remove all unused build cache, not just dangling ones"),
                       filter_flag(None, 'Provide filter values (e.g. "until=24h")'),
                       Flag("force", "f", help="Do not prompt for confirmation"),
                       Flag("keep-storage", None, STRING, help="Amount of disk space to keep for cache")],
                args=no_args(), run=run_prune)

BUILDER = Command("builder", short="Manage builds", commands=[BUILD, PRUNE])
