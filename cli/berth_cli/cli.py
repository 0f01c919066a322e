"""What a command runs with: the environment, global options and the API client."""

from .env import DEFAULT_HOST, DEFAULT_ROOT, Env


class Cli:
    def __init__(self, env: Env, host: str | None = None, debug: bool = False,
                 config_dir: str | None = None):
        self.env = env
        self.host = host or env.get("BERTH_HOST") or DEFAULT_HOST
        self.root = env.get("BERTH_ROOT") or DEFAULT_ROOT
        self.debug = debug
        self.config_dir = config_dir or env.config_dir
        self._client = None

    @property
    def out(self):
        return self.env.out

    @property
    def err(self):
        return self.env.err

    def now(self) -> float:
        return self.env.now()

    @property
    def autostart_enabled(self) -> bool:
        return (self.env.get("BERTH_NO_AUTOSTART") or "0").lower() in ("0", "false", "no")

    @property
    def client(self):
        if self._client is None:
            from .client import APIClient
            self._client = APIClient(self.host,
                                     autostart=self._start_daemon if self.autostart_enabled else None,
                                     debug=self.log if self.debug else None)
        return self._client

    def _start_daemon(self) -> None:
        from .autostart import start_daemon
        start_daemon(self.host, self._client.socket, self.root, self.env.environ,
                     notify=self.log if self.debug else None)

    def log(self, message: str) -> None:
        """A debug line on stderr (-D)."""
        self.env.err.write(f"DEBU[0000] {message}\n")
        self.env.err.flush()

    def confirm(self, message: str) -> bool:
        """docker's prompt.Confirm: "<message> [y/N] ", yes only for y/Y."""
        self.out.write(message + " [y/N] ")
        self.out.flush()
        return self.env.stdin.readline().strip().lower() == "y"
