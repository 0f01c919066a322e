"""One error root with categories.

The daemon maps a category to an HTTP status code (``status``); the CLI maps the
daemon's answer to an exit code. Messages are written for the user: they name the
object and the cause, the way Docker's do.
"""


class BerthError(Exception):
    """Root of every error berth raises on purpose."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(BerthError):
    status = 400


class Unauthorized(BerthError):
    status = 401


class Forbidden(BerthError):
    status = 403


class NotFound(BerthError):
    status = 404


class Conflict(BerthError):
    status = 409


class NotModified(BerthError):
    status = 304


class Unavailable(BerthError):
    status = 503


class SystemError_(BerthError):
    """An engine-side failure (I/O, kernel, corrupted state): HTTP 500."""

    status = 500
