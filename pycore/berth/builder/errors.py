"""Build errors: what a user did wrong (400 before the stream starts, an
``errorDetail`` in it afterwards), and a RUN whose command failed."""

from __future__ import annotations

from berth.errors import InvalidArgument


class BuildError(InvalidArgument):
    """A build cannot go on; the message names the instruction and the cause.
    ``code`` is the ``errorDetail.code`` the docker CLI exits with (0: none)."""

    code = 0


class RunFailed(BuildError):
    """A RUN command exited non-zero: Docker's message and exit code."""

    def __init__(self, command: list[str], exit_code: int):
        super().__init__(f"The command '{' '.join(command)}' returned a non-zero code: {exit_code}")
        self.code = exit_code


class BuildCancelled(BuildError):
    def __init__(self) -> None:
        super().__init__("Build cancelled")
