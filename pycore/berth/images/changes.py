"""Dockerfile instructions applied to an image config (``import --change``).

Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR here, with the Dockerfile's rules: JSON
array or shell form for CMD/ENTRYPOINT, ``key=value`` pairs (or the legacy
``key value``) for ENV/LABEL, and shell-like quoting and ``$VAR`` expansion
against the config's environment.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from typing import Any

from berth.errors import InvalidArgument

VALID_CHANGE_COMMANDS = frozenset({
    "cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild",
    "stopsignal", "user", "volume", "workdir",
})
_NOT_ONBUILD = frozenset({"onbuild", "from", "maintainer"})
ESCAPE = "\\"


# -- word splitting and expansion -------------------------------------------

def split_words_raw(rest: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words
    (the Dockerfile parser's first pass for ENV and LABEL)."""
    words: list[str] = []
    word = ""
    quote = ""
    in_word = False
    blank_ok = False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == ESCAPE and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        elif ch.isspace():
            if in_word and (blank_ok or word):
                words.append(word)
            word, in_word, blank_ok = "", False, False
        else:
            in_word = True
            if ch in "'\"":
                quote = ch
                blank_ok = True
            if ch == ESCAPE:
                if i + 1 == n:
                    i += 1
                    continue
                word += ch
                i += 1
                ch = rest[i]
            word += ch
        i += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


class _Expander:
    """Shell-like word processing: quotes removed, escapes applied, ``$VAR``,
    ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``, ``${VAR:?msg}``."""

    _NAME_RE = re.compile(r"[A-Za-z0-9_]+")

    def __init__(self, env: dict[str, str]):
        self.env = env

    def words(self, text: str, split: bool) -> list[str]:
        out: list[str] = []
        word = ""
        have_word = False
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if split and ch.isspace():
                if have_word:
                    out.append(word)
                word, have_word = "", False
                i += 1
                continue
            have_word = True
            if ch == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise InvalidArgument(f"unexpected end of statement while looking for matching single-quote in {text!r}")
                word += text[i + 1:end]
                i = end + 1
            elif ch == '"':
                i += 1
                while True:
                    if i >= n:
                        raise InvalidArgument(f"unexpected end of statement while looking for matching double-quote in {text!r}")
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == ESCAPE and i + 1 < n and text[i + 1] in '"$' + ESCAPE:
                        word += text[i + 1]
                        i += 2
                    elif c == "$":
                        value, i = self._dollar(text, i)
                        word += value
                    else:
                        word += c
                        i += 1
            elif ch == ESCAPE:
                if i + 1 < n:
                    word += text[i + 1]
                i += 2
            elif ch == "$":
                value, i = self._dollar(text, i)
                word += value
            else:
                word += ch
                i += 1
        if have_word:
            out.append(word)
        return out

    def word(self, text: str) -> str:
        words = self.words(text, split=False)
        return words[0] if words else ""

    def _dollar(self, text: str, i: int) -> tuple[str, int]:
        """Expand the ``$`` at ``text[i]``; returns (value, next index)."""
        n = len(text)
        if i + 1 < n and text[i + 1] == "{":
            end = self._closing_brace(text, i + 2)
            body = text[i + 2:end]
            m = self._NAME_RE.match(body)
            if not m:
                raise InvalidArgument(f"bad substitution: ${{{body}}}")
            name, rest = m.group(0), body[m.end():]
            value = self.env.get(name)
            if rest == "":
                return value or "", end + 1
            colon = rest.startswith(":")
            op, arg = (rest[1:2], rest[2:]) if colon else (rest[0], rest[1:])
            is_set = value is not None and (value != "" or not colon)
            if op == "-":
                return (value if is_set else self.word(arg)) or "", end + 1
            if op == "+":
                return (self.word(arg) if is_set else ""), end + 1
            if op == "?":
                if not is_set:
                    raise InvalidArgument(f"{name}: {self.word(arg) or 'is not allowed to be unset'}")
                return value or "", end + 1
            raise InvalidArgument(f"unsupported modifier ({op}) in substitution: ${{{body}}}")
        m = self._NAME_RE.match(text, i + 1)
        if not m:
            return "$", i + 1
        return self.env.get(m.group(0), ""), m.end()

    @staticmethod
    def _closing_brace(text: str, start: int) -> int:
        depth = 1
        for j in range(start, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return j
        raise InvalidArgument(f"missing '}}' in {text!r}")


# -- helpers ------------------------------------------------------------------

def _env_map(config: dict[str, Any]) -> dict[str, str]:
    env = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def parse_json_or_shell(rest: str) -> list[str] | None:
    """The JSON array form, or None for the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise InvalidArgument("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _name_values(keyword: str, rest: str, expander: _Expander) -> list[tuple[str, str]]:
    words = split_words_raw(rest)
    if not words:
        raise InvalidArgument(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        # Legacy form "KEY name value with spaces".
        parts = re.split(r"\s+", rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise InvalidArgument(f"{keyword} must have two arguments")
        return [(expander.word(parts[0]), expander.word(parts[1]))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        key, value = word.split("=", 1)
        key = expander.word(key)
        if not key:
            raise InvalidArgument(f"{keyword} names can not be blank")
        pairs.append((key, expander.word(value)))
    return pairs


_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?$")


def parse_exposed_ports(specs: list[str]) -> list[str]:
    ports = []
    for spec in specs:
        m = _PORT_RE.match(spec)
        if not m:
            raise InvalidArgument(f"invalid containerPort: {spec}")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else start
        proto = (m.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        if not (0 < start <= 65535 and 0 < end <= 65535) or end < start:
            raise InvalidArgument(f"invalid range specified for container port: {spec}")
        ports.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return ports


def validate_signal(value: str) -> str:
    """A signal name (``SIGTERM``, ``term``, ``SIGRTMIN+3``) or number; returned as given."""
    if value.isdigit():
        if not 0 < int(value) <= signal.SIGRTMAX:
            raise InvalidArgument(f"Invalid signal: {value}")
        return value
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in signal.Signals.__members__ or re.match(r"^SIGRT(MIN|MAX)([+-]\d+)?$", name):
        return value
    raise InvalidArgument(f"Invalid signal: {value}")


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(value: str) -> int:
    """Go ``time.ParseDuration`` -> nanoseconds."""
    text = value.strip()
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    pos, total = 0, 0.0
    if not text:
        raise InvalidArgument(f"time: invalid duration {value!r}")
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if not m:
            raise InvalidArgument(f"time: invalid duration {value!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * int(total)


# -- the instructions -----------------------------------------------------------

class _State:
    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.cmd_set = False

    @property
    def expander(self) -> _Expander:
        return _Expander(_env_map(self.config))


def _cmd(state: _State, rest: str, _raw: str) -> None:
    args = parse_json_or_shell(rest)
    state.config["Cmd"] = args if args is not None else ["/bin/sh", "-c", rest]
    state.cmd_set = True


def _entrypoint(state: _State, rest: str, _raw: str) -> None:
    args = parse_json_or_shell(rest)
    if args is None:
        state.config["Entrypoint"] = ["/bin/sh", "-c", rest] if rest else None
    else:
        state.config["Entrypoint"] = args
    if not state.cmd_set:
        # A new entrypoint drops an inherited CMD, as in a Dockerfile.
        state.config["Cmd"] = None


def _env(state: _State, rest: str, _raw: str) -> None:
    pairs = _name_values("ENV", rest, state.expander)
    env = list(state.config.get("Env") or [])
    for key, value in pairs:
        env = [e for e in env if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
    state.config["Env"] = env


def _label(state: _State, rest: str, _raw: str) -> None:
    pairs = _name_values("LABEL", rest, state.expander)
    labels = dict(state.config.get("Labels") or {})
    labels.update(pairs)
    state.config["Labels"] = labels


def _expose(state: _State, rest: str, _raw: str) -> None:
    specs = state.expander.words(rest, split=True)
    if not specs:
        raise InvalidArgument("EXPOSE requires at least one argument")
    ports = dict(state.config.get("ExposedPorts") or {})
    for port in parse_exposed_ports(specs):
        ports[port] = {}
    state.config["ExposedPorts"] = ports


def _user(state: _State, rest: str, _raw: str) -> None:
    words = state.expander.words(rest, split=True)
    if len(words) != 1:
        raise InvalidArgument("USER requires exactly one argument")
    state.config["User"] = words[0]


def _workdir(state: _State, rest: str, _raw: str) -> None:
    words = state.expander.words(rest, split=False)
    if len(words) != 1 or not words[0]:
        raise InvalidArgument("WORKDIR requires exactly one argument")
    path = words[0]
    if not path.startswith("/"):
        path = posixpath.join("/", state.config.get("WorkingDir") or "/", path)
    state.config["WorkingDir"] = posixpath.normpath(path)


def _volume(state: _State, rest: str, _raw: str) -> None:
    paths = parse_json_or_shell(rest)
    if paths is None:
        paths = state.expander.words(rest, split=True)
    else:
        paths = [state.expander.word(p) if p else p for p in paths]
    if not paths:
        raise InvalidArgument("VOLUME requires at least one argument")
    volumes = dict(state.config.get("Volumes") or {})
    for path in paths:
        if not path.strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[path] = {}
    state.config["Volumes"] = volumes


def _stopsignal(state: _State, rest: str, _raw: str) -> None:
    words = state.expander.words(rest, split=True)
    if len(words) != 1:
        raise InvalidArgument("STOPSIGNAL requires exactly one argument")
    state.config["StopSignal"] = validate_signal(words[0])


def _onbuild(state: _State, rest: str, _raw: str) -> None:
    if not rest:
        raise InvalidArgument("ONBUILD requires at least one argument")
    trigger = rest.split(None, 1)[0].lower()
    if trigger in _NOT_ONBUILD:
        raise InvalidArgument(f"{trigger.upper()} isn't allowed as an ONBUILD trigger")
    state.config["OnBuild"] = list(state.config.get("OnBuild") or []) + [rest]


def _healthcheck(state: _State, rest: str, _raw: str) -> None:
    flags: dict[str, str] = {}
    text = rest.strip()
    while (m := re.match(r"--([A-Za-z-]+)(=(\S*))?(\s+|$)", text)):
        flag = m.group(1)
        if flag not in ("interval", "timeout", "start-period", "start-interval", "retries"):
            raise InvalidArgument(f"Unknown flag: {flag}")
        if m.group(2) is None:
            raise InvalidArgument(f"HEALTHCHECK flag --{flag} needs a value (--{flag}=VALUE)")
        flags[flag] = m.group(3)
        text = text[m.end():]
    if not text:
        raise InvalidArgument("Missing command after HEALTHCHECK")
    parts = text.split(None, 1)
    kind = parts[0].upper()
    if kind == "NONE":
        if len(parts) > 1 or flags:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD":
        raise InvalidArgument(f"Unknown type {parts[0]!r} in HEALTHCHECK (try CMD)")
    cmd_rest = parts[1].strip() if len(parts) > 1 else ""
    if not cmd_rest:
        raise InvalidArgument("Missing command after HEALTHCHECK CMD")
    args = parse_json_or_shell(cmd_rest)
    test = ["CMD", *args] if args is not None else ["CMD-SHELL", cmd_rest]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in flags:
            ns = parse_duration(flags[flag])
            if ns != 0 and ns < 1_000_000:
                raise InvalidArgument(f"Interval {flag!r} cannot be less than 1ms")
            if ns:
                check[key] = ns
    if "retries" in flags:
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise InvalidArgument(f"invalid --retries value {flags['retries']!r}") from None
        if retries < 0:
            raise InvalidArgument("--retries cannot be negative")
        if retries:
            check["Retries"] = retries
    state.config["Healthcheck"] = check


_DISPATCH = {
    "cmd": _cmd, "entrypoint": _entrypoint, "env": _env, "label": _label,
    "expose": _expose, "user": _user, "workdir": _workdir, "volume": _volume,
    "stopsignal": _stopsignal, "onbuild": _onbuild, "healthcheck": _healthcheck,
}


def _instructions(changes: list[str]) -> list[str]:
    """Lines of the changes, with backslash continuations joined and blank
    lines and comments dropped."""
    lines: list[str] = []
    pending = ""
    for change in changes:
        for line in change.splitlines():
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith(ESCAPE):
                pending += stripped[:-1] + " "
                continue
            lines.append((pending + stripped).strip())
            pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def apply_changes(config: dict[str, Any] | None, changes: list[str]) -> dict[str, Any]:
    """Apply ``--change`` instructions to a container config (Docker's
    ``Config`` keys: Cmd, Entrypoint, Env, ...); returns the new config.
    All instructions are checked before any is applied."""
    lines = _instructions(changes)
    for line in lines:
        keyword = line.split(None, 1)[0].lower()
        if keyword not in VALID_CHANGE_COMMANDS:
            raise InvalidArgument(f"{keyword} is not a valid change command")
    state = _State(json.loads(json.dumps(config or {})))
    for line in lines:
        parts = line.split(None, 1)
        keyword, rest = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
        _DISPATCH[keyword](state, rest, line)
    return state.config
