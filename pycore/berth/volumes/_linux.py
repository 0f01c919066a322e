"""The Linux system calls Python's ``os`` module lacks: mount(2), the fd-based
mount API, unshare(2) and openat2(2) with ``RESOLVE_IN_ROOT``.

Everything here is a thin ctypes wrapper that raises ``OSError`` with the
errno and the object it was about, so callers can turn it into a message for
the user. Syscall numbers are the generic ones every 64-bit architecture
berth runs on shares (x86_64, aarch64).
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_OPENAT2 = 437

CLONE_NEWNS = 0x00020000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4

OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {fstype or source or ''} on {target}", target)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(_b(target), flags), f"unmount {target}", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """``openat2(dirfd, path, {flags|O_CLOEXEC, mode, resolve})`` -> fd.

    With the default ``resolve``, ``path`` is looked up as if ``dirfd`` were
    ``/``: absolute names, ``..`` and symlinks (absolute or relative) never
    leave it, which is what every path inside a container must honour."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path) or b"."
    while True:
        fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(raw),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        # The kernel asks for a retry when a rename raced with the lookup.
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)


def fsopen(fstype: str) -> int:
    return _check(_libc.syscall(SYS_FSOPEN, ctypes.c_char_p(_b(fstype)),
                                ctypes.c_uint(FSOPEN_CLOEXEC)), f"fsopen {fstype}")


def fsconfig_string(fsfd: int, key: str, value: str) -> None:
    _check(_libc.syscall(SYS_FSCONFIG, ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_SET_STRING),
                         ctypes.c_char_p(_b(key)), ctypes.c_char_p(_b(value)), ctypes.c_int(0)),
           f"fsconfig {key}={value}", value)


def fsconfig_create(fsfd: int) -> None:
    result = _libc.syscall(SYS_FSCONFIG, ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_CMD_CREATE),
                           None, None, ctypes.c_int(0))
    if result < 0:
        err = ctypes.get_errno()
        # The kernel explains a refused superblock in messages read from the fd.
        messages = []
        while True:
            try:
                chunk = os.read(fsfd, 512)
            except OSError:
                break
            if not chunk:
                break
            messages.append(chunk.decode(errors="replace").strip())
        detail = f" ({'; '.join(messages)})" if messages else ""
        raise OSError(err, f"create filesystem: {os.strerror(err)}{detail}")


def fsmount(fsfd: int, attr_flags: int = 0) -> int:
    return _check(_libc.syscall(SYS_FSMOUNT, ctypes.c_int(fsfd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                                ctypes.c_uint(attr_flags)), "fsmount")


def move_mount_to(mount_fd: int, target: str) -> None:
    _check(_libc.syscall(SYS_MOVE_MOUNT, ctypes.c_int(mount_fd), ctypes.c_char_p(b""),
                         ctypes.c_int(-100), ctypes.c_char_p(_b(target)),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
           f"attach mount on {target}", target)


def fd_path(fd: int) -> str:
    """The magic link that names exactly the inode ``fd`` refers to."""
    return f"/proc/self/fd/{fd}"


#: Mount option words and the flags they set or clear (Docker's and mount(8)'s).
_FLAG_WORDS: dict[str, tuple[int, bool]] = {
    "ro": (MS_RDONLY, False), "rw": (MS_RDONLY, True),
    "nosuid": (MS_NOSUID, False), "suid": (MS_NOSUID, True),
    "nodev": (MS_NODEV, False), "dev": (MS_NODEV, True),
    "noexec": (MS_NOEXEC, False), "exec": (MS_NOEXEC, True),
    "sync": (MS_SYNCHRONOUS, False), "async": (MS_SYNCHRONOUS, True),
    "noatime": (MS_NOATIME, False), "atime": (MS_NOATIME, True),
    "nodiratime": (MS_NODIRATIME, False), "diratime": (MS_NODIRATIME, True),
    "relatime": (MS_RELATIME, False), "norelatime": (MS_RELATIME, True),
    "strictatime": (MS_STRICTATIME, False), "nostrictatime": (MS_STRICTATIME, True),
    "bind": (MS_BIND, False), "rbind": (MS_BIND | MS_REC, False),
    "defaults": (0, False),
}


def parse_mount_options(options: str) -> tuple[int, str]:
    """``"ro,bind,size=64m"`` -> (flags, ``"size=64m"``): flag words become
    mount(2) flags, everything else is filesystem data."""
    flags = 0
    data = []
    for word in filter(None, (w.strip() for w in options.split(","))):
        known = _FLAG_WORDS.get(word)
        if known is None:
            data.append(word)
        elif known[1]:
            flags &= ~known[0]
        else:
            flags |= known[0]
    return flags, ",".join(data)
