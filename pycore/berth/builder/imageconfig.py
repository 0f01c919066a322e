"""Image configs as Docker's classic builder writes them: the ``config``
section in Docker's field order, ``history`` entries with ``created_by`` like
``/bin/sh -c #(nop)  ENV A=1``, ``rootfs.diff_ids``, top-level keys sorted."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from berth.images import LayerBlob
from berth.images.timefmt import format_rfc3339nano
from berth.snapshots import chain_ids

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's container.Config fields, in order; None: always written (null when
# unset), "omit": written only when set.
_FIELDS: list[tuple[str, Any]] = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("ExposedPorts", "omit"), ("Tty", False),
    ("OpenStdin", False), ("StdinOnce", False), ("Env", None), ("Cmd", None),
    ("Healthcheck", "omit"), ("ArgsEscaped", "omit"), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", "omit"),
    ("MacAddress", "omit"), ("OnBuild", None), ("Labels", None), ("StopSignal", "omit"),
    ("StopTimeout", "omit"), ("Shell", "omit"),
]


def ordered_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rest = dict(config)
    for key, default in _FIELDS:
        value = rest.pop(key, None)
        if default == "omit":
            if value not in (None, "", False, {}, []):
                out[key] = value
        else:
            out[key] = value if value is not None else default
    out.update(rest)
    return out


@dataclass
class ImageState:
    """A stage's image as its steps build it."""

    image_id: str = ""                    # "" for scratch before the first step
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[LayerBlob] = field(default_factory=list)
    architecture: str = "amd64"
    os: str = "linux"
    variant: str = ""
    author: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # os.version, os.features

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def chains(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def top_chain(self) -> str | None:
        chains = self.chains
        return chains[-1] if chains else None

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pair in self.config.get("Env") or []:
            key, _, value = pair.partition("=")
            out[key] = value
        return out

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def copy(self) -> "ImageState":
        return ImageState(self.image_id, copy.deepcopy(self.config), list(self.history),
                          list(self.layers), self.architecture, self.os, self.variant,
                          self.author, dict(self.extra))

    @classmethod
    def from_config(cls, image_id: str, raw: dict[str, Any], layers: list[LayerBlob]) -> "ImageState":
        extra = {k: raw[k] for k in ("os.version", "os.features") if k in raw}
        return cls(image_id=image_id, config=copy.deepcopy(raw.get("config") or {}),
                   history=list(raw.get("history") or []), layers=list(layers),
                   architecture=raw.get("architecture") or "amd64", os=raw.get("os") or "linux",
                   variant=raw.get("variant") or "", author=raw.get("author") or "", extra=extra)

    def set_default_path(self) -> None:
        env = list(self.config.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env):
            env.append("PATH=" + DEFAULT_PATH)
        self.config["Env"] = env

    def child_config(self, created_by: str, created_ns: int, layer: LayerBlob | None,
                     comment: str = "") -> tuple[bytes, list[LayerBlob]]:
        """The config of the image one step makes on top of this one (the
        step's changes already applied to ``self.config``)."""
        config = dict(self.config)
        config["Image"] = self.image_id
        history = {"created": format_rfc3339nano(created_ns), "created_by": created_by}
        if self.author:
            history["author"] = self.author
        if comment:
            history["comment"] = comment
        if layer is None:
            history["empty_layer"] = True
        layers = self.layers + ([layer] if layer is not None else [])
        doc: dict[str, Any] = {"architecture": self.architecture}
        if self.author:
            doc["author"] = self.author
        doc["config"] = ordered_config(config)
        doc["created"] = format_rfc3339nano(created_ns)
        doc["history"] = self.history + [history]
        doc["os"] = self.os
        doc.update(self.extra)
        doc["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in layers]}
        if self.variant:
            doc["variant"] = self.variant
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), layers


def go_quote(value: str) -> str:
    """Go's %q of a string (close to JSON for text)."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote_list(values: list[str] | None) -> str:
    """Go's %q of a []string: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(v) for v in (values or [])) + "]"


def go_list(values: list[str] | None) -> str:
    """Go's %v of a []string: ``[a b]``."""
    return "[" + " ".join(values or []) + "]"


def nop(shell: list[str], comment: str) -> str:
    """created_by of a metadata step (two spaces, as Docker writes it)."""
    return " ".join(shell + ["#(nop) ", comment])


def nop_single(shell: list[str], comment: str) -> str:
    """created_by of WORKDIR/COPY/ADD (one space)."""
    return " ".join(shell + ["#(nop) " + comment])
