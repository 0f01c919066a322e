"""Registry credentials in a Docker-compatible ``config.json``.

berth keeps its own file (``<config dir>/config.json``, default
``~/.berth``) in Docker's format: ``auths`` maps a registry to
``{"auth": base64("user:password")}`` or an ``identitytoken``;
``credsStore`` / ``credHelpers`` name ``docker-credential-*`` helpers, which
are used when configured. Reading falls back to Docker's own file
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), so a user
logged in with docker can pull with berth.

Writes are atomic (temp file, fsync, rename) and keep every other key.
"""

from __future__ import annotations

import base64
import json
import os

DOCKER_HUB = "docker.io"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
CONFIG_FILE = "config.json"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


class CredentialsError(Exception):
    pass


def registry_host(address: str) -> str:
    """``https://x:5000/v2/``, ``x:5000`` -> ``x:5000``; Hub names -> ``docker.io``."""
    address = (address or "").strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    host = address.split("/", 1)[0]
    if not host or host in _HUB_NAMES:
        return DOCKER_HUB
    return host


def server_key(host: str) -> str:
    """The key Docker writes a registry under: Hub is a URL, others are hosts."""
    return DOCKER_HUB_KEY if registry_host(host) == DOCKER_HUB else registry_host(host)


def docker_config_dir(environ: dict[str, str]) -> str:
    return environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "/root"), ".docker")


class ConfigFile:
    def __init__(self, directory: str, environ: dict[str, str] | None = None):
        self.directory = directory
        self.path = os.path.join(directory, CONFIG_FILE)
        self.environ = environ  # for credential helpers (their PATH)

    def load(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsError(f"cannot read {self.path}: {e.strerror}") from None
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise CredentialsError(f"{self.path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{self.path} is not a JSON object")
        return data

    def save(self, data: dict) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # -- lookups ---------------------------------------------------------
    @staticmethod
    def _find_key(auths: dict, host: str) -> str | None:
        """Docker's matching: the exact key, else any key whose host part
        (scheme and path stripped) is the registry's."""
        wanted = server_key(host)
        if wanted in auths:
            return wanted
        for key in auths:
            if registry_host(key) == registry_host(host):
                return key
        return None

    def helper_for(self, data: dict, host: str) -> str | None:
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if registry_host(key) == registry_host(host) and isinstance(name, str) and name:
                    return name
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, host: str) -> dict[str, str] | None:
        data = self.load()
        helper = self.helper_for(data, host)
        if helper:
            found = _helper_get(helper, server_key(host), self.environ)
            if found:
                return found
        auths = data.get("auths")
        if not isinstance(auths, dict):
            return None
        key = self._find_key(auths, host)
        entry = auths.get(key) if key else None
        if not isinstance(entry, dict):
            return None
        out = {"serveraddress": key or server_key(host)}
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise CredentialsError(f"{self.path}: invalid auth entry for {key}") from None
            out["username"], out["password"] = user, password
        for field in ("username", "password"):
            if isinstance(entry.get(field), str) and entry[field] and field not in out:
                out[field] = entry[field]
        if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
            out["identitytoken"] = entry["identitytoken"]
        if len(out) == 1:
            return None
        return out

    def store(self, host: str, username: str, password: str, identity_token: str = "") -> None:
        data = self.load()
        helper = self.helper_for(data, host)
        if helper:
            secret = identity_token or password
            _helper_run(helper, self.environ, "store", json.dumps({
                "ServerURL": server_key(host),
                "Username": "<token>" if identity_token else username,
                "Secret": secret}).encode())
            return
        auths = data.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        key = self._find_key(auths, host) or server_key(host)
        entry = {"auth": base64.b64encode(
            f"{username}:{'' if identity_token else password}".encode()).decode()}
        if identity_token:
            entry["identitytoken"] = identity_token
        auths[key] = entry
        data["auths"] = auths
        self.save(data)

    def erase(self, host: str) -> bool:
        """Forget a registry's credentials; False when there were none."""
        data = self.load()
        helper = self.helper_for(data, host)
        removed = False
        if helper:
            try:
                _helper_run(helper, self.environ, "erase", server_key(host).encode())
                removed = True
            except CredentialsError:
                pass
        auths = data.get("auths")
        if isinstance(auths, dict):
            key = self._find_key(auths, host)
            if key is not None:
                del auths[key]
                self.save(data)
                removed = True
        return removed


def _helper_run(helper: str, environ: dict[str, str] | None, action: str, payload: bytes) -> bytes:
    import shutil
    import subprocess
    program = f"docker-credential-{helper}"
    path = shutil.which(program, path=(environ or os.environ).get("PATH"))
    if path is None:
        raise CredentialsError(f"credential helper {program} is not installed")
    try:
        proc = subprocess.run([path, action], input=payload, capture_output=True, timeout=60,
                              env=environ)
    except FileNotFoundError:
        raise CredentialsError(f"credential helper {program} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program} did not answer") from None
    if proc.returncode != 0:
        message = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        raise CredentialsError(f"{program} {action}: {message or f'exit {proc.returncode}'}")
    return proc.stdout


def _helper_get(helper: str, server: str, environ: dict[str, str] | None) -> dict[str, str] | None:
    try:
        raw = _helper_run(helper, environ, "get", server.encode())
    except CredentialsError as e:
        if "credentials not found" in str(e).lower():
            return None
        raise
    try:
        data = json.loads(raw)
    except ValueError:
        raise CredentialsError(f"docker-credential-{helper} get: invalid answer") from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if not secret:
        return None
    if user == "<token>":
        return {"serveraddress": server, "identitytoken": secret}
    return {"serveraddress": server, "username": user, "password": secret}


def lookup(config_dir: str, environ: dict[str, str], host: str) -> dict[str, str] | None:
    """Saved credentials for ``host``: berth's file, then Docker's."""
    found = ConfigFile(config_dir, environ).get(host)
    if found is None:
        docker_dir = docker_config_dir(environ)
        if os.path.abspath(docker_dir) != os.path.abspath(config_dir):
            found = ConfigFile(docker_dir, environ).get(host)
    return found


def encode_header(creds: dict[str, str] | None) -> str:
    """``X-Registry-Auth``: base64url JSON (``{}`` when anonymous)."""
    return base64.urlsafe_b64encode(json.dumps(creds or {}).encode()).decode()
