"""Exec instances (``docker exec``): kept in memory, as Docker keeps them, for
as long as their container exists."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument

from . import config as cfg


@dataclass
class ExecProcess:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    working_dir: str
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    privileged: bool
    detach_keys: str
    console_size: list[int] | None
    directory: str                 # the monitor's directory for this exec
    running: bool = False
    started: bool = False
    pid: int = 0
    exit_code: int | None = None
    #: Resolved once the process has exited and its exit is recorded.
    finished: Any = field(default=None, repr=False)

    @classmethod
    def from_body(cls, exec_id: str, container_id: str, bundle: str, body: Any) -> "ExecProcess":
        if not isinstance(body, dict):
            raise InvalidArgument("invalid exec config: the request body must be a JSON object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd) or not cmd \
                or not cmd[0]:
            raise InvalidArgument("No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidArgument("invalid exec Env: expected a list of strings")
        cfg.check_env(env)
        wd = body.get("WorkingDir") or ""
        if not isinstance(wd, str) or (wd and not wd.startswith("/")):
            raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an "
                                  "absolute path")
        user = body.get("User") or ""
        if not isinstance(user, str):
            raise InvalidArgument(f"invalid exec User: {user!r}")
        size = body.get("ConsoleSize")
        if size is not None and (not isinstance(size, list) or len(size) != 2
                                 or not all(isinstance(v, int) and v >= 0 for v in size)):
            raise InvalidArgument(f"invalid ConsoleSize {size!r}: expected [height, width]")
        return cls(id=exec_id, container_id=container_id, cmd=list(cmd), env=list(env), user=user,
                   working_dir=wd, tty=bool(body.get("Tty")),
                   attach_stdin=bool(body.get("AttachStdin")),
                   attach_stdout=bool(body.get("AttachStdout")),
                   attach_stderr=bool(body.get("AttachStderr")),
                   privileged=bool(body.get("Privileged")),
                   detach_keys=body.get("DetachKeys") or "", console_size=size,
                   directory=os.path.join(bundle, "execs", exec_id))

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0],
                              "arguments": self.cmd[1:], "privileged": self.privileged,
                              "user": self.user},
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }

    @property
    def command_line(self) -> str:
        return " ".join(self.cmd)
