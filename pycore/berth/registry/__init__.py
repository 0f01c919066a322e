"""The registry client: pull, push, login and distribution inspect against
registries that speak the OCI distribution spec (Docker Hub, distribution,
berth's own server...).

Public interface:
- :class:`RegistryService` (``pull``, ``push``, ``login``,
  ``inspect_distribution``), created once per daemon;
- :class:`RegistryOptions` (mirrors, insecure registries) and
  :func:`normalize_server_address`;
- :class:`AuthConfig` (``X-Registry-Auth`` / ``POST /auth`` credentials);
- :class:`PullResult`, :class:`PushResult`.

Names are imported on first use, so ``berth.registry.hosts`` (what the
daemon's option parsing needs) does not pull in aiohttp and the image store.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AuthConfig": "berth.registry.auth",
    "PullResult": "berth.registry.pull",
    "PushResult": "berth.registry.push",
    "RegistryOptions": "berth.registry.hosts",
    "RegistryService": "berth.registry.service",
    "normalize_server_address": "berth.registry.hosts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
