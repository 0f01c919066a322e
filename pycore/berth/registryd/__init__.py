"""berth's own registry server: the OCI distribution spec over a
content-addressed store on disk, with optional htpasswd (bcrypt) basic auth.

Public interface:
- :class:`RegistryServer` (start/stop in a running loop), :func:`serve`
  (foreground, until a signal) and :func:`parse_addr`;
- :func:`berth.registryd.app.make_app` for embedding the aiohttp app;
- :class:`berth.registryd.storage.Storage` (blobs, uploads, manifests, tags,
  referrers) and :class:`berth.registryd.errors.RegistryError`.
"""

from berth.registryd.server import AddressError, RegistryServer, parse_addr, serve

__all__ = ["AddressError", "RegistryServer", "parse_addr", "serve"]
