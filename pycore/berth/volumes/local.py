"""The ``local`` volume driver: ``volumes/<name>/_data`` under the data root.

With options (Docker's ``type``, ``device``, ``o``) the ``_data`` directory
is a mount point instead: ``device`` of filesystem ``type`` mounted with
options ``o`` (``--opt type=tmpfs --opt device=tmpfs --opt o=size=64m``, or
``type=none,o=bind,device=/path``) while a container uses the volume.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import stat

from berth.errors import InvalidArgument, SystemError_
from berth.volumes import _linux as L

log = logging.getLogger("berth.volumes")

DATA = "_data"
TRASH_PREFIX = ".trash-"
VALID_OPTIONS = ("type", "o", "device", "size")
# An option that needs others (Docker's mandatoryOpts).
_REQUIRES = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$", re.IGNORECASE)


def check_options(options: dict[str, str]) -> None:
    for key, value in options.items():
        if key not in VALID_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
        if not isinstance(value, str):
            raise InvalidArgument(f'invalid option "{key}": the value must be a string')
    if "size" in options:
        if not _SIZE_RE.match(options["size"].strip()):
            raise InvalidArgument(f"invalid size: '{options['size']}'")
        # Quotas need an XFS project-quota backing filesystem, which the data
        # root is not assumed to be: refused as Docker does without one.
        raise InvalidArgument("quota size requested but no quota support")
    for key, required in _REQUIRES.items():
        if key in options:
            for other in required:
                if other not in options:
                    raise InvalidArgument(f'missing required option: "{other}"')


class LocalDriver:
    name = "local"

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, mode=0o701, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def data_path(self, name: str) -> str:
        return os.path.join(self.root, name, DATA)

    def exists(self, name: str) -> bool:
        return os.path.isdir(self.data_path(name))

    def create(self, name: str) -> None:
        """``volumes/<name>/_data``; nothing is left behind on failure."""
        base = self.path(name)
        created = False
        try:
            os.mkdir(base, 0o701)
            created = True
        except FileExistsError:
            pass
        try:
            os.makedirs(self.data_path(name), mode=0o755, exist_ok=True)
            os.chmod(self.data_path(name), 0o755)
        except OSError:
            if created:
                shutil.rmtree(base, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        """Out of sight at once (a rename), then deleted. A crash in between
        leaves ``.trash-<name>-<random>``, finished by :meth:`remove_trash`."""
        base = self.path(name)
        if self.is_mounted(name):
            raise SystemError_(f"remove {name}: its data directory is still mounted")
        trash = os.path.join(self.root, f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}")
        try:
            os.rename(base, trash)
        except FileNotFoundError:
            return
        _rmtree(trash)

    def names_on_disk(self) -> list[str]:
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [e for e in entries if not e.startswith(TRASH_PREFIX)
                and os.path.isdir(os.path.join(self.root, e))]

    def remove_trash(self) -> set[str]:
        """Start-up: finish removals a crash interrupted; returns the names of
        the volumes whose data was found half-removed."""
        names = set()
        for entry in os.listdir(self.root):
            if entry.startswith(TRASH_PREFIX):
                names.add(entry[len(TRASH_PREFIX):].rsplit("-", 1)[0])
                _rmtree(os.path.join(self.root, entry))
        return names

    def size(self, name: str) -> int:
        """Bytes of the volume's files (hard links counted once, as Docker's
        directory.Size), -1 if unknown."""
        try:
            return _disk_usage(self.data_path(name))
        except OSError:
            return -1

    def is_empty(self, name: str) -> bool:
        with os.scandir(self.data_path(name)) as it:
            return next(it, None) is None

    # -- volumes with mount options ---------------------------------------------------
    def is_mounted(self, name: str) -> bool:
        target = os.path.realpath(self.data_path(name))
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 4 and _unescape(fields[4]) == target:
                        return True
        except OSError:
            return False
        return False

    def mount(self, name: str, options: dict[str, str]) -> None:
        if not options or self.is_mounted(name):
            return
        device = options.get("device", "")
        fstype = options.get("type", "")
        flags, data = L.parse_mount_options(options.get("o", ""))
        if fstype == "none" or flags & L.MS_BIND:
            fstype = None
        target = self.data_path(name)
        try:
            L.mount(device, target, fstype, flags, data or None)
        except OSError as exc:
            raise SystemError_(f"error while mounting volume '{target}': failed to mount local "
                               f"volume: mount {device}:{target}, "
                               f"flags: {flags:#x}, data: {data}: "
                               f"{os.strerror(exc.errno or errno.EIO).lower()}") from None

    def unmount(self, name: str) -> None:
        if not self.is_mounted(name):
            return
        try:
            L.umount(self.data_path(name), L.MNT_DETACH)
        except OSError as exc:
            raise SystemError_(f"unmount volume {name}: {exc.strerror}") from None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _rmtree(path: str) -> None:
    def onerror(func, p, exc_info):
        log.warning("cannot remove %s: %s", p, exc_info[1])
    shutil.rmtree(path, onerror=onerror)


def _disk_usage(path: str) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames, dirfd in os.fwalk(path):
        for name in filenames + dirnames:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_size
    return total
