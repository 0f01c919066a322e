"""Daemon configuration: the data root and the API socket.

Nothing global is hard-coded elsewhere: every path is derived from a Config, so
several daemons with different roots and sockets can run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ROOT = "/var/lib/berth"
DEFAULT_HOST = "unix:///run/berth/berth.sock"
API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


def socket_path(host: str) -> str:
    """``unix:///run/x.sock`` (or a bare path) -> ``/run/x.sock``."""
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if "://" in host:
        raise ValueError(f"unsupported host {host!r}: only unix:// sockets are served")
    return host


@dataclass
class Config:
    root: str = DEFAULT_ROOT
    host: str = DEFAULT_HOST

    @classmethod
    def from_env(cls, root: str | None = None, host: str | None = None) -> "Config":
        return cls(
            root=os.path.abspath(root or os.environ.get("BERTH_ROOT") or DEFAULT_ROOT),
            host=host or os.environ.get("BERTH_HOST") or DEFAULT_HOST,
        )

    @property
    def socket(self) -> str:
        return socket_path(self.host)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)
