"""Running the registry: in an existing event loop (:class:`RegistryServer`,
used by tests and embedders) or as a foreground process (:func:`serve`, what
``berth registry serve`` runs)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Callable

from aiohttp import web

from berth.registryd.app import make_app
from berth.registryd.htpasswd import Htpasswd, HtpasswdError

log = logging.getLogger("berth.registryd")


class AddressError(ValueError):
    pass


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[V6]:PORT`` -> (host, port); port 0 picks one."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise AddressError(f"invalid address {addr!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise AddressError(f"invalid address {addr!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise AddressError(f"invalid address {addr!r}: port {number} is out of range")
    return host or "0.0.0.0", number


class RegistryServer:
    def __init__(self, root: str, addr: str = "127.0.0.1:5000", htpasswd: str | None = None,
                 fsync: bool = True, access_log: bool = False):
        self.root = root
        self.host, self.port = parse_addr(addr)
        if htpasswd:
            Htpasswd(htpasswd)  # a bad file is an error now, not on the first request
        self.htpasswd = htpasswd
        self.fsync = fsync
        self.access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` as a registry domain in image references."""
        return self.url.removeprefix("http://")

    async def start(self) -> None:
        app = make_app(self.root, self.htpasswd, fsync=self.fsync)
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=2.0,
            access_log=logging.getLogger("berth.registryd.access") if self.access_log else None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the port the kernel chose
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def serve(root: str, addr: str, htpasswd: str | None = None,
          ready: Callable[[RegistryServer], None] | None = None) -> int:
    """Serve until SIGINT or SIGTERM. Returns an exit code."""
    try:
        os.makedirs(root, exist_ok=True)
        server = RegistryServer(root, addr, htpasswd)
    except (AddressError, HtpasswdError) as e:
        log.error("%s", e)
        return 2
    except OSError as e:
        log.error("cannot use %s: %s", root, e.strerror or e)
        return 1

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await server.start()
        except OSError as e:
            log.error("cannot listen on %s: %s", addr, e.strerror or e)
            return 1
        if ready is not None:
            ready(server)
        try:
            await stop.wait()
        finally:
            await server.stop()
        return 0

    return asyncio.run(main())
