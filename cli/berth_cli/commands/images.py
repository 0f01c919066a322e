"""Image commands: images/ls, inspect, tag, rmi/rm, history, import, load, save, prune."""

from __future__ import annotations

import os

from ..args import LIST, STRING, Command, Flag, at_least, at_most, exact, no_args
from ..errors import APIError, Cancelled, CLIError
from ..formatting import (Row, created_since, ellipsis, go_time_string, human_size,
                          render_rows, rfc3339, truncate_id)
from .common import (FORMAT_HELP, INSPECT_FORMAT_HELP, filter_flag, filters_dict, format_flag,
                     inspect_objects, open_input)

# -- listing -----------------------------------------------------------------------

DEFAULT_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t"
                 "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}")
DIGEST_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t"
                "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}")
QUIET_FORMAT = "{{.ID}}"
RAW_FORMAT = ("repository: {{ .Repository }}\ntag: {{.Tag}}\n{{if .Digest}}digest: {{.Digest}}\n{{end}}"
              "image_id: {{.ID}}\ncreated_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n")


class ImageRow(Row):
    """One line of `berth images` (docker's formatter.imageContext)."""

    type_name = "imageContext"
    fields = ("ID", "Repository", "Tag", "Digest", "CreatedSince", "CreatedAt", "Size",
              "Containers", "VirtualSize", "SharedSize", "UniqueSize")
    headers = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
               "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
               "Containers": "CONTAINERS", "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE",
               "UniqueSize": "UNIQUE SIZE"}

    def __init__(self, image: dict, repo: str, tag: str, digest: str, trunc: bool, now: float):
        self.i = image
        self.repo, self.tag, self.digest = repo, tag, digest
        self.trunc = trunc
        self.now = now

    def ID(self):
        image_id = self.i.get("Id") or ""
        return truncate_id(image_id) if self.trunc else image_id

    def Repository(self):
        return self.repo

    def Tag(self):
        return self.tag

    def Digest(self):
        return self.digest

    def CreatedSince(self):
        created = self.i.get("Created") or 0
        return created_since(created, self.now) if created > 0 else ""

    def CreatedAt(self):
        return go_time_string(self.i.get("Created") or 0)

    def Size(self):
        return human_size(self.i.get("Size") or 0, 3)

    def Containers(self):
        n = self.i.get("Containers", -1)
        return "N/A" if n is None or n == -1 else str(n)

    def VirtualSize(self):
        return human_size(self.i.get("Size") or 0)

    def SharedSize(self):
        shared = self.i.get("SharedSize", -1)
        return "N/A" if shared is None or shared == -1 else human_size(shared)

    def UniqueSize(self):
        size, shared = self.i.get("Size", -1), self.i.get("SharedSize", -1)
        if size in (None, -1) or shared in (None, -1):
            return "N/A"
        return human_size(size - shared)


def _is_dangling(image: dict) -> bool:
    tags, digests = image.get("RepoTags") or [], image.get("RepoDigests") or []
    if not tags and not digests:
        return True
    return tags == ["<none>:<none>"] and digests == ["<none>@<none>"]


def image_rows(images: list[dict], trunc: bool, show_digests: bool, need_digest: bool,
               now: float) -> list[ImageRow]:
    """One row per repository:tag (and per digest with --digests), like docker."""
    from ..reference import split_for_display
    rows = []
    for image in images:
        if _is_dangling(image):
            rows.append(ImageRow(image, "<none>", "<none>", "<none>", trunc, now))
            continue
        repo_tags: dict[str, list[str]] = {}
        repo_digests: dict[str, list[str]] = {}
        for text in image.get("RepoTags") or []:
            ref = split_for_display(text)
            if ref is not None and ref.tag:
                repo_tags.setdefault(ref.familiar_name, []).append(ref.tag)
        for text in image.get("RepoDigests") or []:
            ref = split_for_display(text)
            if ref is not None and ref.digest:
                repo_digests.setdefault(ref.familiar_name, []).append(ref.digest)
        for repo, tags in repo_tags.items():
            digests = repo_digests.pop(repo, [])
            if not need_digest:
                digests = []
            for tag in tags:
                if not digests:
                    rows.append(ImageRow(image, repo, tag, "<none>", trunc, now))
                for digest in digests:
                    rows.append(ImageRow(image, repo, tag, digest, trunc, now))
        for repo, digests in repo_digests.items():
            if show_digests:
                rows.extend(ImageRow(image, repo, "<none>", d, trunc, now) for d in digests)
            else:
                rows.append(ImageRow(image, repo, "<none>", "", trunc, now))
    return rows


def image_format(source: str, quiet: bool, digests: bool) -> str:
    """docker's NewImageFormat."""
    if source == "table":
        return QUIET_FORMAT if quiet else DIGEST_TABLE if digests else DEFAULT_TABLE
    if source == "raw":
        return "image_id: {{.ID}}" if quiet else RAW_FORMAT
    if source.startswith("table") and digests and "{{.Digest}}" not in source:
        source += "\t{{.Digest}}"
    return source


def run_images(cli, opts, args) -> None:
    filters = filters_dict(opts.filter)
    if args:
        filters.setdefault("reference", []).append(args[0])
    images = cli.client.images(all=opts.all, filters=filters)
    fmt = image_format(opts.format or "table", opts.quiet, opts.digests)
    need_digest = opts.digests or "{{.Digest}}" in fmt
    rows = image_rows(images, not opts.no_trunc, opts.digests, need_digest, cli.now())
    cli.out.write(render_rows(fmt, rows, ImageRow.headers))


LIST_FLAGS = [
    Flag("all", "a", help="Show all images (default hides intermediate images)"),
    Flag("digests", help="Show digests"),
    filter_flag(),
    format_flag(FORMAT_HELP),
    Flag("no-trunc", help="Don't truncate output"),
    Flag("quiet", "q", help="Only show image IDs"),
]
_LIST_ALIASES = ("berth image ls", "berth image list", "berth images")

LS = Command("ls", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", aliases=("list",),
             flags=LIST_FLAGS, args=at_most(1), run=run_images, see_also=_LIST_ALIASES)
IMAGES = LS.copy_as("images")


# -- inspect -------------------------------------------------------------------------

def run_inspect(cli, opts, args) -> None:
    inspect_objects(cli, args, opts.format, cli.client.image_inspect,
                    lambda ref: f"Error: No such image: {ref}")


INSPECT = Command("inspect", "[OPTIONS] IMAGE [IMAGE...]", "Display detailed information on one or more images",
                  flags=[format_flag(INSPECT_FORMAT_HELP, "f")], args=at_least(1), run=run_inspect)


# -- tag -------------------------------------------------------------------------------

def run_tag(cli, opts, args) -> None:
    from ..reference import InvalidReference, parse_normalized
    source, target = args
    try:
        ref = parse_normalized(target)
    except InvalidReference as e:
        raise CLIError(f'Error parsing reference: "{target}" is not a valid repository/tag: {e}') from None
    if ref.digest:
        raise CLIError("refusing to create a tag with a digest reference")
    cli.client.image_tag(source, ref.familiar_name, ref.tag or "latest")


TAG = Command("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
              "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", args=exact(2), run=run_tag,
              see_also=("berth image tag", "berth tag"))


# -- rm ----------------------------------------------------------------------------------

def run_rmi(cli, opts, args) -> None:
    errors, fatal = [], False
    for name in args:
        try:
            deleted = cli.client.image_remove(name, force=opts.force, noprune=opts.no_prune)
        except APIError as e:
            fatal = fatal or not e.not_found
            errors.append(e.message)
            continue
        for item in deleted or []:
            if item.get("Deleted"):
                cli.out.write(f"Deleted: {item['Deleted']}\n")
            else:
                cli.out.write(f"Untagged: {item.get('Untagged', '')}\n")
        cli.out.flush()
    if errors:
        message = "\n".join(errors)
        # with --force, images that are already gone are reported but not fatal
        if not opts.force or fatal:
            raise CLIError(message)
        cli.err.write(message + "\n")


RM = Command("rm", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", aliases=("rmi", "remove"),
             flags=[Flag("force", "f", help="Force removal of the image"),
                    Flag("no-prune", help="Do not delete untagged parents")],
             args=at_least(1), run=run_rmi,
             see_also=("berth image rm", "berth image remove", "berth rmi"))
RMI = RM.copy_as("rmi")


# -- history ---------------------------------------------------------------------------------

HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_TABLE_NON_HUMAN = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
_EPOCH_2000 = 946684800  # docker shows no age for layers "created" before 2000


class HistoryRow(Row):
    type_name = "historyContext"
    fields = ("ID", "CreatedSince", "CreatedAt", "CreatedBy", "Size", "Comment")
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
               "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}

    def __init__(self, h: dict, trunc: bool, human: bool, now: float):
        self.h, self.trunc, self.human, self.now = h, trunc, human, now

    def ID(self):
        image_id = self.h.get("Id") or ""
        return truncate_id(image_id) if self.trunc else image_id

    def CreatedAt(self):
        return rfc3339(self.h.get("Created") or 0)

    def CreatedSince(self):
        if not self.human:
            return self.CreatedAt()
        created = self.h.get("Created") or 0
        return "" if created <= _EPOCH_2000 else created_since(created, self.now)

    def CreatedBy(self):
        text = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(text, 45) if self.trunc else text

    def Size(self):
        size = self.h.get("Size") or 0
        return human_size(size, 3) if self.human else str(size)

    def Comment(self):
        return self.h.get("Comment") or ""


def run_history(cli, opts, args) -> None:
    history = cli.client.image_history(args[0])
    source = opts.format or "table"
    if source == "table":
        source = QUIET_FORMAT if opts.quiet else HISTORY_TABLE if opts.human else HISTORY_TABLE_NON_HUMAN
    rows = [HistoryRow(h, not opts.no_trunc, opts.human, cli.now()) for h in history]
    cli.out.write(render_rows(source, rows, HistoryRow.headers))


HISTORY = Command("history", "[OPTIONS] IMAGE", "Show the history of an image",
                  flags=[format_flag(FORMAT_HELP),
                         Flag("human", "H", default=True,
                              help="Print sizes and dates in human readable format"),
                         Flag("no-trunc", help="Don't truncate output"),
                         Flag("quiet", "q", help="Only show image IDs")],
                  args=exact(1), run=run_history, see_also=("berth image history", "berth history"))


# -- import / load / save -------------------------------------------------------------------

def run_import(cli, opts, args) -> None:
    from ..formatting import display_json_messages
    from ..reference import InvalidReference, parse_normalized
    source = args[0]
    repo = args[1] if len(args) > 1 else None
    if repo:
        try:
            parse_normalized(repo)
        except InvalidReference as e:
            raise CLIError(str(e)) from None
    body = None
    if source == "-":
        body = cli.env.stdin.raw
    elif not source.startswith(("http://", "https://")):
        body = open_input(source)
        source = "-"
    try:
        with cli.client.image_import(source, body, repo=repo, message=opts.message,
                                     changes=opts.change, platform=opts.platform) as resp:
            display_json_messages(resp.iter_json(), cli.out, cli.out.isatty())
    finally:
        if body is not None and body is not cli.env.stdin.raw:
            body.close()


IMPORT = Command("import", "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                 "Import the contents from a tarball to create a filesystem image",
                 flags=[Flag("change", "c", LIST, help="Apply Dockerfile instruction to the created image",
                             type_name="list"),
                        Flag("message", "m", STRING, help="Set commit message for imported image"),
                        Flag("platform", None, STRING, help="Set platform if server is multi-platform capable")],
                 args=(1, 2), run=run_import, see_also=("berth image import", "berth import"))


def run_load(cli, opts, args) -> None:
    from ..formatting import display_json_messages
    if opts.input:
        body = open_input(opts.input)
    else:
        if cli.env.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty")
        body = cli.env.stdin.raw
    try:
        quiet = opts.quiet or not cli.out.isatty()
        with cli.client.image_load(body, quiet=quiet) as resp:
            if resp.content_type == "application/json":
                display_json_messages(resp.iter_json(), cli.out, cli.out.isatty())
            else:
                for chunk in resp.iter_content():
                    cli.out.write_bytes(chunk)
    finally:
        if opts.input:
            body.close()


LOAD = Command("load", "[OPTIONS]", "Load an image from a tar archive or STDIN",
               flags=[Flag("input", "i", STRING, help="Read from tar archive file, instead of STDIN"),
                      Flag("quiet", "q", help="Suppress the load output")],
               args=no_args(), run=run_load, see_also=("berth image load", "berth load"))


def _check_output_path(path: str) -> None:
    directory = os.path.dirname(os.path.normpath(path))
    if directory and not os.path.isdir(directory):
        raise CLIError(f'failed to save image: invalid output path: directory "{directory}" does not exist')
    if os.path.isdir(path):
        raise CLIError(f'failed to save image: invalid output path: "{path}" is a directory')


def run_save(cli, opts, args) -> None:
    if not opts.output:
        if cli.out.isatty():
            raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        with cli.client.image_save(args) as resp:
            for chunk in resp.iter_content():
                cli.out.write_bytes(chunk)
        return
    _check_output_path(opts.output)
    with cli.client.image_save(args) as resp:
        write_atomically(opts.output, resp.iter_content())


def write_atomically(path: str, chunks) -> None:
    """Stream into a temp file beside ``path`` and rename it in place: a failed
    transfer never leaves a truncated archive under the requested name."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.berth-tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


SAVE = Command("save", "[OPTIONS] IMAGE [IMAGE...]",
               "Save one or more images to a tar archive (streamed to STDOUT by default)",
               flags=[Flag("output", "o", STRING, help="Write to a file, instead of STDOUT")],
               args=at_least(1), run=run_save, see_also=("berth image save", "berth save"))


# -- prune ---------------------------------------------------------------------------------

ALL_IMAGES_WARNING = ("WARNING! This will remove all images without at least one container "
                      "associated to them.\nAre you sure you want to continue?")
DANGLING_WARNING = "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"


def prune_images(cli, all_: bool, filters: dict[str, list[str]]) -> tuple[int, str]:
    """Prune images; (space reclaimed, report text). Also a `system prune` step."""
    filters = {k: list(v) for k, v in filters.items()}
    filters["dangling"] = ["false" if all_ else "true"]
    report = cli.client.images_prune(filters)
    deleted = report.get("ImagesDeleted") or []
    if not deleted:
        return 0, ""
    lines = ["Deleted Images:"]
    for item in deleted:
        if item.get("Untagged"):
            lines.append(f"untagged: {item['Untagged']}")
        else:
            lines.append(f"deleted: {item.get('Deleted', '')}")
    return report.get("SpaceReclaimed") or 0, "\n".join(lines) + "\n"


def run_prune(cli, opts, args) -> None:
    if not opts.force and not cli.confirm(ALL_IMAGES_WARNING if opts.all else DANGLING_WARNING):
        raise Cancelled()
    reclaimed, output = prune_images(cli, opts.all, filters_dict(opts.filter))
    if output:
        cli.out.write(output + "\n")
    cli.out.write(f"Total reclaimed space: {human_size(reclaimed)}\n")


PRUNE = Command("prune", "[OPTIONS]", "Remove unused images",
                flags=[Flag("all", "a", help="Remove all unused images, not just dangling ones"),
                       filter_flag(None, 'Provide filter values (e.g. "until=<timestamp>")'),
                       Flag("force", "f", help="Do not prompt for confirmation")],
                args=no_args(), run=run_prune)


_IMAGE_COMMANDS = [HISTORY, IMPORT, INSPECT, LOAD, LS, PRUNE, RM, SAVE, TAG]
# Members defined in other groups' modules, imported only when asked for.
_IMAGE_ELSEWHERE = {"build": ("build", "BUILD"), "pull": ("registry", "PULL"),
                    "push": ("registry", "PUSH")}


def _image_member(name: str):
    for cmd in _IMAGE_COMMANDS:
        if cmd.name == name or name in cmd.aliases:
            return cmd
    where = _IMAGE_ELSEWHERE.get(name)
    if where is None:
        return None
    module = __import__(f"berth_cli.commands.{where[0]}", fromlist=[where[1]])
    return getattr(module, where[1])


IMAGE = Command("image", short="Manage images", lookup=_image_member,
                listing=lambda: sorted([*_IMAGE_COMMANDS, *map(_image_member, _IMAGE_ELSEWHERE)],
                                       key=lambda c: c.name))
