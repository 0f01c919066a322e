"""``berthd [--root DIR] [--host unix://PATH] [--debug]``.

Start-up order matters: lock the data root (one daemon per root), lock the
socket path (``<socket>.lock``: one daemon per socket, starting or serving),
claim the socket (replacing it only if stale), start the services, and only
then listen, so a client that can connect is served. Heavy modules are imported
after the arguments are checked, because the CLI auto-starts the daemon and
waits for it.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import signal
import socket
import stat
import sys
import time

from berth import __version__
from berth.config import Config
from berth.errors import BerthError

log = logging.getLogger("berth.daemon")

PIDFILE = "berthd.pid"


class StartupError(Exception):
    """berthd cannot start; the message says why and names the path."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="berthd", description="berth daemon: serves the Docker Engine API for one data root")
    parser.add_argument("--root", help="data root (env BERTH_ROOT, default /var/lib/berth)")
    parser.add_argument("-H", "--host",
                        help="socket to serve, unix://PATH (env BERTH_HOST, "
                             "default unix:///run/berth/berth.sock)")
    parser.add_argument("-D", "--debug", action="store_true", help="log every request")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                        help="preferred Docker Hub mirror (repeatable)")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST|CIDR",
                        help="registry reachable over plain HTTP or unverified TLS (repeatable)")
    from berth.networks.options import add_arguments as add_network_arguments
    add_network_arguments(parser)
    parser.add_argument("-v", "--version", action="version", version=f"berthd {__version__}")
    return parser.parse_args(argv)


class PidLock:
    """An flock on a file holding the holder's pid: held for the daemon's lifetime,
    released by the kernel if it dies, so a stale file never blocks a restart.

    ``busy(pid)`` is the error when another process holds it. ``grace`` is how
    long to retry first: the CLI probes the socket's lock with a momentary
    LOCK_SH, which must not make a starting daemon give up."""

    def __init__(self, path: str, busy, mode: int = 0o644, grace: float = 0.0):
        self.path = path
        deadline = time.monotonic() + grace
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise StartupError(busy(holder)) from None
            self.inode = os.fstat(fd).st_ino
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == self.inode:
                break
            # Its previous holder removed the file while we waited: that inode locks nothing.
            os.close(fd)
        self.fd = fd
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, remove: bool = False) -> None:
        if remove:  # before letting go, and only our own file (see _remove_socket)
            try:
                if os.lstat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.ftruncate(self.fd, 0)
        os.close(self.fd)


def RootLock(root: str) -> PidLock:
    """``<root>/berthd.pid``: one daemon per data root."""
    return PidLock(os.path.join(root, PIDFILE),
                   lambda pid: f"data root {root} is in use by another berthd (pid {pid})")


def SocketLock(path: str) -> PidLock:
    """``<socket>.lock``: held from before the socket is bound, so the window
    between bind and listen (a refused connect) never looks like a stale socket
    to another daemon or to the CLI's auto-start."""
    return PidLock(path + ".lock",
                   lambda pid: f"cannot serve on {path}: another berthd (pid {pid}) owns it "
                               f"({path}.lock is locked)",
                   mode=0o600, grace=0.5)


def _someone_answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
        return True
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        # Any other answer (EAGAIN: a full backlog, a timeout) means a live listener.
        return True
    finally:
        probe.close()


def bind_socket(path: str) -> socket.socket:
    """A listening-ready unix socket at ``path`` with mode 0660; a stale socket
    left by a crashed daemon is replaced, a live one is not."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"cannot serve on {path}: the path exists and is not a socket")
        if _someone_answers(path):
            raise StartupError(f"cannot serve on {path}: another daemon is listening on it")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # umask makes the socket 0660 from the moment it exists (no chmod race).
    old_umask = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    return sock


def _remove_socket(path: str, inode: int) -> None:
    # Only our own socket: a successor may already have replaced it.
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


async def serve(config: Config, sock: socket.socket, debug: bool, registry_options=None,
                network_options=None) -> None:
    import asyncio
    import concurrent.futures

    from aiohttp import web

    from berth.api import make_app
    from berth.daemon.engine import Engine

    loop = asyncio.get_running_loop()
    # Image saves and loads hold a worker for their whole transfer; leave room for
    # quick calls next to them.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
        max_workers=32, thread_name_prefix="berthd-worker"))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # dockerd treats SIGHUP as "reload"; berthd has nothing to reload, but a
    # closed terminal must not kill the daemon the CLI started from it.
    loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP received: nothing to reload")

    engine = Engine(config, debug=debug, network_options=network_options)
    if registry_options is not None:
        from berth.api.registry import configure as configure_registry
        configure_registry(engine, registry_options)
    await asyncio.to_thread(engine.start)
    runner = web.AppRunner(make_app(engine), handle_signals=False,
                           access_log=logging.getLogger("berth.access") if debug else None,
                           shutdown_timeout=5.0)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info("berthd %s serving %s (root %s, pid %d)",
                 __version__, config.host, config.root, os.getpid())
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        await asyncio.to_thread(engine.close)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config.from_env(args.root, args.host)
        from berth.registry.hosts import RegistryOptions
        registry_options = RegistryOptions(args.registry_mirror, args.insecure_registry)
        from berth.networks.options import from_args as network_options_from_args
        network_options = network_options_from_args(config.root, args)
        path = config.socket
    except (ValueError, BerthError) as exc:
        print(f"berthd: {exc}", file=sys.stderr)
        return 2
    if not os.path.isabs(path):
        path = os.path.abspath(path)

    lock = None
    socket_lock = None
    sock = None
    inode = None
    try:
        os.makedirs(config.root, mode=0o711, exist_ok=True)
        lock = RootLock(config.root)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        socket_lock = SocketLock(path)
        sock = bind_socket(path)
        inode = os.lstat(path).st_ino
        import asyncio
        asyncio.run(serve(config, sock, args.debug, registry_options, network_options))
        return 0
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    except BerthError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    finally:
        if sock is not None:
            sock.close()
            _remove_socket(path, inode)
        if socket_lock is not None:
            socket_lock.release(remove=True)
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
