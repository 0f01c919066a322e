"""Which directories of a build context changed since a given moment, from
inotify: a context that did not change is not even walked again.

The checksum of a COPY source in a context read in place is remembered with
the directories it covers and a token taken *before* they were walked (each
directory is watched before it is listed, so a change made during the walk
is seen too). It is reused while no event arrived for any of them. A change
to anything in a directory (content, mode, owner, times, names) counts; a
queue overflow, a watch that could not be added or a directory that went
away all mean "changed". Without inotify (or past the watch limit) the
builder simply walks, with the file-digest cache of :mod:`checksum`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import threading

log = logging.getLogger("berth.builder")

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

CHANGES = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
           | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
_EVENT = struct.Struct("iIII")


class TreeWatch:
    def __init__(self, max_dirs: int = 100_000):
        self._lock = threading.Lock()
        self._libc = None
        self._fd = -1
        self._wd_dir: dict[int, str] = {}
        self._dir_wd: dict[str, int] = {}
        self._changed: dict[str, int] = {}   # directory -> generation of its last change
        self._generation = 1
        self._overflow = 0
        self._max_dirs = max_dirs
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            self._libc, self._fd = libc, fd
        except (OSError, AttributeError) as e:
            log.info("no inotify (%s): contexts are walked on every build", e)

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def token(self) -> int:
        """A moment: changes after it are seen by :meth:`unchanged`."""
        with self._lock:
            self._drain()
            self._generation += 1
            return self._generation

    def watch(self, directory: str) -> bool:
        """Start watching a directory (before listing it); False if it cannot be."""
        if self._fd < 0:
            return False
        with self._lock:
            if directory in self._dir_wd:
                return True
            if len(self._dir_wd) >= self._max_dirs:
                return False
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory),
                                              CHANGES | IN_ONLYDIR | IN_DONT_FOLLOW)
            if wd < 0:
                code = ctypes.get_errno()
                if code == errno.ENOSPC:
                    log.warning("inotify watch limit reached: large contexts are walked again "
                                "on each build (raise fs.inotify.max_user_watches)")
                return False
            old = self._wd_dir.get(wd)
            if old is not None and old != directory:
                self._dir_wd.pop(old, None)  # the same inode under a new name
                self._changed[old] = self._generation
            self._wd_dir[wd] = directory
            self._dir_wd[directory] = wd
            return True

    def unchanged(self, directories, since: int) -> bool:
        """No change in any of ``directories`` after the token ``since``."""
        if self._fd < 0:
            return False
        with self._lock:
            self._drain()
            if self._overflow >= since:
                return False
            for d in directories:
                if d not in self._dir_wd or self._changed.get(d, 0) >= since:
                    return False
            return True

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self._overflow = self._generation
                    continue
                directory = self._wd_dir.get(wd)
                if directory is None:
                    continue
                self._changed[directory] = self._generation
                if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    # The path no longer names this directory: watch it anew if needed.
                    del self._wd_dir[wd]
                    if self._dir_wd.get(directory) == wd:
                        del self._dir_wd[directory]
