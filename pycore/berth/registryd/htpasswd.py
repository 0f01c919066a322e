"""Basic authentication from an htpasswd file with bcrypt hashes, the only
kind distribution accepts (``htpasswd -B``).

bcrypt is deliberately slow (tens of milliseconds a check); a push makes
dozens of requests, so a verified (user, password) pair is remembered, keyed
by a sha256 of the password, until the file changes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading


class HtpasswdError(Exception):
    pass


class Htpasswd:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, bytes] = {}
        self._stamp: tuple[int, int] | None = None
        self._verified: set[tuple[str, bytes]] = set()
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise HtpasswdError(f"htpasswd file {self.path}: {e.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        entries: dict[str, bytes] = {}
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith(b"#"):
                    continue
                user, sep, hashed = line.partition(b":")
                if not sep or not user:
                    raise HtpasswdError(f"htpasswd file {self.path}: line {number} is not user:hash")
                if not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
                    raise HtpasswdError(
                        f"htpasswd file {self.path}: user {user.decode(errors='replace')!r} "
                        "does not have a bcrypt hash (create it with htpasswd -B)")
                entries[user.decode()] = hashed
        self._entries = entries
        self._stamp = stamp
        self._verified.clear()

    def check(self, authorization: str | None) -> str | None:
        """The user named by a valid ``Authorization: Basic`` header, or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if not sep:
            return None
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            try:
                self._load()
            except HtpasswdError:
                return None
            if key in self._verified:
                return user
            hashed = self._entries.get(user)
        if hashed is None:
            return None
        import bcrypt  # only needed when a password is actually checked

        # bcrypt implementations agree on the hash; only the version letter differs.
        if hashed.startswith(b"$2y$"):
            hashed = b"$2b$" + hashed[4:]
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                self._verified.add(key)
            return user
        return None

