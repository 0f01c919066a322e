"""What can go wrong in the CLI, and the exit code each maps to (in main)."""


class CLIError(Exception):
    """An error with a message for stderr and an exit code (docker's StatusError)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CLIError):
    """A bad flag or flag value: docker exits 125 for these."""

    def __init__(self, message: str):
        super().__init__(message, 125)


class ArgumentError(CLIError):
    """Wrong number of arguments or an unknown command: docker exits 1."""


class HelpRequested(Exception):
    """--help, or a command group called without a subcommand."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class Cancelled(Exception):
    """The user declined a confirmation prompt: docker exits 0 silently."""


class ConnectionFailed(CLIError):
    """Nothing usable answers on the daemon socket."""


class APIError(CLIError):
    """The daemon answered with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Error response from daemon: {message}")
        self.status = status
        self.explanation = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class StreamError(CLIError):
    """An error reported inside a JSON message stream (import, load, pull...)."""


class TemplateError(CLIError):
    """A --format template that does not parse or does not execute."""
