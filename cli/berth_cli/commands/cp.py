"""`berth cp`: files between a container and the local filesystem, with docker's path
rules (the archive API: HEAD/GET/PUT /containers/{id}/archive).

SRC_PATH a file: copied to DEST_PATH, or into it when it is a directory; a missing
DEST_PATH ending in "/" is an error. SRC_PATH a directory: DEST_PATH is created with
its content when missing, the directory is copied into DEST_PATH when that exists
("dir/." copies only its content); a directory never replaces a file. "-" streams
a tar archive from stdin or to stdout. Local extraction never leaves the
destination: every entry's parent is resolved and must stay inside it.
"""

from __future__ import annotations

import os
import stat as statmod

from ..args import Command, Flag, exact
from ..errors import APIError, CLIError
from ..formatting import human_size

# Go's os.FileMode type bits, as the X-Docker-Container-Path-Stat header carries them.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_IRREGULAR = 1 << 31, 1 << 27, 1 << 26, 1 << 19


def split_cp_arg(arg: str) -> tuple[str, str]:
    """CONTAINER:PATH -> (container, path); a local path -> ("", path)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def _unusable_destination(mode: int) -> str:
    """ValidateOutputPathFileMode: why a destination cannot receive a copy ("" if it can)."""
    if mode & _GO_DEVICE:
        return "got a device"
    if mode & _GO_IRREGULAR:
        return "got an irregular file"
    return ""


# -- docker's path helpers (moby/go-archive copy.go) -----------------------------------------

def specifies_current_dir(path: str) -> bool:
    return os.path.basename(path) == "."


def has_trailing_separator(path: str) -> bool:
    return path.endswith("/")


def asserts_directory(path: str) -> bool:
    return has_trailing_separator(path) or specifies_current_dir(path)


def preserve_trailing(cleaned: str, original: str) -> str:
    if not specifies_current_dir(cleaned) and specifies_current_dir(original):
        if not has_trailing_separator(cleaned):
            cleaned += "/"
        cleaned += "."
    if not has_trailing_separator(cleaned) and has_trailing_separator(original):
        cleaned += "/"
    return cleaned


def split_dir_entry(path: str) -> tuple[str, str]:
    """SplitPathDirEntry: ("/a", "b") for "/a/b/", ("/a/b", ".") for "/a/b/."."""
    cleaned = os.path.normpath(path) if path else "."
    if specifies_current_dir(path):
        cleaned += "/."
    return os.path.dirname(cleaned) or ".", os.path.basename(cleaned)


def resolve_local_path(path: str) -> str:
    return preserve_trailing(os.path.abspath(path), path)


def _oserror(e: OSError, verb: str, path: str) -> CLIError:
    return CLIError(f"{verb} {path}: {(e.strerror or str(e)).lower()}")


# -- tar streams ------------------------------------------------------------------------------

def _clean_name(name: str) -> str:
    """An archive entry name without "./" and "/" prefixes ("" for the root)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def name_rebaser(old: str, new: str):
    """newNameRebaser: entries under ``old`` move under ``new`` (old "" means all)."""
    old, new = _clean_name(old), _clean_name(new)

    def rebase(name: str) -> str:
        name = _clean_name(name)
        if not old:
            return f"{new}/{name}".strip("/") if new else name
        if name == old:
            return new
        if name.startswith(old + "/"):
            return new + name[len(old):] if new else name[len(old) + 1:]
        return name
    return rebase


def tar_stream(src: str, top: str, chunk: int = 1 << 20):
    """A tar archive of ``src`` (file, directory or symlink), its root entry named
    ``top`` ("" for a directory: only its content). Yields bytes."""
    import io
    import tarfile
    tar = tarfile.TarFile(fileobj=io.BytesIO(), mode="w", format=tarfile.PAX_FORMAT)

    def entries():
        if top:
            yield src, top
        if os.path.isdir(src) and not os.path.islink(src):
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, src)
                    yield full, f"{top}/{rel}" if top else rel

    for path, arcname in entries():
        try:
            info = tar.gettarinfo(path, arcname)
        except OSError as e:
            raise _oserror(e, "lstat", path) from None
        if info is None:  # a socket: docker skips them too
            continue
        if info.isdir() and not info.name.endswith("/"):
            info.name += "/"
        yield info.tobuf(tar.format, tar.encoding, tar.errors)
        if not info.isreg():
            continue
        left = info.size
        with open(path, "rb") as f:
            while left:
                data = f.read(min(chunk, left))
                if not data:  # the file shrank: keep the archive well formed
                    data = b"\0" * min(chunk, left)
                left -= len(data)
                yield data
        if info.size % 512:
            yield b"\0" * (512 - info.size % 512)
    yield b"\0" * 1024


class _ChunkReader:
    """A file-like ``read(n)`` over an iterator of byte chunks (tarfile reads from it)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = b""
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                data = next(self._chunks)
            except StopIteration:
                break
            self.total += len(data)
            self._buf += data
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def untar(fileobj, dest: str, rebase) -> None:
    """Extract a tar stream into the existing directory ``dest`` with entry names
    mapped by ``rebase``; owners are not changed (docker's NoLchown), a directory is
    never replaced by a non-directory or the reverse, and nothing lands outside."""
    import tarfile
    root = os.path.realpath(dest)
    dir_times = []
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|*")
    except tarfile.TarError as e:
        raise CLIError(f"invalid archive from the daemon: {e}") from None
    with tar:
        try:
            for member in tar:
                name = rebase(member.name)
                if not name:
                    continue
                path = os.path.join(root, name)
                _extract_member(tar, member, path, root, rebase)
                if member.isdir():
                    dir_times.append((path, member.mtime))
        except tarfile.TarError as e:
            raise CLIError(f"invalid archive from the daemon: {e}") from None
    for path, mtime in reversed(dir_times):
        try:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        except OSError:
            pass


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _extract_member(tar, member, path: str, root: str, rebase) -> None:
    parent = os.path.dirname(path)
    if not os.path.lexists(parent):
        os.makedirs(parent, 0o755, exist_ok=True)
    if not _inside(os.path.realpath(parent), root) or not _inside(os.path.normpath(path), root):
        raise CLIError(f"invalid archive entry {member.name!r}: it would be written outside {root}")
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        is_dir = statmod.S_ISDIR(existing.st_mode)
        if is_dir and not member.isdir():
            raise CLIError(f"cannot overwrite directory {path!r} with non-directory {member.name!r}")
        if not is_dir and member.isdir():
            raise CLIError(f"cannot overwrite non-directory {path!r} with directory {member.name!r}")
        if not is_dir:
            os.unlink(path)
    mode = member.mode & 0o7777
    if member.isdir():
        if existing is None:
            os.mkdir(path, 0o700)
        os.chmod(path, mode)
        return
    if member.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            while True:
                data = source.read(1 << 20)
                if not data:
                    break
                out.write(data)
            os.fchmod(out.fileno(), mode)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target = os.path.join(root, rebase(member.linkname))
        if not _inside(os.path.realpath(target), root):
            raise CLIError(f"invalid archive entry {member.name!r}: hard link to {member.linkname!r} "
                           "outside the destination")
        os.link(target, path, follow_symlinks=False)
        return
    elif member.isfifo():
        os.mkfifo(path, mode)
    elif member.ischr() or member.isblk():
        kind = statmod.S_IFCHR if member.ischr() else statmod.S_IFBLK
        os.mknod(path, mode | kind, os.makedev(member.devmajor, member.devminor))
    else:
        return
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


# -- the two directions -------------------------------------------------------------------

def _check_output_path(path: str) -> None:
    """ValidateOutputPath: the parent must exist, and an existing path must not be a device."""
    directory = os.path.dirname(os.path.normpath(path))
    if directory and directory != "." and not os.path.exists(directory):
        raise CLIError(f'invalid output path: directory "{directory}" does not exist')
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _oserror(e, "stat", path) from None
    if statmod.S_ISCHR(st.st_mode) or statmod.S_ISBLK(st.st_mode):
        raise CLIError(f'invalid output path: "{path}" must be a directory or a regular file: got a device')


def _local_destination(path: str) -> tuple[str, bool, bool]:
    """CopyInfoDestinationPath: (resolved path, exists, is a directory)."""
    original = path
    for _ in range(11):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent = split_dir_entry(path)[0]
            try:
                if not statmod.S_ISDIR(os.stat(parent).st_mode):
                    raise CLIError("not a directory")
            except OSError as e:
                raise _oserror(e, "stat", parent) from None
            return path, False, False
        if not statmod.S_ISLNK(st.st_mode):
            return path, True, statmod.S_ISDIR(st.st_mode)
        target = os.readlink(path)
        path = target if target.startswith("/") else os.path.join(split_dir_entry(path)[0], target)
    raise CLIError(f"too many symlinks in {original}")


def copy_from_container(cli, container: str, src: str, dst: str, follow: bool, quiet: bool) -> None:
    client = cli.client
    if dst != "-":
        dst = resolve_local_path(dst)
    _check_output_path(dst)
    rebase_name = ""
    if follow:
        try:
            st = client.archive_stat(container, src)
        except APIError:
            st = {}
        if (st.get("mode") or 0) & _GO_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(split_dir_entry(src)[0], target)
            target, rebase_name = _rebase_name(src, target)
            src = target
    resp, st = client.archive_get(container, src)
    try:
        if dst == "-":
            for chunk in resp.iter_content():
                cli.out.write_bytes(chunk)
            return
        src_is_dir = bool((st.get("mode") or 0) & _GO_DIR)
        dst_path, dst_exists, dst_is_dir = _local_destination(dst)
        # the daemon names the archive's root after the source's last element ("." for "dir/.")
        old = split_dir_entry(src)[1]
        old = "" if old == "." else old
        if dst_exists and dst_is_dir:
            dest_dir, rebase = dst_path, name_rebaser(old, rebase_name or old)
        elif dst_exists and src_is_dir:
            raise CLIError("cannot copy directory")
        elif not dst_exists and not src_is_dir and asserts_directory(dst_path):
            raise CLIError("no such directory")
        else:
            dest_dir, dst_base = split_dir_entry(dst_path)
            rebase = name_rebaser(old, dst_base)
        reader = _ChunkReader(resp.iter_content())
        untar(reader, dest_dir, rebase)
    finally:
        resp.close()
    if not quiet:
        size = reader.total if src_is_dir else (st.get("size") or 0)
        _summary(cli, size, reader.total, dst)


def _rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """GetRebaseName: keep the name the user typed when a symlink resolved elsewhere."""
    if specifies_current_dir(path) and not specifies_current_dir(resolved):
        resolved += "/."
    if has_trailing_separator(path) and not has_trailing_separator(resolved):
        resolved += "/"
    base_path, base_resolved = os.path.basename(path.rstrip("/")) or path, \
        os.path.basename(resolved.rstrip("/")) or resolved
    return resolved, (base_path if base_path != base_resolved else "")


def _summary(cli, content: int, transferred: int, dest: str) -> None:
    if content != transferred:
        cli.err.write(f"Successfully copied {human_size(content, 3)} (transferred "
                      f"{human_size(transferred, 3)}) to {dest}\n")
    else:
        cli.err.write(f"Successfully copied {human_size(content, 3)} to {dest}\n")


def _local_source(path: str, follow: bool) -> tuple[str, str, bool]:
    """CopyInfoSourcePath: (resolved path, rebase name, is a directory)."""
    rebase = ""
    if follow:
        resolved = os.path.realpath(path)
        if not os.path.lexists(resolved):
            raise CLIError(f"lstat {resolved}: no such file or directory")
        resolved, rebase = _rebase_name(path, resolved)
    else:
        directory, base = os.path.split(path)
        resolved_dir = os.path.realpath(directory or ".")
        resolved = os.path.join(resolved_dir, base) if base else resolved_dir + "/"
        if has_trailing_separator(path) and os.path.basename(path.rstrip("/")) != \
                os.path.basename(resolved.rstrip("/")):
            rebase = os.path.basename(path.rstrip("/"))
    try:
        st = os.lstat(resolved)
    except OSError as e:
        raise _oserror(e, "lstat", resolved) from None
    return resolved, rebase, statmod.S_ISDIR(st.st_mode)


def _local_size(path: str) -> int:
    st = os.lstat(path)
    if not statmod.S_ISDIR(st.st_mode):
        return st.st_size if statmod.S_ISREG(st.st_mode) else 0
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                fst = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if statmod.S_ISREG(fst.st_mode):
                total += fst.st_size
    return total


def copy_to_container(cli, container: str, src: str, dst: str, follow: bool, copy_uid_gid: bool,
                      quiet: bool) -> None:
    client = cli.client
    if src != "-":
        src = resolve_local_path(src)
    dst_path, dst_exists, dst_is_dir = dst, False, False
    try:
        st = client.archive_stat(container, dst)
        if (st.get("mode") or 0) & _GO_SYMLINK:
            target = st.get("linkTarget") or ""
            if not target.startswith("/"):
                target = os.path.join(split_dir_entry(dst)[0], target)
            dst_path = target
            st = client.archive_stat(container, target)
        mode = st.get("mode") or 0
        unusable = _unusable_destination(mode)
        if unusable:
            raise CLIError(f'destination "{container}:{dst}" must be a directory or a regular file: {unusable}')
        dst_exists, dst_is_dir = True, bool(mode & _GO_DIR)
    except APIError:
        pass  # a destination that does not exist yet (or no container: the copy says so)

    if src == "-":
        if not dst_is_dir:
            raise CLIError(f'destination "{container}:{dst}" must be a directory')
        client.archive_put(container, dst_path, cli.env.stdin.raw, copy_uid_gid)
        return

    resolved, rebase_name, src_is_dir = _local_source(src, follow)
    src_base = rebase_name or split_dir_entry(resolved)[1]
    dst_dir, dst_base = split_dir_entry(dst_path)
    if dst_exists and dst_is_dir:
        dst_dir, top = dst_path, ("" if src_base == "." else src_base)
    elif dst_exists and src_is_dir:
        raise CLIError("cannot copy directory")
    elif not dst_exists and not src_is_dir and asserts_directory(dst_path):
        raise CLIError("no such directory")
    else:
        top = dst_base
    source = resolved[:-2] if resolved.endswith("/.") else resolved.rstrip("/") or "/"
    content = _Counted(tar_stream(source, top))
    client.archive_put(container, dst_dir, content, copy_uid_gid)
    if not quiet:
        _summary(cli, _local_size(source), content.total, f"{container}:{dst_path}")


class _Counted:
    """An iterator of chunks that counts what went through it."""

    def __init__(self, chunks):
        self._chunks = chunks
        self.total = 0

    def __iter__(self):
        for chunk in self._chunks:
            self.total += len(chunk)
            yield chunk


def run_cp(cli, opts, args) -> None:
    source, destination = args
    if not source:
        raise CLIError("source can not be empty")
    if not destination:
        raise CLIError("destination can not be empty")
    quiet = opts.quiet if opts.changed("quiet") else not cli.out.isatty()
    src_container, src = split_cp_arg(source)
    dst_container, dst = split_cp_arg(destination)
    if src_container and dst_container:
        raise CLIError("copying between containers is not supported")
    if src_container:
        copy_from_container(cli, src_container, src, dst, opts.follow_link, quiet)
    elif dst_container:
        copy_to_container(cli, dst_container, src, dst, opts.follow_link, opts.archive, quiet)
    else:
        raise CLIError("must specify at least one container source")


CP = Command("cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
             "Copy files/folders between a container and the local filesystem",
             long="Copy files/folders between a container and the local filesystem\n\n"
                  "Use '-' as the source to read a tar archive from stdin\n"
                  "and extract it to a directory destination in a container.\n"
                  "Use '-' as the destination to stream a tar archive of a\n"
                  "container source to stdout.",
             flags=[Flag("archive", "a", help="Archive mode (copy all uid/gid information)"),
                    Flag("follow-link", "L", help="Always follow symlinks in SRC_PATH"),
                    Flag("quiet", "q", help="Suppress progress output during copy. Progress output is "
                         "automatically suppressed if no terminal is attached")],
             args=exact(2), run=run_cp, see_also=("berth container cp", "berth cp"))
