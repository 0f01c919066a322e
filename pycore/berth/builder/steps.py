"""Running the instructions of one stage.

Each instruction is a step: its cache key (the parent image, the
instruction after variable expansion, the build args it sees, and for
COPY/ADD/RUN --mount=bind the checksum of exactly the files it reads) is
looked up first; on a miss the step runs and commits an image, as Docker's
classic builder does, and the key is recorded. Output follows Docker's
classic format (``Step 2/5 : RUN ...``, `` ---> Using cache``, `` ---> <id>``).
"""

from __future__ import annotations

import bz2
import contextlib
import email.utils
import hashlib
import json
import lzma
import os
import posixpath
import re
import secrets
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Callable

from berth import _native
from berth.content import digest_bytes
from berth.errors import BerthError, InvalidArgument, NotFound
from berth.images import LayerBlob
from berth.images import mediatypes as mt
from berth.runtime import signal_number

from . import instructions as ins
from .context import normalize_dest
from .copier import ROOT, LayerWriter, parse_chmod, parse_chown
from .dockerfile import parse as parse_dockerfile
from .errors import BuildCancelled, BuildError, RunFailed
from .fsview import LayerView
from .graph import resolve_ref
from .ignore import PatternMatcher, go_clean
from .imageconfig import ImageState, go_list, go_quote_list, nop, nop_single
from .instructions import go_duration
from .runner import RunSpec, run_container
from .shell import Lexer, SubstitutionError

if TYPE_CHECKING:
    from .service import BuildRun

_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_SHEBANG = "#!"


def _key(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if not isinstance(part, (str, bytes)):
            part = json.dumps(part, sort_keys=True, separators=(",", ":"))
        if isinstance(part, str):
            part = part.encode("utf-8", "surrogateescape")
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return "sha256:" + h.hexdigest()


def short_id(image_id: str) -> str:
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


class StageResult:
    def __init__(self, state: ImageState):
        self.state = state


class StageExecutor:
    """Runs one stage; ``run`` ties it into the whole build (output, cache,
    other stages' results, cancellation)."""

    def __init__(self, run: "BuildRun", stage: ins.Stage, first_step: int):
        self.run = run
        self.svc = run.svc
        self.stage = stage
        self.step = first_step
        self.lexer = Lexer(run.escape)
        self.args = run.build_args.stage()
        self.state = ImageState()
        self.cmd_set = False

    # -- output ------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.run.output.write(self.stage.index, {"stream": text})

    def print_step(self, text: str) -> None:
        self.say(f"Step {self.step}/{self.run.total_steps} : {text}\n")
        self.step += 1

    def print_image(self) -> None:
        self.say(f" ---> {short_id(self.state.image_id)}\n")

    # -- variables ---------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """What ``$NAME`` means for the next instruction: ENV, then ARGs."""
        env = self.state.env
        env.update(self.args.env_for(env))
        return env

    def expand(self, text: str, env: dict[str, str] | None = None) -> str:
        used: set[str] = set()
        try:
            value = self.lexer.word(text, self.env() if env is None else env, used)
        except SubstitutionError as e:
            raise BuildError(e.message) from None
        self.args.referenced.update(used)
        return value

    def expand_words(self, text: str) -> list[str]:
        used: set[str] = set()
        try:
            words = self.lexer.words(text, self.env(), used)
        except SubstitutionError as e:
            raise BuildError(e.message) from None
        self.args.referenced.update(used)
        return words

    # -- the stage ---------------------------------------------------------------------
    def execute(self) -> StageResult:
        run = self.run
        stage = self.stage
        self.print_step(stage.text)
        with _at_line(stage.line):
            self._from(stage)
        self.print_image()
        triggers = list(self.state.config.get("OnBuild") or [])
        if triggers:
            self.state.config["OnBuild"] = None
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            with _at_line(stage.line):
                for trigger in triggers:
                    self._trigger(trigger)
        for command in stage.commands + run.extra_commands.get(stage.index, []):
            run.check_cancelled()
            self.print_step(command.text)
            with _at_line(command.line):
                self.dispatch(command)
            self.print_image()
        return StageResult(self.state)

    def _trigger(self, expression: str) -> None:
        try:
            dockerfile = parse_dockerfile(expression)
            if len(dockerfile.nodes) != 1:
                raise BuildError("onbuild trigger should be a single expression")
            command = ins.parse_command(dockerfile.nodes[0])
        except (ValueError, InvalidArgument) as e:
            raise BuildError(f"invalid ONBUILD trigger {expression!r} in the base image: {e}") from None
        self.dispatch(command)

    def _from(self, stage: ins.Stage) -> None:
        run = self.run
        try:
            name = self.lexer.word(stage.base, run.build_args.meta_env())
        except SubstitutionError as e:
            raise BuildError(e.message) from None
        if not name:
            raise BuildError(f"base name ({stage.base}) should not be blank")
        if stage.platform:
            try:
                platform = self.lexer.word(stage.platform, run.build_args.meta_env())
            except SubstitutionError as e:
                raise BuildError(e.message) from None
            run.check_platform(platform, f"FROM --platform={platform}")
        ref = resolve_ref(name, run.stages, stage.index, from_line=True)
        if ref.stage is not None:
            self.state = run.stage_result(ref.stage).state.copy()
        elif name.lower() == "scratch":
            self.state = ImageState(architecture=run.platform["architecture"],
                                    os=run.platform["os"], variant=run.platform.get("variant", ""))
        else:
            image_id = run.base_image(name, stage.index)
            raw = self.svc.images.image_config(image_id).raw
            self.state = ImageState.from_config(image_id, raw, self.svc.images.image_layers(image_id))
            run.use_image(image_id)
        self.state.config["OpenStdin"] = False
        self.state.config["StdinOnce"] = False
        self.state.set_default_path()

    # -- commits and the cache ---------------------------------------------------------
    def cached(self, key: str) -> bool:
        """Use the cache for ``key`` if it has it; prints `` ---> Using cache``."""
        if self.run.request.no_cache:
            return False
        entry = self.svc.cache.get(key)
        if entry is None or entry.parent != (self.state.image_id or None):
            return False
        try:
            if not self.run.image_exists(entry.image_id):
                self.svc.images.register_image(
                    entry.config, entry.layers, config_media_type=mt.DOCKER_CONFIG,
                    parent=self.state.image_id or None)
                self.run.created.append(entry.image_id)
        except (NotFound, InvalidArgument):
            # Its layers are gone (pruned by hand): build the step again.
            return False
        author = self.state.author
        self.state = ImageState.from_config(entry.image_id, json.loads(entry.config), entry.layers)
        self.state.author = self.state.author or author
        self.run.use_image(entry.image_id)
        self.run.hits.append(key)
        self.say(" ---> Using cache\n")
        return True

    def commit(self, key: str, created_by: str, layer: LayerBlob | None, description: str,
               step_type: str = "regular", lease=None) -> None:
        created = time.time_ns()
        config, layers = self.state.child_config(created_by, created, layer)
        image_id = digest_bytes(config)
        parent = self.state.image_id or None
        existed = self.run.image_exists(image_id)
        self.svc.images.register_image(config, layers, config_media_type=mt.DOCKER_CONFIG,
                                       parent=parent)
        if not existed:
            self.run.created.append(image_id)
        self.svc.cache.put(key, image_id, parent, config, layers, description, step_type)
        if lease is not None:
            lease.release()
        author = self.state.author
        self.state = ImageState.from_config(image_id, json.loads(config), layers)
        self.state.author = author
        self.run.use_image(image_id)

    def metadata_step(self, message: str, single: bool = False) -> None:
        """A step that only changes the config (the change is already applied)."""
        shell = self.state.shell
        created_by = nop_single(shell, message) if single else nop(shell, message)
        key = _key("meta", self.state.image_id, created_by, self.state.config, self.state.author,
                   self.run.platform_string)
        if self.cached(key):
            return
        self.commit(key, created_by, None, message)

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self, command: ins.Command) -> None:
        handler = getattr(self, "_" + type(command).__name__, None)
        if handler is None:
            raise BuildError(f"unsupported instruction {command.name}")
        handler(command)

    def _EnvCommand(self, c: ins.EnvCommand) -> None:
        env = list(self.state.config.get("Env") or [])
        parts = []
        # All pairs see the values from before the instruction, as in Docker:
        # ENV abc=bye def=$abc gives def the old abc.
        before = self.env()
        for key, value in c.pairs:
            key, value = self.expand(key, before), self.expand(value, before)
            pair = f"{key}={value}"
            parts.append(pair)
            for i, existing in enumerate(env):
                if existing.partition("=")[0] == key:
                    env[i] = pair
                    break
            else:
                env.append(pair)
            self.state.config["Env"] = env
        self.metadata_step("ENV " + " ".join(parts))

    def _LabelCommand(self, c: ins.LabelCommand) -> None:
        labels = dict(self.state.config.get("Labels") or {})
        parts = []
        for key, value in c.pairs:
            if c.expand:
                key, value = self.expand(key), self.expand(value)
            labels[key] = value
            parts.append(f"{key}={value}")
        self.state.config["Labels"] = labels
        self.metadata_step("LABEL " + " ".join(parts))

    def _MaintainerCommand(self, c: ins.MaintainerCommand) -> None:
        self.state.author = c.maintainer
        self.metadata_step("MAINTAINER " + c.maintainer)

    def _ArgCommand(self, c: ins.ArgCommand) -> None:
        parts = []
        before = self.env()
        for key, value in c.args:
            key = self.expand(key, before)
            if value is not None:
                value = self.expand(value, before)
            self.args.add(key, value)
            parts.append(key if value is None else f"{key}={value}")
        self.metadata_step("ARG " + " ".join(parts))

    def _UserCommand(self, c: ins.UserCommand) -> None:
        user = self.expand(c.user)
        self.state.config["User"] = user
        self.metadata_step(f"USER {user}")

    def _StopSignalCommand(self, c: ins.StopSignalCommand) -> None:
        value = self.expand(c.signal)
        try:
            signal_number(value)
        except InvalidArgument:
            raise BuildError(f"Invalid signal: {value}") from None
        self.state.config["StopSignal"] = value
        self.metadata_step(f"STOPSIGNAL {value}")

    def _VolumeCommand(self, c: ins.VolumeCommand) -> None:
        volumes = dict(self.state.config.get("Volumes") or {})
        expanded = []
        for raw in c.volumes:
            value = self.expand(raw)
            if not value:
                raise BuildError("VOLUME specified can not be an empty string")
            volumes[value] = {}
            expanded.append(value)
        self.state.config["Volumes"] = volumes
        self.metadata_step("VOLUME " + go_list(expanded))

    def _ExposeCommand(self, c: ins.ExposeCommand) -> None:
        ports = []
        for raw in c.ports:
            ports.extend(self.expand_words(raw))
        exposed = dict(self.state.config.get("ExposedPorts") or {})
        for spec in ports:
            for port in _parse_port_spec(spec):
                exposed[port] = {}
        self.state.config["ExposedPorts"] = exposed
        self.metadata_step("EXPOSE " + " ".join(ports))

    def _ShellCommand(self, c: ins.ShellCommand) -> None:
        self.state.config["Shell"] = list(c.shell)
        self.metadata_step("SHELL " + go_list(c.shell))

    def _OnbuildCommand(self, c: ins.OnbuildCommand) -> None:
        self.state.config["OnBuild"] = list(self.state.config.get("OnBuild") or []) + [c.expression]
        self.metadata_step("ONBUILD " + c.expression)

    def _HealthcheckCommand(self, c: ins.HealthcheckCommand) -> None:
        previous = self.state.config.get("Healthcheck")
        if previous and (previous.get("Test") or [""])[0] != "NONE":
            self.say(f"Note: overriding previous HEALTHCHECK: {go_list(previous.get('Test'))}\n")
        self.state.config["Healthcheck"] = c.config()
        text = (f"&{{Test:{go_list(c.test)} Interval:{go_duration(c.interval)} "
                f"Timeout:{go_duration(c.timeout)} StartPeriod:{go_duration(c.start_period)} "
                f"StartInterval:{go_duration(c.start_interval)} Retries:{c.retries}}}")
        self.metadata_step("HEALTHCHECK " + text)

    def _cmd_line(self, c: ins.ShellDependent) -> list[str] | None:
        if c.cmd_line is None:
            return None
        if c.prepend_shell and c.cmd_line:
            return self.state.shell + list(c.cmd_line)
        return list(c.cmd_line)

    def _CmdCommand(self, c: ins.CmdCommand) -> None:
        cmd = self._cmd_line(c)
        self.state.config["Cmd"] = cmd
        self.state.config.pop("ArgsEscaped", None)
        self.metadata_step("CMD " + go_quote_list(cmd))
        if c.cmd_line:
            self.cmd_set = True

    def _EntrypointCommand(self, c: ins.EntrypointCommand) -> None:
        entrypoint = self._cmd_line(c)
        self.state.config["Entrypoint"] = entrypoint or None
        self.state.config.pop("ArgsEscaped", None)
        if not self.cmd_set:
            # An ENTRYPOINT resets a CMD inherited from the base image.
            self.state.config["Cmd"] = None
        self.metadata_step("ENTRYPOINT " + go_quote_list(entrypoint))

    # -- WORKDIR ------------------------------------------------------------------------
    def _WorkdirCommand(self, c: ins.WorkdirCommand) -> None:
        requested = self.expand(c.path)
        if not requested:
            raise BuildError("cannot normalize nothing")
        current = self.state.config.get("WorkingDir") or ""
        if requested.startswith("/"):
            workdir = go_clean(requested)
        else:
            workdir = go_clean(posixpath.join("/", current, requested))
        self.state.config["WorkingDir"] = workdir
        message = "WORKDIR " + workdir
        created_by = nop_single(self.state.shell, message)
        key = _key("workdir", self.state.image_id, created_by, self.state.config,
                   self.state.author, self.run.platform_string)
        if self.cached(key):
            return
        lowerdirs = self.run.lowerdirs(self.state)
        layer_dir = self.run.new_layer_dir()
        lease = self.svc.images.lease()
        try:
            writer = LayerWriter(layer_dir, lowerdirs)
            target = writer.resolve(workdir)
            if not writer.exists_as_dir(target):
                writer.ensure_dir(target, ROOT)
            writer.finish()
            layer = self.svc.committer.commit(layer_dir, self.state.top_chain, lease)
            self.commit(key, created_by, layer, message, lease=lease)
        except BaseException:
            lease.release()
            shutil.rmtree(layer_dir, ignore_errors=True)
            raise

    # -- COPY and ADD ------------------------------------------------------------------------
    def _CopyCommand(self, c: ins.CopyCommand) -> None:
        self._copy(c, "COPY")

    def _AddCommand(self, c: ins.AddCommand) -> None:
        self._copy(c, "ADD")

    def _copy(self, c: ins.SourcesAndDest, what: str) -> None:
        run = self.run
        chown = self.expand(c.chown) if c.chown else ""
        chmod_text = self.expand(c.chmod) if c.chmod else ""
        chmod = parse_chmod(chmod_text)
        dest_raw = self.expand(c.dest)
        dest = normalize_dest(self.state.config.get("WorkingDir") or "", dest_raw)
        excludes = None
        if c.excludes:
            excludes = PatternMatcher([self.expand(e) for e in c.excludes], "--exclude")
        from_ = self.expand(c.from_) if isinstance(c, ins.CopyCommand) and c.from_ else ""
        sources = run.context
        keep_owner = False
        if from_:
            sources = run.sources_from(from_, self.stage.index)
            keep_owner = True
        downloads: list[tuple[str, str, int | None, str]] = []  # (url, temp file, mtime, name)
        items: list[tuple[Any, str]] = []   # (Source | heredoc | download, checksum)
        try:
            for raw in c.sources:
                src = self.expand(raw)
                if _is_url(src):
                    if what != "ADD":
                        raise BuildError(f"{what} failed: source can't be a URL for COPY")
                    checksum = self.expand(c.checksum) if isinstance(c, ins.AddCommand) else ""
                    path, mtime, name, digest = self._download(src, checksum)
                    downloads.append((src, path, mtime, name))
                    items.append((("url", src, path, mtime, name), "url:" + digest))
                    continue
                for source in sources.select(src, what, excludes):
                    items.append((source, sources.checksum(source, excludes)))
            for doc in c.contents:
                text = doc.text()
                if doc.expand:
                    text = Lexer(run.escape, process_quotes=False).word(text, self.env())
                data = text.encode()
                items.append((("heredoc", doc.name, data), "heredoc:" + hashlib.sha256(data).hexdigest()))
            if not items:
                raise BuildError(f"{what} failed: no source files were specified")
            if len(items) > 1 and not dest.endswith("/"):
                raise BuildError(f"When using {what} with more than one source file, the "
                                 "destination must be a directory and end with a /")
            checksums = [h for _, h in items]
            src_hash = checksums[0] if len(checksums) == 1 else \
                "multi:" + hashlib.sha256(",".join(checksums).encode()).hexdigest()
            chown_comment = f"--chown={chown} " if chown else ""
            message = f"{what} {chown_comment}{src_hash} in {dest} "
            created_by = nop_single(self.state.shell, message)
            options = {"chmod": chmod, "link": c.link, "from": bool(from_), "chown": chown,
                       "excludes": c.excludes, "unpack": getattr(c, "unpack", None)}
            key = _key("copy", self.state.image_id, created_by, options, self.state.config,
                       self.state.author, run.platform_string)
            if self.cached(key):
                return
            self._copy_commit(c, what, key, created_by, message, items, sources, dest, chown,
                              chmod, keep_owner, excludes, options)
        finally:
            for _, path, _, _ in downloads:
                if os.path.exists(path):
                    os.unlink(path)

    def _copy_commit(self, c, what, key, created_by, message, items, sources, dest, chown,
                     chmod, keep_owner, excludes, options) -> None:
        run = self.run
        lowerdirs = run.lowerdirs(self.state)
        parent_view = LayerView(lowerdirs) if lowerdirs else None
        identity = parse_chown(chown, parent_view) if chown else None
        link_key = _key("link", created_by, options) if c.link else ""
        if c.link and not run.request.no_cache:
            layer = self.svc.cache.link_layer(link_key)
            if layer is not None and self.svc.images.content.exists(layer.digest):
                # --link: the same files on another parent; the layer is reused as it is.
                self.commit(key, created_by, layer, message, step_type="source.local")
                return
        layer_dir = run.new_layer_dir()
        lease = self.svc.images.lease()
        unpacked = False  # an extracted archive: its size is counted by a walk
        try:
            writer = LayerWriter(layer_dir, None if c.link else lowerdirs)

            def unpack_archive(source) -> bool:
                nonlocal unpacked
                done = self._maybe_unpack(writer, source, dest)
                unpacked = unpacked or done
                return done

            for item, _ in items:
                run.check_cancelled()
                if isinstance(item, tuple) and item[0] == "heredoc":
                    target = dest if not dest.endswith("/") else posixpath.join(dest, item[1])
                    writer.write_file(target, item[2], chmod if chmod is not None else 0o644,
                                      identity)
                elif isinstance(item, tuple) and item[0] == "url":
                    _, url, path, mtime, name = item
                    if dest.endswith("/") or writer.exists_as_dir(writer.resolve(dest)):
                        if not name:
                            raise BuildError(f"cannot determine filename for source {url}")
                        target = posixpath.join(writer.resolve(dest), name)
                    else:
                        target = dest
                    writer.install_file(target, path, chmod if chmod is not None else 0o600,
                                        identity, mtime)
                else:
                    unpack = unpack_archive if what == "ADD" and getattr(
                        c, "unpack", None) is not False else None
                    writer.copy_sources(sources, [item], dest, identity=identity, chmod=chmod,
                                        keep_owner=keep_owner and identity is None,
                                        excludes=excludes, unpack=unpack)
            writer.finish()
            layer = self.svc.committer.commit(layer_dir, self.state.top_chain, lease,
                                              size=None if unpacked else writer.bytes_written)
            if layer is not None and c.link:
                self.svc.cache.put_link_layer(link_key, layer)
            self.commit(key, created_by, layer, message, step_type="source.local", lease=lease)
        except BaseException:
            lease.release()
            shutil.rmtree(layer_dir, ignore_errors=True)
            raise

    def _maybe_unpack(self, writer: LayerWriter, source, dest: str) -> bool:
        """ADD of a local tar archive: extract it at ``dest`` (a directory)."""
        kind = _archive_kind(source.entry.host)
        if kind is None:
            return False
        target = writer.resolve(dest.rstrip("/") or "/")
        writer.ensure_dir(target, ROOT)
        host = writer.host(target)
        path = source.entry.host
        tmp = None
        try:
            if kind in ("bzip2", "xz"):
                tmp = self.run.temp_path(".tar")
                opener = bz2.open if kind == "bzip2" else lzma.open
                with opener(path, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                path = tmp
            _native.unpack_layer(path, host)
        except _native.LayerError as e:
            raise BuildError(f"ADD failed: cannot extract {source.name}: {e}") from None
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        return True

    def _download(self, url: str, checksum: str) -> tuple[str, int | None, str, str]:
        """Fetch ``url`` into a temp file: (path, mtime ns, file name, sha256 digest)."""
        self.say(f"Downloading {url}\n")
        path = self.run.temp_path(".download")
        h = _native.Sha256()
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "berth-builder"})
            with urllib.request.urlopen(request, timeout=60) as resp, open(path, "wb") as out:
                while True:
                    self.run.check_cancelled()
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                headers = resp.headers
        except urllib.error.HTTPError as e:
            _unlink(path)
            raise BuildError(f"ADD failed: cannot download {url}: {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            _unlink(path)
            reason = getattr(e, "reason", None) or e
            raise BuildError(f"ADD failed: cannot download {url}: {reason}") from None
        digest = "sha256:" + h.hexdigest()
        if checksum:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
                _unlink(path)
                raise BuildError(f"ADD failed: invalid --checksum {checksum!r}: expected sha256:<64 hex digits>")
            if checksum != digest:
                _unlink(path)
                raise BuildError(f"ADD failed: digest mismatch for {url}: expected {checksum}, got {digest}")
        mtime = None
        if headers.get("Last-Modified"):
            try:
                mtime = int(email.utils.parsedate_to_datetime(headers["Last-Modified"]).timestamp()) * 1_000_000_000
            except (TypeError, ValueError):
                mtime = None
        name = ""
        url_path = urllib.parse.urlparse(url).path
        if url_path and not url_path.endswith("/"):
            name = posixpath.basename(url_path)
        if not name:
            disposition = headers.get("Content-Disposition") or ""
            m = re.search(r'filename="?([^";]+)"?', disposition)
            if m and not m.group(1).endswith("/"):
                name = posixpath.basename(m.group(1))
        return path, mtime, name, digest

    # -- RUN ------------------------------------------------------------------------------
    def _RunCommand(self, c: ins.RunCommand) -> None:
        run = self.run
        argv = self._run_argv(c)
        env = self.state.env
        args_env = self.args.env_for(env)
        history_args = self.args.for_history(env)
        save_cmd = ([f"|{len(history_args)}"] + history_args + argv) if history_args else argv
        network = c.network or run.request.network or "default"
        mounts, mount_keys, locks = self._mounts(c)
        files_key = [(f.name, f.content) for f in c.files]
        created_by = " ".join(save_cmd)
        key = _key("run", self.state.image_id, save_cmd, self.state.config, self.state.author,
                   network, c.security, mount_keys, files_key, run.platform_string)
        if self.cached(key):
            return
        lowerdirs = run.lowerdirs(self.state)
        user = self.state.config.get("User") or ""
        run_env = list(self.state.config.get("Env") or []) + [f"{k}={v}" for k, v in args_env.items()]
        spec = RunSpec(argv=argv, env=run_env, cwd=self.state.config.get("WorkingDir") or "/",
                       user=user, lowerdirs=lowerdirs,
                       network="none" if network == "none" else "host",
                       privileged=c.security == "insecure", mounts=mounts)
        container = secrets.token_hex(6)
        self.say(f" ---> Running in {container}\n")
        lease = self.svc.images.lease()
        upper = None
        try:
            for lock in locks:
                lock.acquire()
            try:
                result = run_container(self.svc.run_root, spec, self.say, run.cancel)
            finally:
                for lock in reversed(locks):
                    lock.release()
            upper = result.upper
            run.check_cancelled()
            if result.start_error:
                raise RunFailedToStart(argv, result.exit_code, result.start_error)
            if result.exit_code != 0:
                raise RunFailed(argv, result.exit_code)
            layer = self.svc.committer.commit(upper, self.state.top_chain, lease)
            upper = None
            self.commit(key, created_by, layer, created_by, lease=lease)
            self.say(f" ---> Removed intermediate container {container}\n")
        except BaseException:
            lease.release()
            if upper is not None:
                shutil.rmtree(upper, ignore_errors=True)
            raise

    def _run_argv(self, c: ins.RunCommand) -> list[str]:
        cmd = list(c.cmd_line or [])
        if c.files and c.prepend_shell:
            from .dockerfile import parse_heredoc
            doc = parse_heredoc(cmd[0]) if len(cmd) == 1 else None
            if doc is not None and len(c.files) == 1:
                text = c.files[0].text()
                if text.startswith(_SHEBANG):
                    # A script with its own interpreter: run it from a file.
                    return ["/bin/sh", "-c", _script_runner(text)]
                return self.state.shell + [text]
            source = cmd[0] if cmd else ""
            for f in c.files:
                source += "\n" + f.content + f.name
            return self.state.shell + [source]
        if c.prepend_shell:
            return self.state.shell + cmd
        return cmd

    def _mounts(self, c: ins.RunCommand) -> tuple[list[dict], list[Any], list[threading.Lock]]:
        run = self.run
        specs, keys, locks = [], [], []
        workdir = self.state.config.get("WorkingDir") or "/"
        for raw in c.mounts:
            try:
                m = ins.parse_mount(self.expand(raw))
            except ValueError as e:
                raise BuildError(str(e)) from None
            target = m.target if m.target.startswith("/") else posixpath.join(workdir, m.target)
            target = go_clean(target)
            if m.type == "tmpfs":
                options = ["nosuid", "nodev"] + ([f"size={m.size}"] if m.size else [])
                specs.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                              "options": options})
                keys.append(m.key())
                continue
            if m.type == "cache":
                directory, lock = run.cache_mount_dir(m, self.stage.index)
                if lock is not None:
                    locks.append(lock)
                specs.append({"destination": target, "type": "bind", "source": directory,
                              "options": ["rbind", "rw"]})
                keys.append(m.key())
                continue
            # bind: a file or directory of the context, a stage or an image
            readonly = m.readonly is not False
            sources = run.sources_from(m.from_, self.stage.index) if m.from_ else run.context
            selected = sources.select(m.source or ".", "RUN --mount")
            source = selected[0]
            checksum = sources.checksum(source)
            host = run.mount_source(sources, source, readonly)
            specs.append({"destination": target, "type": "bind", "source": host,
                          "options": ["rbind", "ro" if readonly else "rw"]})
            keys.append([m.key(), checksum])
        return specs, keys, locks


@contextlib.contextmanager
def _at_line(line: int):
    """Errors of a step say which Dockerfile line it is (Docker's message first)."""
    try:
        yield
    except BuildCancelled:
        raise
    except BerthError as e:
        if not line or isinstance(e, BuildError) and getattr(e, "located", False):
            raise
        error = e if isinstance(e, BuildError) else BuildError(e.message)
        error.message = f"{e.message} (Dockerfile line {line})"
        error.args = (error.message,)
        error.located = True
        raise error from None


class RunFailedToStart(RunFailed):
    def __init__(self, command: list[str], exit_code: int, message: str):
        BuildError.__init__(self, f"The command '{' '.join(command)}' could not be run: {message}")
        self.code = exit_code


def _script_runner(text: str) -> str:
    """Run a heredoc that starts with ``#!`` through its interpreter."""
    quoted = text.replace("'", "'\\''")
    return (f"f=$(mktemp) && printf '%s' '{quoted}' > \"$f\" && chmod +x \"$f\" && "
            f"\"$f\"; s=$?; rm -f \"$f\"; exit $s")


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _archive_kind(path: str) -> str | None:
    """The compression of a tar archive at ``path``, or None if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    kind = mt.sniff_compression(head)
    try:
        if kind == "gzip":
            import gzip
            with gzip.open(path, "rb") as f:
                head = f.read(512)
        elif kind == "bzip2":
            with bz2.open(path, "rb") as f:
                head = f.read(512)
        elif kind == "xz":
            with lzma.open(path, "rb") as f:
                head = f.read(512)
        elif kind == "zstd":
            import zstandard
            with open(path, "rb") as raw:
                head = zstandard.ZstdDecompressor().stream_reader(raw).read(512)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - a decompressor's own error type: not an archive
        return None
    if len(head) < 512 or not _tar_header_ok(head):
        return None
    return kind


def _tar_header_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return stored == computed


def _parse_port_spec(spec: str) -> list[str]:
    """EXPOSE ``80``, ``80/udp``, ``8000-8002/tcp`` -> ``["80/tcp", ...]``."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if ":" in port:
        port = port.rsplit(":", 1)[1]
    if not port:
        raise BuildError(f"no port specified: {spec}<empty>")
    if proto not in ("tcp", "udp", "sctp"):
        raise BuildError(f"invalid proto: {proto}")
    m = _PORT_RE.match(port)
    if not m:
        raise BuildError(f"invalid containerPort: {port}")
    start = int(m.group(1))
    end = int(m.group(2) or start)
    if not 0 < start <= 65535 or not 0 < end <= 65535 or end < start:
        raise BuildError(f"invalid containerPort: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


Emit = Callable[[dict], None]
