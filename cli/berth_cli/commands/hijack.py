"""The terminal side of an attached container or exec (docker's hijackedIOStreamer).

One thread, one poll loop: the hijacked socket, the local stdin and a signal
wake-up pipe. Output is demultiplexed from docker's 8-byte-header frames when
there is no tty; stdin goes out without blocking the loop (a container that
stops reading its stdin must not stop us from reading its output); with a tty
the local terminal is raw and ctrl-p ctrl-q (or --detach-keys) detaches.
Signals received meanwhile are forwarded to the container (``/kill``) and
window size changes become ``/resize`` calls, from the loop, never from a
signal handler. Only C modules are imported here (``_signal`` rather than
``signal``, which pulls in enum): `run` starts on this path.
"""

import _signal
import _socket
import select

from .. import lean_os
from ..errors import CLIError
from ..transport import ProtocolError

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
_READ_SIZE = 1 << 16

# What `--sig-proxy` forwards: docker forwards every signal it can catch; these are
# the ones a terminal, a shell or a supervisor sends (not SIGALRM: that is a
# process's own timer, and test runners time out with it). Names as the API takes them.
FORWARDED_SIGNALS = {getattr(_signal, "SIG" + name): name
                     for name in ("HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "TSTP")}


_CTRL_KEYS = "@abcdefghijklmnopqrstuvwxyz[\\]^_"  # ctrl-@ is 0, ctrl-a 1, ... ctrl-_ 31


def detach_key_bytes(spec: str) -> bytes:
    """moby/term ToBytes: "ctrl-p,ctrl-q", "a,ctrl-\\"... ValueError with its text."""
    codes = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            codes.append(ord(key))
            continue
        lowered = key.lower()
        if len(key) != 6 or not lowered.startswith("ctrl-") or lowered[5] not in _CTRL_KEYS:
            raise ValueError(f"unknown character: '{key}'")
        codes.append(_CTRL_KEYS.index(lowered[5]))
    return bytes(codes)


def validate_detach_keys(spec: str) -> bytes:
    """The escape sequence for --detach-keys (the default when empty); CLIError if invalid."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    try:
        return detach_key_bytes(spec)
    except ValueError as e:
        raise CLIError(f"invalid detach keys ({spec}): {e}") from None


class FrameDemuxer:
    """docker's stdcopy, incrementally: frames of an 8-byte header (stream, 0, 0, 0,
    big-endian length) and a payload, split wherever the socket cut them."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        frames = []
        pos = 0
        while len(buf) - pos >= 8:
            size = int.from_bytes(buf[pos + 4:pos + 8], "big")
            if len(buf) - pos - 8 < size:
                break
            frames.append((buf[pos], bytes(buf[pos + 8:pos + 8 + size])))
            pos += 8 + size
        del buf[:pos]
        return frames

    def finish(self) -> None:
        if self._buf:
            raise ProtocolError("stream closed in the middle of a frame")


class EscapeDetector:
    """moby/term's escape proxy: a detach sequence typed key by key (one byte per
    read) is swallowed and ends the session; a partial match typed then broken is
    passed on whole."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.pos = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the user detached)."""
        if len(data) != 1:
            held, self.pos = self.keys[:self.pos], 0
            return held + data, False
        if data[0] != self.keys[self.pos]:
            held, self.pos = self.keys[:self.pos], 0
            return held + data, False
        if self.pos == len(self.keys) - 1:
            self.pos = 0
            return b"", True
        self.pos += 1
        return b"", False


class RawTerminal:
    """The local terminal in raw mode (moby/term MakeRaw) while a tty session runs."""

    def __init__(self, fd: int):
        import termios
        self._termios = termios
        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        t = termios
        mode = termios.tcgetattr(fd)
        mode[0] &= ~(t.IGNBRK | t.BRKINT | t.PARMRK | t.ISTRIP | t.INLCR | t.IGNCR | t.ICRNL | t.IXON)
        mode[1] &= ~t.OPOST
        mode[3] &= ~(t.ECHO | t.ECHONL | t.ICANON | t.ISIG | t.IEXTEN)
        mode[2] &= ~(t.CSIZE | t.PARENB)
        mode[2] |= t.CS8
        mode[6][t.VMIN] = 1
        mode[6][t.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSADRAIN, mode)

    def restore(self) -> None:
        if self.saved is not None:
            try:
                self._termios.tcsetattr(self.fd, self._termios.TCSADRAIN, self.saved)
            except self._termios.error:
                pass
            self.saved = None


def terminal_size(stream) -> tuple[int, int]:
    """(height, width) of the terminal behind a stream; (0, 0) when it is not one."""
    if not stream.isatty():
        return 0, 0
    try:
        size = lean_os.get_terminal_size(stream.raw.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.lines, size.columns


class SignalRelay:
    """Signals turned into events of the poll loop (a wake-up pipe): the ones in
    ``forward`` go to ``on_signal(name)``, SIGWINCH to ``on_winch()``."""

    def __init__(self, forward: bool, on_signal=None, on_winch=None):
        self.on_signal, self.on_winch = on_signal, on_winch
        self.fd, self._wfd = lean_os.pipe2(lean_os.O_NONBLOCK | lean_os.O_CLOEXEC)
        self._saved: dict[int, object] = {}
        try:
            self._old_wakeup = _signal.set_wakeup_fd(self._wfd)
        except ValueError:  # not the main thread: no relay
            lean_os.close(self.fd)
            lean_os.close(self._wfd)
            self.fd = -1
            return
        wanted = list(FORWARDED_SIGNALS) if forward else []
        if on_winch is not None:
            wanted.append(_signal.SIGWINCH)
        for signum in wanted:
            self._saved[signum] = _signal.signal(signum, _wake)

    @property
    def active(self) -> bool:
        return self.fd >= 0

    def dispatch(self) -> None:
        try:
            data = lean_os.read(self.fd, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == _signal.SIGWINCH and self.on_winch is not None:
                self.on_winch()
            elif signum in FORWARDED_SIGNALS and self.on_signal is not None and signum in self._saved:
                self.on_signal(FORWARDED_SIGNALS[signum])

    def close(self) -> None:
        if self.fd < 0:
            return
        for signum, handler in self._saved.items():
            _signal.signal(signum, handler)
        _signal.set_wakeup_fd(self._old_wakeup)
        lean_os.close(self.fd)
        lean_os.close(self._wfd)
        self.fd = -1


def _wake(signum, frame) -> None:
    """A Python-level handler, so that the C handler writes to the wake-up pipe."""


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


#: berth's control frames (JSON) in a /berth/containers/run stream.
CONTROL_STREAM = 16


def pump(raw, *, stdin=None, out=None, err=None, tty: bool = False,
         escape: EscapeDetector | None = None, relay: SignalRelay | None = None,
         control=None) -> bool:
    """Copy ``stdin`` (a binary file) to the hijacked stream and the stream to ``out``
    and ``err`` (env Streams) until the daemon ends it. True if the user detached.
    ``control(payload)`` takes berth's control frames."""
    sock = raw.sock
    sock_fd = sock.fileno()
    poller = select.poll()
    demux = None if tty else FrameDemuxer()
    outgoing = b""
    in_fd = None
    stdin_open = False
    shut_pending = False
    if stdin is not None:
        in_fd = _fileno(stdin)
        if in_fd is None:  # an in-memory stream (tests): everything is there already
            outgoing, shut_pending = stdin.read() or b"", True
        else:
            stdin_open = True
    if relay is not None and relay.active:
        poller.register(relay.fd, select.POLLIN)

    def deliver(data: bytes) -> None:
        if demux is None:
            if out is not None:
                out.write_bytes(data)
                out.flush()
            return
        for stream, payload in demux.feed(data):
            if stream == 3:
                raise CLIError(f"error from daemon in stream: {payload.decode('utf-8', 'replace')}")
            if stream == CONTROL_STREAM and control is not None:
                control(payload)
                continue
            target = err if stream == 2 else out
            if target is not None:
                target.write_bytes(payload)
                target.flush()

    first = raw.take_buffered()
    if first:
        deliver(first)
    stdin_polled = False
    while True:
        if outgoing:
            try:
                sent = sock.send(outgoing, _socket.MSG_DONTWAIT)
                outgoing = outgoing[sent:]
            except BlockingIOError:
                pass
            except OSError:  # the daemon no longer reads: our input has nowhere to go
                outgoing, stdin_open, shut_pending = b"", False, False
        if not outgoing and shut_pending:
            shut_pending = False
            try:
                raw.close_write()
            except OSError:
                pass
        poller.register(sock_fd, select.POLLIN | (select.POLLOUT if outgoing else 0))
        want_stdin = stdin_open and not outgoing
        if want_stdin != stdin_polled:
            if want_stdin:
                poller.register(in_fd, select.POLLIN)
            else:
                poller.unregister(in_fd)
            stdin_polled = want_stdin
        for fd, event in poller.poll():
            if fd == sock_fd:
                if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = sock.recv(_READ_SIZE)
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        if demux is not None:
                            demux.finish()
                        return False
                    deliver(data)
            elif fd == in_fd:
                try:
                    data = lean_os.read(in_fd, _READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(in_fd)
                    stdin_open = stdin_polled = False
                    shut_pending = True
                    continue
                if escape is not None:
                    data, detached = escape.feed(data)
                    if detached:
                        return True
                outgoing += data
            elif relay is not None and fd == relay.fd:
                relay.dispatch()

