"""berth.runtime: the daemon's side of running processes in containers.

The daemon never forks Python. For a container it writes a bundle directory
``<root>/containers/<id>/`` with ``spec.json`` (:func:`write_spec`; shape in
:mod:`berth.runtime.spec`) and runs ``berth-monitor <bundle>``
(:func:`spawn_monitor`). The monitor (Rust, rust/monitor) forks itself away from
the daemon (so containers outlive it), creates the container's init (new
namespaces, overlay rootfs, pivot_root, capabilities...; rust/runtime) stopped just
before exec, and returns. Then, like ``runc create``/``start``:

- :func:`attach` / :func:`attach_async` subscribe to stdout/stderr (and write
  stdin, resize a tty) — before :func:`start`, so no output is missed;
- :func:`start` lets the process exec; a command that cannot run raises
  :class:`StartError` with Docker's message and exit code (127 not found, 126
  cannot be invoked);
- :func:`kill`, :func:`resize`, :func:`state`, :func:`wait_exit` (async),
  :func:`stop` (async: stop signal, then SIGKILL).

Files the monitor keeps in the bundle: ``monitor.pid``, ``monitor.sock`` (the
control socket, framed protocol in rust/monitor/src/proto.rs), ``state.json``,
``monitor.log`` (its own diagnostics) and, once the process has exited and its
output is drained, ``exit.json`` (exitCode — 128+n for a signal —, signal,
oomKilled, startedAt, finishedAt, error), written atomically (temp + rename, and
fsynced right after waiting clients are told); the monitor then removes the
socket and exits. ``state()`` reconciles a monitor that died without an exit
record (``monitorDied``).

Security: seccomp_profile() gives Docker's default filter for a capability set
(the spec's ``seccomp``); capabilities are limited to those the engine holds
(``--privileged`` in a sandbox gets what there is). The container's output goes to the spec's
``logPath`` in Docker's json-file format, and live to attached clients.

Exec into a running container: :func:`exec_create` (``berth-monitor exec <bundle>
<exec-dir>``) makes a process that setns()es into the container's namespaces and
joins its cgroups; the same start/attach/kill/resize/state/wait_exit functions
then take the exec directory. Exec output is not logged (as in Docker).

Everything here is synchronous and quick (a socket round trip) except
:func:`wait_exit`, :func:`stop` and :func:`attach_async`; the daemon can call the
synchronous ones from its loop or through ``asyncio.to_thread``
(:func:`spawn_monitor` waits for the container's setup: use a thread).
"""

from .attach import AsyncAttachment, Attachment, attach, attach_async
from .monitor import (MonitorDied, MonitorHandle, StartError, exec_create, kill, monitor_binary,
                      resize, spawn_monitor, start, start_async, state, stop, wait_exit,
                      wait_exit_sync)
from .spec import (ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_PATH,
                   DEFAULT_READONLY_PATHS, capabilities, read_spec, seccomp_profile, signal_number,
                   write_spec)

__all__ = [
    "ALL_CAPABILITIES", "AsyncAttachment", "Attachment", "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS", "DEFAULT_PATH", "DEFAULT_READONLY_PATHS", "MonitorDied",
    "MonitorHandle", "StartError", "attach", "attach_async", "capabilities", "exec_create",
    "kill", "monitor_binary", "read_spec", "resize", "seccomp_profile", "signal_number", "spawn_monitor", "start",
    "start_async",
    "state", "stop", "wait_exit", "wait_exit_sync", "write_spec",
]
