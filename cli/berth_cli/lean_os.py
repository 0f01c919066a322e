"""The os functions the frequent commands need, taken from ``posix`` (the C module
behind ``os``) so that they do not import ``os``.

Importing os costs about 4 million instructions at start-up, mostly building the
collections ABCs behind ``os.environ``: a quarter of the interpreter's own start,
on every `berth run`. Modules on the hot paths (run, create, start, ps...) use
these; anything else may import os as usual.
"""

import posix
from posix import (O_CLOEXEC, O_CREAT, O_NONBLOCK, O_TRUNC, O_WRONLY, close,  # noqa: F401
                   fstat, get_terminal_size, isatty, lseek, open, pipe2, read, sendfile,
                   stat, unlink, write)

SEEK_CUR = 1
devnull = "/dev/null"


def environ() -> dict[str, str]:
    """A copy of the process environment, decoded as ``os.environ`` decodes it."""
    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in posix.environ.items()}


def exists(path: str) -> bool:
    try:
        stat(path)
    except (OSError, ValueError):
        return False
    return True


def abspath(path: str) -> str:
    """os.path.abspath (rare on the hot paths: a relative bind source)."""
    import os.path
    return os.path.abspath(path)


def exit_now(code: int) -> None:
    """os._exit: end the process without the interpreter's clean-up."""
    posix._exit(code)
