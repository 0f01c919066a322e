"""BuildService: ``docker build`` for the daemon.

A build is prepared first (:meth:`BuildService.prepare`: the context, the
Dockerfile and ``.dockerignore``, the stage graph, the tags -- every mistake
a user can make in the request fails here, before any output, as an HTTP
error), then run (:meth:`PreparedBuild.run`), which streams Docker's classic
progress messages through ``emit`` and returns the image ID.

Stages the target does not need are skipped; the others run in parallel
threads as soon as the stages they read from are done, their output shown
stage by stage. After the build, intermediate images the build registered
that nothing refers to any more (a failed build's last step, the stages
other than the target) are removed again, so no dangling image is left;
the build cache keeps what is needed to bring them back.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from berth import _native
from berth.config import Config
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.images.manifest import host_platform, parse_platform
from berth.images.reference import parse_normalized

from . import instructions as ins
from .buildargs import BuildArgs, platform_args
from .cache import BuildCache
from .checksum import FileHasher
from .context import Source, Sources
from .dockerfile import Dockerfile, Node, parse as parse_dockerfile
from .errors import BuildCancelled, BuildError
from .fsview import DirView, LayerView
from .graph import OrderedOutput, StagePlan, needed_stages, resolve_ref, stage_dependencies
from .ignore import IgnoreFileError, PatternMatcher, read_ignore
from .imageconfig import ImageState
from .layers import LayerCommitter, tree_size
from .runner import cleanup_leftovers
from .watch import TreeWatch
from .shell import Lexer, SubstitutionError
from .steps import StageExecutor, StageResult, short_id

log = logging.getLogger("berth.builder")

DEFAULT_DOCKERFILE = "Dockerfile"
MAX_DOCKERFILE = 16 << 20

#: ``pull(reference, platform, auth, progress) -> image ID``: how FROM gets an
#: image that is not local. ``progress`` takes Docker's pull JSON messages.
Puller = Callable[[str, "str | None", "dict | None", Callable[[dict], None]], str]


@dataclass
class BuildRequest:
    context_dir: str | None = None       # read in place (berth's own CLI)
    context_tar: str | None = None       # a tar file (the Engine API body)
    dockerfile: str = ""                 # path in the context (or absolute, in-place builds)
    dockerfile_content: bytes | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    platform: str = ""
    network: str = ""
    build_id: str = ""
    auth: dict[str, Any] | None = None
    allow_outside_dockerfile: bool = False


class BuildService:
    def __init__(self, config: Config, images, events=None, db=None, pull: Puller | None = None):
        self.config = config
        self.images = images
        self.events = events
        self.db = db if db is not None else images.db
        self.cache = BuildCache(self.db)
        self.hasher = FileHasher(self.db)
        self.watch = TreeWatch()
        self.tree_sums: dict = {}
        self.root = config.path("builder")
        self.run_root = os.path.join(self.root, "run")
        self.tmp_root = os.path.join(self.root, "tmp")
        self.mounts_root = os.path.join(self.root, "cache-mounts")
        for d in (self.root, self.run_root, self.tmp_root, self.mounts_root):
            os.makedirs(d, mode=0o700, exist_ok=True)
        cleanup_leftovers(self.run_root)
        for name in os.listdir(self.tmp_root):
            _remove(os.path.join(self.tmp_root, name))
        self.committer = LayerCommitter(images, images.tmp_dir)
        images.add_gc_root(self.cache.gc_roots)
        self.pull = pull
        self._lock = threading.Lock()
        self._builds: dict[str, threading.Event] = {}
        self._in_use: collections.Counter[str] = collections.Counter()
        self._mount_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)

    def close(self) -> None:
        with self._lock:
            for event in self._builds.values():
                event.set()
        self.watch.close()

    # -- builds ------------------------------------------------------------------------
    def prepare(self, request: BuildRequest) -> "PreparedBuild":
        build = PreparedBuild(self, request)
        try:
            build.load()
        except BaseException:
            build.close()
            raise
        return build

    def cancel(self, build_id: str) -> None:
        with self._lock:
            event = self._builds.get(build_id)
        if event is None:
            raise NotFound(f"no build with ID {build_id!r} is running")
        event.set()

    # -- cache maintenance ---------------------------------------------------------------
    def prune(self, all: bool = False, filters: dict[str, list[str]] | None = None,
              keep_storage: int = 0) -> dict[str, Any]:
        """``POST /build/prune``: drop cache records -- those no image is made
        of any more, or with ``all`` every one (and the cache mounts, the
        ``--link`` layers and the remembered file digests) -- within the
        ``until`` / ``id`` filters, keeping the most recently used ones up to
        ``keep_storage`` bytes; then the image store collects what nothing
        needs any more."""
        filters = filters or {}
        for key in filters:
            if key not in ("until", "unused-for", "id", "type", "description", "inuse", "shared",
                           "private"):
                raise InvalidArgument(f"invalid filter '{key}'")
        cutoff = None
        for key in ("until", "unused-for"):
            for value in filters.get(key, []):
                cutoff = time.time_ns() - _parse_duration_filter(value)
        with self._lock:
            active = bool(self._builds)
            in_use = set(self._in_use)
        entries = self.cache.entries()
        doomed = [e for e in entries if (cutoff is None or e.last_used_ns < cutoff)
                  and e.image_id not in in_use]
        if filters.get("id"):
            wanted = set(filters["id"])
            doomed = [e for e in doomed if _cache_id(e.key) in wanted]
        if not all:
            doomed = [e for e in doomed if not self._image_exists(e.image_id)]
        if keep_storage > 0:
            sizes = self.images.snapshots.sizes()
            kept, doomed = 0, sorted(doomed, key=lambda e: e.last_used_ns, reverse=True)
            while doomed:
                size = sizes.get(doomed[0].chains[-1], 0) if doomed[0].chains else 0
                if kept + size > keep_storage:
                    break
                kept += size
                doomed.pop(0)
        deleted = [_cache_id(e.key) for e in doomed]
        self.cache.delete([e.key for e in doomed])
        reclaimed = 0
        if all and cutoff is None and not filters.get("id") and keep_storage <= 0:
            self.cache.delete_link_layers([r["key"] for r in self.cache.link_layers()])
            if not active:
                mounts = self.cache.cache_mounts()
                for row in mounts:
                    reclaimed += _dir_size(row["dir"])
                    _remove(row["dir"])
                    deleted.append(_cache_id(row["id"]))
                self.cache.delete_cache_mounts([r["id"] for r in mounts])
            self.hasher.clear_persistent()
            self.tree_sums.clear()
        reclaimed += self.images.gc()
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _image_exists(self, image_id: str) -> bool:
        try:
            self.images.resolve(image_id)
            return True
        except NotFound:
            return False

    def df(self) -> list[dict[str, Any]]:
        """The ``BuildCache`` rows of ``GET /system/df``."""
        from berth.images.timefmt import format_rfc3339nano
        sizes = self.images.snapshots.sizes()
        used_by_images: set[str] = set()
        for image in self.images.list(all=True):
            used_by_images.update(self.images.layer_chain_ids(image["Id"]))
        entries = self.cache.entries()
        by_image = {e.image_id: e for e in entries}
        out = []
        for entry in entries:
            parent_entry = by_image.get(entry.parent or "")
            own = entry.chains[-1] if entry.chains and (
                parent_entry is None or parent_entry.chains != entry.chains) else None
            size = sizes.get(own, 0) if own else 0
            out.append({
                "ID": _cache_id(entry.key),
                "Parent": _cache_id(parent_entry.key) if parent_entry else "",
                "Parents": [_cache_id(parent_entry.key)] if parent_entry else None,
                "Type": entry.step_type,
                "Description": entry.description.strip(),
                "InUse": False,
                "Shared": bool(own and own in used_by_images),
                "Size": size,
                "CreatedAt": format_rfc3339nano(entry.created_ns),
                "LastUsedAt": format_rfc3339nano(entry.last_used_ns),
                "UsageCount": entry.usage_count,
            })
        for row in self.cache.cache_mounts():
            out.append({
                "ID": _cache_id(row["id"]), "Parent": "", "Parents": None,
                "Type": "exec.cachemount", "Description": f"cached mount {row['id']}",
                "InUse": False, "Shared": False, "Size": _dir_size(row["dir"]),
                "CreatedAt": format_rfc3339nano(row["created_ns"]),
                "LastUsedAt": format_rfc3339nano(row["last_used_ns"]), "UsageCount": 0,
            })
        return out


def _cache_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:25]


def _parse_duration_filter(value: str) -> int:
    """``until``: a Go duration (``24h``) or a number of seconds."""
    if value.isdigit():
        return int(value) * 1_000_000_000
    try:
        return ins.parse_duration(value, "until")
    except ValueError as e:
        raise InvalidArgument(f"invalid filter 'until={value}': {e}") from None


def _dir_size(path: str) -> int:
    try:
        return tree_size(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class PreparedBuild:
    """A build whose inputs were checked; :meth:`run` it once, then :meth:`close`."""

    def __init__(self, svc: BuildService, request: BuildRequest):
        self.svc = svc
        self.request = request
        self.temp_dirs: list[str] = []
        self.context: Sources | None = None
        self.context_root = ""
        self.persistent_context = False
        self.dockerfile_name = request.dockerfile or DEFAULT_DOCKERFILE
        self.dockerfile: Dockerfile | None = None
        self.meta: list[ins.ArgCommand] = []
        self.stages: list[ins.Stage] = []
        self.target = 0
        self.needed: list[int] = []
        self.deps: dict[int, set[int]] = {}
        self.extra_commands: dict[int, list[ins.Command]] = {}
        self.tags: list[str] = []
        self.platform: dict[str, str] = host_platform()
        self.build_args: BuildArgs | None = None
        self.total_steps = 0
        self.first_step: dict[int, int] = {}

    # -- loading ----------------------------------------------------------------------
    def load(self) -> None:
        req = self.request
        for tag in req.tags:
            try:
                ref = parse_normalized(tag)
            except InvalidArgument:
                raise InvalidArgument(f'invalid tag "{tag}": invalid reference format') from None
            if ref.digest is not None:
                raise InvalidArgument(f'invalid tag "{tag}": a tag cannot contain a digest')
            self.tags.append(str(ref.tag_name_only()))
        if req.platform:
            self.platform = self.check_platform(req.platform, "--platform")
        if req.network and req.network not in ("default", "host", "none", "bridge"):
            raise InvalidArgument(f"unsupported network mode {req.network!r} for a build "
                                  "(use default, host or none)")
        self._load_context()
        text, dockerfile_path = self._read_dockerfile()
        self.context.matcher = self._ignore_matcher(dockerfile_path)
        self.dockerfile = parse_dockerfile(text)
        self.meta, self.stages = ins.parse_stages(self.dockerfile)
        self.escape = self.dockerfile.escape
        self._plan()

    def _load_context(self) -> None:
        req = self.request
        if req.context_dir is not None:
            root = os.path.realpath(req.context_dir)
            if not os.path.isdir(root):
                raise BuildError(f'unable to prepare context: path "{req.context_dir}" not found')
            self.context_root = root
            self.persistent_context = True
        else:
            root = os.path.join(self.svc.tmp_root, "context-" + secrets.token_hex(8))
            os.mkdir(root, 0o755)
            self.temp_dirs.append(root)
            if req.context_tar is not None and os.path.getsize(req.context_tar) > 0:
                _extract_context(req.context_tar, root, self.svc.tmp_root)
            self.context_root = root
        self.context = Sources.context(self.context_root, self.svc.hasher, None,
                                       persist=self.persistent_context, watch=self.svc.watch,
                                       sums=self.svc.tree_sums)

    def _read_dockerfile(self) -> tuple[bytes, str | None]:
        req = self.request
        name = self.dockerfile_name
        if req.dockerfile_content is not None:
            data = req.dockerfile_content
            path = None
        else:
            if os.path.isabs(name) and req.allow_outside_dockerfile:
                path = name
            else:
                view = DirView(self.context_root)
                rel = name.lstrip("/")
                if rel.startswith("../") or rel == "..":
                    raise BuildError(f"forbidden path outside the build context: {name}")
                resolved = view.resolve("/" + rel)
                path = self.context_root + resolved
                if not os.path.isfile(path) and name == DEFAULT_DOCKERFILE:
                    lower = self.context_root + view.resolve("/dockerfile")
                    if os.path.isfile(lower):
                        path, self.dockerfile_name = lower, "dockerfile"
            if not os.path.isfile(path):
                raise BuildError(f"Cannot locate specified Dockerfile: {name}")
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_DOCKERFILE + 1)
            except OSError as e:
                raise BuildError(f"cannot read the Dockerfile {name}: {e.strerror}") from None
            if len(data) > MAX_DOCKERFILE:
                raise BuildError(f"the Dockerfile ({name}) is larger than {MAX_DOCKERFILE} bytes")
        if not data.strip(b"\xef\xbb\xbf"):
            raise BuildError(f"the Dockerfile ({self.dockerfile_name}) cannot be empty")
        return data, path

    def _ignore_matcher(self, dockerfile_path: str | None) -> PatternMatcher | None:
        """``<Dockerfile>.dockerignore`` beside the Dockerfile wins over the
        context's ``.dockerignore``."""
        candidates = []
        if dockerfile_path is not None:
            candidates.append((dockerfile_path + ".dockerignore",
                               os.path.basename(dockerfile_path) + ".dockerignore"))
        candidates.append((os.path.join(self.context_root, ".dockerignore"), ".dockerignore"))
        for path, label in candidates:
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_DOCKERFILE)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise IgnoreFileError(f"cannot read {label}: {e.strerror}") from None
            matcher = PatternMatcher(read_ignore(data), label)
            return matcher if matcher else None
        return None

    def check_platform(self, value: str, what: str) -> dict[str, str]:
        wanted = parse_platform(value)
        host = host_platform()
        if wanted["os"] != host["os"] or wanted["architecture"] != host["architecture"]:
            raise BuildError(f"{what}: platform {value} cannot be built on this "
                             f"{host['os']}/{host['architecture']} host (no emulation)")
        return wanted

    def _plan(self) -> None:
        req = self.request
        if req.target:
            lowered = req.target.lower()
            for stage in self.stages:
                if stage.name == lowered:
                    self.target = stage.index
                    break
            else:
                raise BuildError(f'target stage "{req.target}" could not be found')
        else:
            self.target = len(self.stages) - 1
        automatic = platform_args(self.platform, host_platform())
        self.build_args = BuildArgs(req.build_args, automatic)
        lexer = Lexer(self.escape)
        for arg in self.meta:
            for key, value in arg.args:
                try:
                    env = self.build_args.meta_env()
                    key = lexer.word(key, env)
                    if value is not None:
                        value = lexer.word(value, env)
                except SubstitutionError as e:
                    raise BuildError(f"line {arg.line}: {e.message}") from None
                self.build_args.add_meta(key, value)
        plans = []
        for stage in self.stages:
            try:
                base, values = self._from_values(stage, lexer)
                deps = stage_dependencies(stage, self.stages, base, values)
            except (ValueError, SubstitutionError, InvalidArgument) as e:
                message = getattr(e, "message", str(e))
                raise BuildError(f"stage {stage.label()} (line {stage.line}): {message}") from None
            plans.append(StagePlan(stage, deps))
            self.deps[stage.index] = deps
        self.needed = needed_stages(plans, self.target)
        if req.labels:
            extra = []
            for key in sorted(req.labels):
                node = Node(keyword="label", command="LABEL", original=f"LABEL {key}={req.labels[key]}",
                            pairs=[(key, req.labels[key], True)])
                extra.append(ins.LabelCommand(node, [(key, req.labels[key])], expand=False))
            self.extra_commands[self.target] = extra
        step = 1 + len(self.meta)
        for index in self.needed:
            self.first_step[index] = step
            step += 1 + len(self.stages[index].commands) + len(self.extra_commands.get(index, []))
        self.total_steps = step - 1

    def _from_values(self, stage: ins.Stage, lexer: Lexer) -> tuple[str, list[str]]:
        """The stage's base name and ``--from`` values, expanded as the stage
        will expand them: FROM with the global args, the others with the
        stage's ARG and ENV values declared above them."""
        build_args = self.build_args
        base = lexer.word(stage.base, build_args.meta_env())
        scope = build_args.stage()
        env: dict[str, str] = {}
        values = []

        def current() -> dict[str, str]:
            merged = dict(env)
            merged.update(scope.env_for(merged))
            return merged

        for command in stage.commands:
            if isinstance(command, ins.ArgCommand):
                for key, value in command.args:
                    key = lexer.word(key, current())
                    scope.add(key, lexer.word(value, current()) if value is not None else None)
            elif isinstance(command, ins.EnvCommand):
                for key, value in command.pairs:
                    env[lexer.word(key, current())] = lexer.word(value, current())
            elif isinstance(command, ins.CopyCommand) and command.from_:
                values.append(lexer.word(command.from_, current()))
            elif isinstance(command, ins.RunCommand):
                for raw in command.mounts:
                    mount = ins.parse_mount(lexer.word(raw, current()))
                    if mount.from_:
                        values.append(lexer.word(mount.from_, current()))
        # The pass above must not count as the stage's use of --build-arg values.
        return base, values

    # -- running ----------------------------------------------------------------------
    def run(self, emit: Callable[[dict], None], cancel: threading.Event | None = None) -> str:
        build = BuildRun(self, emit, cancel or threading.Event())
        return build.execute()

    def close(self) -> None:
        for d in self.temp_dirs:
            if not self.persistent_context:
                self.svc.hasher.forget(d)
            _remove(d)
        self.temp_dirs.clear()


def _extract_context(tar_path: str, root: str, tmp_root: str) -> None:
    """Unpack a context tar (plain, gzip, zstd, bzip2 or xz) into ``root``."""
    from berth.images import mediatypes as mt
    with open(tar_path, "rb") as f:
        kind = mt.sniff_compression(f.read(8))
    source = tar_path
    plain = None
    try:
        if kind in ("bzip2", "xz"):
            import bz2
            import lzma
            plain = os.path.join(tmp_root, "context-" + secrets.token_hex(8) + ".tar")
            opener = bz2.open if kind == "bzip2" else lzma.open
            try:
                with opener(tar_path, "rb") as fin, open(plain, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise BuildError(f"invalid build context: cannot decompress the {kind} stream: {e}") from None
            source = plain
        try:
            _native.unpack_layer(source, root)
        except _native.LayerError as e:
            raise BuildError(f"invalid build context: {e}") from None
    finally:
        if plain is not None and os.path.exists(plain):
            os.unlink(plain)


class BuildRun:
    """One execution of a prepared build."""

    def __init__(self, prepared: PreparedBuild, emit: Callable[[dict], None],
                 cancel: threading.Event):
        self.prepared = prepared
        self.svc = prepared.svc
        self.request = prepared.request
        self.emit = emit
        self.cancel = cancel
        self.context = prepared.context
        self.stages = prepared.stages
        self.escape = prepared.escape
        self.build_args = prepared.build_args
        self.platform = prepared.platform
        self.platform_string = "/".join(v for v in (self.platform["os"], self.platform["architecture"],
                                                    self.platform.get("variant", "")) if v)
        self.extra_commands = prepared.extra_commands
        self.total_steps = prepared.total_steps
        self.output = OrderedOutput(emit, [-1] + prepared.needed)
        self.created: list[str] = []
        self.hits: list[str] = []
        self.used: set[str] = set()
        self._results: dict[int, StageResult] = {}
        self._done: dict[int, threading.Event] = {i: threading.Event() for i in prepared.needed}
        self._errors: dict[int, BaseException] = {}
        self._lock = threading.Lock()
        self._images_checked: set[str] = set()
        self._pulled: dict[str, str] = {}
        self._sources: dict[str, Sources] = {}
        self.build_id = self.request.build_id or secrets.token_hex(16)

    # -- the build ------------------------------------------------------------------------
    def execute(self) -> str:
        svc = self.svc
        with svc._lock:
            svc._builds[self.build_id] = self.cancel
        try:
            return self._execute()
        finally:
            with svc._lock:
                svc._builds.pop(self.build_id, None)
                for image_id in self.used:
                    svc._in_use[image_id] -= 1
                    if svc._in_use[image_id] <= 0:
                        del svc._in_use[image_id]
            try:
                svc.hasher.flush()
            except BerthError as e:
                log.warning("cannot remember context digests: %s", e.message)
            self.svc.cache.touch(self.hits)

    def _execute(self) -> str:
        prepared = self.prepared
        for warning in prepared.dockerfile.warnings:
            self.output.write(-1, {"stream": f"[WARNING]: {warning}\n"})
        if prepared.dockerfile.warnings:
            self.output.write(-1, {"stream": "[WARNING]: Empty continuation lines will become "
                                             "errors in a future release.\n"})
        step = 1
        for arg in prepared.meta:
            self.output.write(-1, {"stream": f"Step {step}/{self.total_steps} : {arg.text}\n"})
            step += 1
        self.output.finish(-1)
        threads = []
        for index in prepared.needed:
            thread = threading.Thread(target=self._stage_thread, args=(index,),
                                      name=f"berth-build-stage-{index}", daemon=True)
            threads.append(thread)
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if self._errors:
                self.output.flush()
                raise self._first_error()
            result = self._results[prepared.target].state.image_id
            if not result:
                raise BuildError("No image was generated. Is your Dockerfile empty?")
            unused = self.build_args.unused()
            if unused:
                self.emit({"stream": f"[Warning] One or more build-args [{' '.join(unused)}] "
                                     "were not consumed\n"})
            self.emit({"aux": {"ID": result}})
            self.emit({"stream": f"Successfully built {short_id(result)}\n"})
            for tag in prepared.tags:
                ref = parse_normalized(tag)
                self.svc.images.tag(result, tag)
                self.emit({"stream": f"Successfully tagged {ref.familiar()}\n"})
            self._remove_dangling(keep=result)
            return result
        except BaseException:
            self._remove_dangling(keep=None)
            raise

    def _first_error(self) -> BaseException:
        real = {i: e for i, e in self._errors.items() if not isinstance(e, BuildCancelled)}
        pool = real or self._errors
        return pool[min(pool)]

    def _stage_thread(self, index: int) -> None:
        stage = self.stages[index]
        try:
            for dep in sorted(self.prepared.deps.get(index, ())):
                while not self._done[dep].wait(0.2):
                    if self.cancel.is_set():
                        raise BuildCancelled()
                if dep in self._errors:
                    raise BuildCancelled()
            executor = StageExecutor(self, stage, self.prepared.first_step[index])
            result = executor.execute()
            with self._lock:
                self._results[index] = result
        except BaseException as e:  # noqa: BLE001 - reported by execute()
            if not isinstance(e, BerthError):
                log.exception("build stage %s failed", stage.label())
                e = BuildError(f"internal error in stage {stage.label()}: {type(e).__name__}: {e}")
            with self._lock:
                self._errors[index] = e
            self.cancel.set()
        finally:
            self._done[index].set()
            self.output.finish(index)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise BuildCancelled()

    def stage_result(self, index: int) -> StageResult:
        event = self._done.get(index)
        if event is None:
            raise BuildError(f"stage {self.stages[index].label()} is not part of this build")
        event.wait()
        with self._lock:
            result = self._results.get(index)
        if result is None:
            raise BuildCancelled()
        return result

    # -- images ------------------------------------------------------------------------
    def image_exists(self, image_id: str) -> bool:
        try:
            self.svc.images.resolve(image_id)
            return True
        except NotFound:
            return False

    def use_image(self, image_id: str) -> None:
        if not image_id or image_id in self.used:
            return
        with self.svc._lock:
            self.used.add(image_id)
            self.svc._in_use[image_id] += 1

    def lowerdirs(self, state: ImageState) -> list[str]:
        chains = state.chains
        if not chains:
            return []
        try:
            return self.svc.images.snapshots.lowerdirs(chains)
        except NotFound as e:
            raise BuildError(f"the layers of image {short_id(state.image_id)} are missing: "
                             f"{e.message}") from None

    def base_image(self, name: str, stage: int) -> str:
        """The image a FROM (or ``--from``) names: local, else pulled (the
        pull's progress shows in ``stage``'s output)."""
        if name in self._pulled:
            return self._pulled[name]
        images = self.svc.images
        if self.request.pull and self.svc.pull is not None:
            image_id = self._pull(name, stage)
        else:
            try:
                image_id = images.resolve(name)
            except NotFound:
                if self.svc.pull is None:
                    raise BuildError(f"pull access denied for {name}: the image is not found "
                                     "locally and pulling is not available in this daemon") from None
                image_id = self._pull(name, stage)
            except InvalidArgument as e:
                raise BuildError(f"invalid base image {name!r}: {e.message}") from None
        self._pulled[name] = image_id
        return image_id

    def _pull(self, name: str, stage: int) -> str:
        def progress(message: dict) -> None:
            self.output.write(stage, message)
        platform = "/".join(v for v in (self.platform["os"], self.platform["architecture"]) if v)
        try:
            return self.svc.pull(name, platform, self.request.auth, progress)
        except BerthError as e:
            raise BuildError(f"failed to pull {name}: {e.message}") from None

    def sources_from(self, value: str, current: int) -> Sources:
        """The files of ``--from=<stage|index|image>``."""
        ref = resolve_ref(value, self.stages, current, from_line=False)
        if ref.stage is not None:
            state = self.stage_result(ref.stage).state
            key = f"stage:{ref.stage}"
            what = f"stage {self.stages[ref.stage].label()}"
        else:
            image_id = self.base_image(ref.image, current)
            self.use_image(image_id)
            state = ImageState.from_config(image_id, self.svc.images.image_config(image_id).raw,
                                           self.svc.images.image_layers(image_id))
            key = f"image:{image_id}"
            what = f"image {ref.image}"
        with self._lock:
            sources = self._sources.get(key)
        if sources is None:
            sources = Sources.image(self.lowerdirs(state), self.svc.hasher, what)
            with self._lock:
                self._sources[key] = sources
        return sources

    def new_layer_dir(self) -> str:
        path = os.path.join(self.svc.tmp_root, "layer-" + secrets.token_hex(12))
        os.mkdir(path, 0o755)
        return path

    def temp_path(self, suffix: str = "") -> str:
        """A name for a temporary file of this build (not created)."""
        return os.path.join(self.svc.tmp_root, "file-" + secrets.token_hex(12) + suffix)

    def mount_source(self, sources: Sources, source: Source, readonly: bool) -> str:
        """A host path to bind for ``RUN --mount=type=bind``: the file or
        directory itself when it can be shown as is, else a private copy
        (ignored files left out; writable mounts never touch the source)."""
        entry = source.entry
        needs_copy = not readonly
        if source.is_dir:
            if isinstance(sources.view, LayerView):
                needs_copy = True  # spread over several layers
            elif sources.matcher is not None:
                needs_copy = True
        if not needs_copy:
            return entry.host
        from .copier import LayerWriter
        copy_root = self.new_layer_dir()
        writer = LayerWriter(copy_root, None)
        if source.is_dir:
            writer.copy_tree(sources, source, "/", identity=None, chmod=None, keep_owner=True)
            os.chmod(copy_root, stat.S_IMODE(entry.st.st_mode))
            return copy_root
        name = "/" + (os.path.basename(source.name) or "file")
        writer.copy_entry(entry.host, entry.st, name, identity=None, chmod=None,
                          keep_owner=True, links={})
        return copy_root + name

    def cache_mount_dir(self, mount: ins.Mount, stage: int) -> tuple[str, threading.Lock | None]:
        mount_id = mount.id or mount.target
        cache = self.svc.cache
        directory = cache.cache_mount(mount_id)
        if directory is None or not os.path.isdir(directory):
            directory = os.path.join(self.svc.mounts_root,
                                     hashlib.sha256(mount_id.encode()).hexdigest()[:32])
            if not os.path.isdir(directory):
                tmp = directory + ".tmp-" + secrets.token_hex(4)
                if mount.from_:
                    sources = self.sources_from(mount.from_, stage)
                    selected = sources.select(mount.source or ".", "RUN --mount")[0]
                    from .copier import LayerWriter
                    os.mkdir(tmp, 0o755)
                    LayerWriter(tmp, None).copy_tree(sources, selected, "/", identity=None,
                                                     chmod=None, keep_owner=True)
                else:
                    os.mkdir(tmp)
                os.chown(tmp, mount.uid or 0, mount.gid or 0)
                os.chmod(tmp, mount.mode if mount.mode is not None else 0o755)
                try:
                    os.rename(tmp, directory)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)  # another build made it first
        cache.put_cache_mount(mount_id, directory)
        if mount.sharing == "locked":
            return directory, self.svc._mount_locks[mount_id]
        if mount.sharing == "private":
            lock = self.svc._mount_locks[mount_id]
            if lock.locked():
                private = self.new_layer_dir()
                return private, None
            return directory, lock
        return directory, None

    # -- cleanup ---------------------------------------------------------------------
    def _remove_dangling(self, keep: str | None) -> None:
        """Remove images this build registered that nothing refers to (no tag,
        no child, no container, not another build's parent)."""
        images = self.svc.images
        for image_id in reversed(self.created):
            if image_id == keep:
                continue
            with self.svc._lock:
                busy = self.svc._in_use.get(image_id, 0) > (1 if image_id in self.used else 0)
            if busy:
                continue
            try:
                info = images.inspect(image_id)
                if info.get("RepoTags") or info.get("RepoDigests"):
                    continue
                images.remove(image_id, force=False, noprune=True)
            except (NotFound, Conflict):
                continue
            except BerthError as e:
                log.warning("build cleanup: cannot remove image %s: %s", image_id, e.message)
