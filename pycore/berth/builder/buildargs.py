"""Build arguments and their scopes, as Docker has them.

- ``--build-arg`` values override ``ARG`` defaults; a ``--build-arg NAME``
  whose value the client could not find arrives as None: known, but unset.
- ARGs before the first FROM are global ("meta") args: usable in FROM lines;
  inside a stage only once redeclared (``ARG NAME``), then with the global
  value unless ``--build-arg`` gives another.
- The proxy args (``HTTP_PROXY`` ...) are predefined: usable without an ARG,
  kept out of the image history and cache key unless the Dockerfile refers
  to them. The platform args (``TARGETARCH``, ``BUILDPLATFORM`` ...) have
  values without ``--build-arg``, as BuildKit gives them.
- ENV of the same name wins over an ARG.
"""

from __future__ import annotations

BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


def platform_args(target: dict[str, str], build: dict[str, str]) -> dict[str, str]:
    def spec(p: dict[str, str]) -> str:
        return "/".join(x for x in (p["os"], p["architecture"], p.get("variant", "")) if x)
    return {
        "TARGETPLATFORM": spec(target), "TARGETOS": target["os"],
        "TARGETARCH": target["architecture"], "TARGETVARIANT": target.get("variant", ""),
        "BUILDPLATFORM": spec(build), "BUILDOS": build["os"],
        "BUILDARCH": build["architecture"], "BUILDVARIANT": build.get("variant", ""),
    }


class BuildArgs:
    """The args of one build: options, global ARGs and those used so far."""

    def __init__(self, options: dict[str, str | None], automatic: dict[str, str] | None = None):
        self.options = dict(options)
        self.automatic = dict(automatic or {})
        self.meta: dict[str, str | None] = {}
        self.consumed: set[str] = set()

    def add_meta(self, key: str, default: str | None) -> None:
        self.meta[key] = default
        self.consumed.add(key)

    def meta_value(self, key: str) -> str | None:
        if self.options.get(key) is not None:
            return self.options[key]
        if key in self.meta and self.meta[key] is not None:
            return self.meta[key]
        return self.automatic.get(key)

    def meta_env(self) -> dict[str, str]:
        """What FROM lines and global ARG defaults may refer to."""
        env = {k: v for k, v in self.automatic.items()}
        for key in self.meta:
            value = self.meta_value(key)
            if value is not None:
                env[key] = value
            else:
                env.pop(key, None)
        for key in BUILTIN_ARGS:
            if self.options.get(key) is not None:
                env[key] = self.options[key]  # type: ignore[assignment]
        return env

    def stage(self) -> "StageArgs":
        return StageArgs(self)

    def unused(self) -> list[str]:
        return sorted(k for k in self.options
                      if k not in self.consumed and k not in BUILTIN_ARGS)


class StageArgs:
    """The ARGs declared in one stage so far."""

    def __init__(self, build: BuildArgs):
        self.build = build
        self.declared: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def add(self, key: str, default: str | None) -> None:
        self.declared[key] = default
        self.build.consumed.add(key)

    def value(self, key: str) -> str | None:
        options = self.build.options
        if options.get(key) is not None:
            return options[key]
        default = self.declared.get(key)
        if default is not None:
            return default
        if key in self.build.meta or key in self.build.automatic:
            return self.build.meta_value(key)
        return None

    def allowed(self) -> dict[str, str]:
        """Declared args with a value, plus predefined args given as options."""
        out: dict[str, str] = {}
        for key in self.declared:
            value = self.value(key)
            if value is not None:
                out[key] = value
        for key in BUILTIN_ARGS:
            if key not in out and self.build.options.get(key) is not None:
                out[key] = self.build.options[key]  # type: ignore[assignment]
        return out

    def env_for(self, env: dict[str, str]) -> dict[str, str]:
        """Args that add to ``env`` (ENV wins over ARG)."""
        return {k: v for k, v in self.allowed().items() if k not in env}

    def for_history(self, env: dict[str, str]) -> list[str]:
        """``K=V`` of the args a RUN sees, sorted, predefined ones only when referenced."""
        out = []
        for key, value in self.env_for(env).items():
            if key in BUILTIN_ARGS and key not in self.referenced:
                continue
            out.append(f"{key}={value}")
        return sorted(out)
