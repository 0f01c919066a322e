"""The flags `run` and `create` share, and their translation into the Engine API's
container config (docker's containerOptions and parse(), same names and messages).

The body sent to ``POST /containers/create`` has the docker CLI's shape, field for
field, so that berthd sees one request layout whichever client made it.
"""

from .. import lean_os
from ..args import BOOL, INT, LIST, STRING, Flag
from ..errors import CLIError

ULIMIT_NAMES = frozenset(("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                          "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"))
_BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_PROPAGATIONS = frozenset(("private", "rprivate", "shared", "rshared", "slave", "rslave"))
_PORT_PROTOCOLS = ("tcp", "udp", "sctp")


class ParseError(CLIError):
    """A flag combination docker rejects after parsing (``docker: ...`` with exit 125)."""


# -- flag value types (each raises ValueError with docker's reason) ---------------------

def ram_in_bytes(value: str) -> int:
    """units.RAMInBytes: "64m", "1.5g", "512", "2KiB" (binary multiples)."""
    sep = max(value.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{value}'")
    number, suffix = (value[:sep + 1], value[sep + 1:]) if value[sep] != " " else \
        (value[:sep], value[sep + 1:])
    try:
        if "_" in number or number.strip() != number:
            raise ValueError
        size = float(number)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax') from None
    if size < 0:
        raise ValueError(f"invalid size: '{value}'")
    if not suffix:
        return int(size)
    if len(suffix) > 3:
        raise ValueError(f"invalid suffix: '{suffix}'")
    suffix = suffix.lower()
    if suffix[0] == "b":
        if len(suffix) > 1:
            raise ValueError(f"invalid suffix: '{suffix}'")
        return int(size)
    if (suffix[0] not in "kmgtp" or (len(suffix) == 2 and suffix[1] != "b")
            or (len(suffix) == 3 and suffix[1:] != "ib")):
        raise ValueError(f"invalid suffix: '{suffix}'")
    return int(size * _BINARY_UNITS[suffix[0]])


def swap_bytes(value: str) -> int:
    """MemSwapBytes: like a size, and -1 means unlimited swap."""
    return -1 if value == "-1" else ram_in_bytes(value)


def nano_cpus(value: str) -> int:
    """opts.ParseCPUs: a decimal number of CPUs, in billionths."""
    from fractions import Fraction
    try:
        cpus = Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {value} as a rational number") from None
    nano = cpus * 1_000_000_000
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)


def parse_ulimit(value: str) -> dict:
    """units.ParseUlimit: name=soft[:hard]."""
    name, eq, limits = value.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {value}")
    if name not in ULIMIT_NAMES:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two, "
                         "`soft[:hard]`")
    try:
        soft = int(parts[0], 10)
        hard = int(parts[1], 10) if len(parts) == 2 else soft
    except ValueError:
        bad = next(p for p in parts if not _is_int(p))
        raise ValueError(f'strconv.ParseInt: parsing "{bad}": invalid syntax') from None
    if hard != -1 and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


def _is_int(text: str) -> bool:
    try:
        int(text, 10)
        return True
    except ValueError:
        return False


def check_env(value: str) -> str:
    if value.partition("=")[0] == "":
        raise ValueError(f"invalid environment variable: {value}")
    return value


def check_label(value: str) -> str:
    key = value.partition("=")[0].lstrip(" \t")
    if not key:
        raise ValueError(f"invalid label '{value}': empty name")
    if " " in key or "\t" in key:
        raise ValueError(f"label '{key}' contains whitespaces")
    return value


def check_attach(value: str) -> str:
    lowered = value.lower()
    if lowered not in ("stdin", "stdout", "stderr"):
        raise ValueError("valid streams are STDIN, STDOUT and STDERR")
    return lowered


def go_duration(value: str) -> int:
    """A Go duration flag ("30s", "1m30s") as nanoseconds."""
    from .system import parse_go_duration
    seconds = parse_go_duration(value) if value != "0" else 0.0
    if seconds is None:
        raise ValueError(f'time: invalid duration "{value}"')
    return int(round(seconds * 1_000_000_000))


_GO_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_GO_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def _go_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(text)


def parse_mount(value: str) -> dict:
    """opts.MountOpt as docker 28 parses it: --mount type=bind|volume|tmpfs,source=...,target=..."""
    import csv
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration) as e:
        raise ValueError(str(e) or "EOF") from None
    mount: dict = {"Type": "volume"}
    sections: dict[str, dict] = {}

    def section(name: str) -> dict:
        if name not in sections:
            sections[name] = {"DriverConfig": {}} if name == "VolumeOptions" else {}
        return sections[name]

    def parsed_bool(key: str, val: str, message: str | None = None) -> bool:
        try:
            return _go_bool(val)
        except ValueError:
            raise ValueError(message or f"invalid value for {key}: {val}") from None

    for field in fields:
        key, eq, val = field.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
            elif key == "volume-nocopy":
                section("VolumeOptions")["NoCopy"] = True
            elif key == "bind-nonrecursive":
                section("BindOptions")["NonRecursive"] = True
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
            continue
        if key == "type":
            mount["Type"] = val.lower()
        elif key in ("source", "src"):
            mount["Source"] = lean_os.abspath(val) if val.startswith(".") else val
        elif key in ("target", "dst", "destination"):
            mount["Target"] = val
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = parsed_bool(key, val)
        elif key == "consistency":
            mount["Consistency"] = val.lower()
        elif key == "bind-propagation":
            section("BindOptions")["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            section("BindOptions")["NonRecursive"] = parsed_bool(key, val)
        elif key == "bind-recursive":
            options = {"enabled": None, "disabled": "NonRecursive", "writable": "ReadOnlyNonRecursive",
                       "readonly": "ReadOnlyForceRecursive"}
            if val not in options:
                raise ValueError(f'invalid value for {key}: {val} (must be "enabled", "disabled", '
                                 '"writable", or "readonly")')
            if options[val]:
                section("BindOptions")[options[val]] = True
        elif key == "volume-subpath":
            section("VolumeOptions")["Subpath"] = val
        elif key == "volume-nocopy":
            section("VolumeOptions")["NoCopy"] = parsed_bool(key, val, f"invalid value for volume-nocopy: {val}")
        elif key == "volume-label":
            k, _, v = val.partition("=")
            labels = section("VolumeOptions").setdefault("Labels", {})
            if k:
                labels[k] = v
        elif key == "volume-driver":
            section("VolumeOptions")["DriverConfig"]["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            options = section("VolumeOptions")["DriverConfig"].setdefault("Options", {})
            if k:
                options[k] = v
        elif key == "tmpfs-size":
            try:
                section("TmpfsOptions")["SizeBytes"] = ram_in_bytes(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                section("TmpfsOptions")["Mode"] = int(val, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    kind = mount["Type"]
    if not kind:
        raise ValueError("type is required")
    if not mount.get("Target"):
        raise ValueError("target is required")
    for name, owner in (("VolumeOptions", "volume"), ("BindOptions", "bind"), ("TmpfsOptions", "tmpfs")):
        if name in sections and kind != owner:
            raise ValueError(f"cannot mix '{owner}-*' options with mount type '{kind}'")
    bind = sections.get("BindOptions", {})
    if bind.get("ReadOnlyNonRecursive") and not mount.get("ReadOnly"):
        raise ValueError("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction")
    if bind.get("ReadOnlyForceRecursive"):
        if not mount.get("ReadOnly"):
            raise ValueError("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction")
        if bind.get("Propagation") != "rprivate":
            raise ValueError("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be "
                             "specified in conjunction")
    # the field order of docker's mount.Mount as it marshals it, empty fields left out
    result = {"Type": kind}
    for key in ("Source", "Target", "ReadOnly", "Consistency"):
        if mount.get(key):
            result[key] = mount[key]
    order = {"BindOptions": ("Propagation", "NonRecursive", "CreateMountpoint", "ReadOnlyNonRecursive",
                             "ReadOnlyForceRecursive"),
             "VolumeOptions": ("NoCopy", "Labels", "Subpath", "DriverConfig"),
             "TmpfsOptions": ("SizeBytes", "Mode")}
    for name in ("BindOptions", "VolumeOptions", "TmpfsOptions"):
        if name in sections:
            result[name] = {k: sections[name][k] for k in order[name]
                            if sections[name].get(k) or k == "DriverConfig" and k in sections[name]}
    return result


# -- the flags --------------------------------------------------------------------------

def _flags() -> list[Flag]:
    s, i, b, lst = STRING, INT, BOOL, LIST
    return [
        Flag("add-host", None, lst, help="Add a custom host-to-IP mapping (host:ip)", type_name="list"),
        Flag("annotation", None, lst, help="Add an annotation to the container (passed through to the OCI runtime)",
             type_name="map"),
        Flag("attach", "a", lst, help="Attach to STDIN, STDOUT or STDERR", type_name="list", check=check_attach),
        Flag("blkio-weight", None, i, help="Block IO (relative weight), between 10 and 1000, or 0 to disable "
             "(default 0)", type_name="uint16"),
        Flag("cap-add", None, lst, help="Add Linux capabilities", type_name="list"),
        Flag("cap-drop", None, lst, help="Drop Linux capabilities", type_name="list"),
        Flag("cgroup-parent", None, s, help="Optional parent cgroup for the container"),
        Flag("cgroupns", None, s, help="Cgroup namespace to use (host|private)\n"
             "'host':    Run the container in the berth host's cgroup namespace\n"
             "'private': Run the container in its own private cgroup namespace\n"
             "'':        Use the cgroup namespace as configured by the\n"
             "           default-cgroupns-mode option on the daemon (default)"),
        Flag("cidfile", None, s, help="Write the container ID to the file"),
        Flag("cpu-period", None, i, help="Limit CPU CFS (Completely Fair Scheduler) period", type_name="int"),
        Flag("cpu-quota", None, i, help="Limit CPU CFS (Completely Fair Scheduler) quota", type_name="int"),
        Flag("cpu-rt-period", None, i, help="Limit CPU real-time period in microseconds", type_name="int"),
        Flag("cpu-rt-runtime", None, i, help="Limit CPU real-time runtime in microseconds", type_name="int"),
        Flag("cpu-shares", "c", i, help="CPU shares (relative weight)", type_name="int"),
        Flag("cpus", None, s, default=0, help="Number of CPUs", type_name="decimal", check=nano_cpus),
        Flag("cpuset-cpus", None, s, help="CPUs in which to allow execution (0-3, 0,1)"),
        Flag("cpuset-mems", None, s, help="MEMs in which to allow execution (0-3, 0,1)"),
        Flag("device", None, lst, help="Add a host device to the container", type_name="list"),
        Flag("device-cgroup-rule", None, lst, help="Add a rule to the cgroup allowed devices list",
             type_name="list"),
        Flag("dns", None, lst, help="Set custom DNS servers", type_name="list"),
        Flag("dns-option", None, lst, help="Set DNS options", type_name="list"),
        Flag("dns-search", None, lst, help="Set custom DNS search domains", type_name="list"),
        Flag("domainname", None, s, help="Container NIS domain name"),
        Flag("entrypoint", None, s, help="Overwrite the default ENTRYPOINT of the image"),
        Flag("env", "e", lst, help="Set environment variables", type_name="list", check=check_env),
        Flag("env-file", None, lst, help="Read in a file of environment variables", type_name="list"),
        Flag("expose", None, lst, help="Expose a port or a range of ports", type_name="list"),
        Flag("group-add", None, lst, help="Add additional groups to join", type_name="list"),
        Flag("health-cmd", None, s, help="Command to run to check health"),
        Flag("health-interval", None, s, default=0, type_name="duration", check=go_duration,
             help="Time between running the check (ms|s|m|h) (default 0s)"),
        Flag("health-retries", None, i, help="Consecutive failures needed to report unhealthy", type_name="int"),
        Flag("health-start-interval", None, s, default=0, type_name="duration", check=go_duration,
             help="Time between running the check during the start period (ms|s|m|h) (default 0s)"),
        Flag("health-start-period", None, s, default=0, type_name="duration", check=go_duration,
             help="Start period for the container to initialize before starting health-retries "
                  "countdown (ms|s|m|h) (default 0s)"),
        Flag("health-timeout", None, s, default=0, type_name="duration", check=go_duration,
             help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
        Flag("hostname", "h", s, help="Container host name"),
        Flag("init", None, b, help="Run an init inside the container that forwards signals and reaps processes"),
        Flag("interactive", "i", b, help="Keep STDIN open even if not attached"),
        Flag("ip", None, s, help="IPv4 address (e.g., 172.30.100.104)", type_name="ip"),
        Flag("ip6", None, s, help="IPv6 address (e.g., 2001:db8::33)", type_name="ip"),
        Flag("ipc", None, s, help="IPC mode to use"),
        Flag("isolation", None, s, help="Container isolation technology"),
        Flag("label", "l", lst, help="Set meta data on a container", type_name="list", check=check_label),
        Flag("label-file", None, lst, help="Read in a line delimited file of labels", type_name="list"),
        Flag("link", None, lst, help="Add link to another container", type_name="list"),
        Flag("log-driver", None, s, help="Logging driver for the container"),
        Flag("log-opt", None, lst, help="Log driver options", type_name="list"),
        Flag("mac-address", None, s, help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
        Flag("memory", "m", s, default=0, help="Memory limit", type_name="bytes", check=ram_in_bytes),
        Flag("memory-reservation", None, s, default=0, help="Memory soft limit", type_name="bytes",
             check=ram_in_bytes),
        Flag("memory-swap", None, s, default=0, type_name="bytes", check=swap_bytes,
             help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
        Flag("memory-swappiness", None, i, default=-1, help="Tune container memory swappiness (0 to 100)",
             type_name="int"),
        Flag("mount", None, lst, help="Attach a filesystem mount to the container", type_name="mount",
             check=parse_mount),
        Flag("network", None, s, help="Connect a container to a network", type_name="network"),
        Flag("network-alias", None, lst, help="Add network-scoped alias for the container", type_name="list"),
        Flag("no-healthcheck", None, b, help="Disable any container-specified HEALTHCHECK"),
        Flag("oom-kill-disable", None, b, help="Disable OOM Killer"),
        Flag("oom-score-adj", None, i, help="Tune host's OOM preferences (-1000 to 1000)", type_name="int"),
        Flag("pid", None, s, help="PID namespace to use"),
        Flag("pids-limit", None, i, help="Tune container pids limit (set -1 for unlimited)", type_name="int"),
        Flag("privileged", None, b, help="Give extended privileges to this container"),
        Flag("publish", "p", lst, help="Publish a container's port(s) to the host", type_name="list"),
        Flag("publish-all", "P", b, help="Publish all exposed ports to random ports"),
        Flag("read-only", None, b, help="Mount the container's root filesystem as read only"),
        Flag("restart", None, s, default="no", help="Restart policy to apply when a container exits"),
        Flag("rm", None, b, help="Automatically remove the container and its associated anonymous volumes "
             "when it exits"),
        Flag("runtime", None, s, help="Runtime to use for this container"),
        Flag("security-opt", None, lst, help="Security Options", type_name="list"),
        Flag("shm-size", None, s, default=0, help="Size of /dev/shm", type_name="bytes", check=ram_in_bytes),
        Flag("stop-signal", None, s, help="Signal to stop the container"),
        Flag("stop-timeout", None, i, help="Timeout (in seconds) to stop a container", type_name="int"),
        Flag("storage-opt", None, lst, help="Storage driver options for the container", type_name="list"),
        Flag("sysctl", None, lst, help="Sysctl options", type_name="map"),
        Flag("tmpfs", None, lst, help="Mount a tmpfs directory", type_name="list"),
        Flag("tty", "t", b, help="Allocate a pseudo-TTY"),
        Flag("ulimit", None, lst, help="Ulimit options", type_name="ulimit", check=parse_ulimit),
        Flag("user", "u", s, help="Username or UID (format: <name|uid>[:<group|gid>])"),
        Flag("userns", None, s, help="User namespace to use"),
        Flag("uts", None, s, help="UTS namespace to use"),
        Flag("volume", "v", lst, help="Bind mount a volume", type_name="list"),
        Flag("volume-driver", None, s, help="Optional volume driver for the container"),
        Flag("volumes-from", None, lst, help="Mount volumes from the specified container(s)", type_name="list"),
        Flag("workdir", "w", s, help="Working directory inside the container"),
    ]


def _create_flags() -> list[Flag]:
    return [
        Flag("name", None, STRING, help="Assign a name to the container"),
        Flag("platform", None, STRING, help="Set platform if server is multi-platform capable"),
        Flag("pull", None, STRING, default="missing",
             help='Pull image before creating ("always", "missing", "never")'),
        Flag("quiet", "q", help="Suppress the pull output"),
    ]


def create_flags() -> list[Flag]:
    return sorted(_flags() + _create_flags(), key=lambda f: f.name)


def run_flags() -> list[Flag]:
    extra = [
        Flag("detach", "d", help="Run container in background and print container ID"),
        Flag("detach-keys", None, STRING, help="Override the key sequence for detaching a container"),
        Flag("sig-proxy", None, default=True, help="Proxy received signals to the process"),
    ]
    flags = sorted(_flags() + _create_flags() + extra, key=lambda f: f.name)
    for flag in flags:
        if flag.name == "pull":
            flag.help = 'Pull image before running ("always", "missing", "never")'
    return flags


# -- from flags to the container config ---------------------------------------------------

def read_kv_file(path: str, lookup=None) -> list[str]:
    """kvfile.Parse: KEY=VALUE lines; '#' comments; a bare KEY takes its value from
    ``lookup`` (the environment, for --env-file) or is dropped (--label-file)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ParseError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    lines = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r") if raw.endswith(b"\r") else raw
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"invalid env file ({path}): invalid utf8 bytes at line {number}: "
                             f"[{' '.join(str(c) for c in raw)}]") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, _ = line.partition("=")
        if not key:
            raise ParseError(f"invalid env file ({path}): no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise ParseError(f"invalid env file ({path}): variable '{key}' contains whitespaces")
        if eq:
            lines.append(line)
        elif lookup is not None:
            value = lookup(line)
            if value is not None:
                lines.append(f"{key}={value}")
    return lines


def parse_volume_spec(spec: str) -> dict:
    """volumespec.Parse, as far as the CLI needs it: Source, Target, Type, ReadOnly."""
    if not spec:
        raise ParseError("invalid empty volume spec")
    if len(spec) <= 2:
        return {"Source": "", "Target": spec, "Type": "volume"}
    fields = spec.split(":")
    source = target = ""
    for index, field in enumerate(fields):
        last = index == len(fields) - 1
        if not field:
            raise ParseError(f"invalid spec: {spec}: empty section between colons")
        if not source and last:
            target = field
        elif not source:
            source = field
        elif not target:
            target = field
        elif not last:
            raise ParseError(f"invalid spec: {spec}: too many colons")
    kind = "bind" if source[:1] in (".", "/", "~") else "volume"
    return {"Source": source, "Target": target, "Type": kind}


def split_proto_port(raw: str) -> tuple[str, str]:
    port, _, proto = raw.partition("/")
    if not port:
        return "", ""
    return (proto or "tcp"), port


def parse_port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    start, dash, end = text.partition("-")
    try:
        lo = int(start, 10)
        hi = int(end, 10) if dash else lo
    except ValueError:
        raise ValueError(f'strconv.ParseUint: parsing "{end if dash and start.isdigit() else start}": '
                         "invalid syntax") from None
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    if hi < lo:
        raise ValueError(f"invalid range specified for port: {text}")
    return lo, hi


def parse_port_specs(specs: list[str]) -> tuple[dict, dict]:
    """nat.ParsePortSpecs: ExposedPorts and PortBindings from -p values."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list] = {}
    for raw in specs:
        if "=" in raw:  # the long syntax: published=8080,target=80,protocol=udp
            params = {"protocol": "tcp"}
            for param in raw.split(","):
                k, eq, v = param.partition("=")
                if not eq or not k:
                    raise ParseError(f"invalid publish opts format (should be name=value but got '{param}')")
                params[k] = v
            raw = f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"
        parts = raw.split(":")
        if len(parts) == 1:
            ip, host, container = "", "", parts[0]
        elif len(parts) == 2:
            ip, host, container = "", parts[0], parts[1]
        else:
            ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
        proto, cport = split_proto_port(container)
        ip = ip.strip("[]") if ip.startswith("[") else ip
        if ip and not _valid_ip(ip):
            raise ParseError(f"invalid IP address: {ip}")
        if not cport:
            raise ParseError(f"no port specified: {raw}<empty>")
        try:
            start, end = parse_port_range(cport)
        except ValueError:
            raise ParseError(f"invalid containerPort: {cport}") from None
        hstart = hend = 0
        if host:
            try:
                hstart, hend = parse_port_range(host)
            except ValueError:
                raise ParseError(f"invalid hostPort: {host}") from None
            if (end - start) != (hend - hstart) and end != start:
                raise ParseError(f"invalid ranges specified for container and host Ports: {cport} and {host}")
        if proto.lower() not in _PORT_PROTOCOLS:
            raise ParseError(f"invalid proto: {proto}")
        for offset in range(end - start + 1):
            key = f"{start + offset}/{proto.lower()}"
            host_port = str(hstart + offset) if host else ""
            if host and start == end and hstart != hend:
                host_port = f"{host_port}-{hend}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def _valid_ip(text: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def parse_restart_policy(policy: str) -> dict:
    if not policy:
        return {"Name": "", "MaximumRetryCount": 0}
    name, colon, count = policy.partition(":")
    if colon and not name:
        raise ParseError("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count:
        try:
            retries = int(count, 10)
        except ValueError:
            raise ParseError("invalid restart policy format: maximum retry count must be an integer") from None
    return {"Name": name, "MaximumRetryCount": retries}


def _parse_device(spec: str) -> dict:
    if spec.count(":") > 2 or not spec.split(":")[0]:
        raise ParseError(f"bad format for path: {spec}")
    parts = spec.split(":")
    src, dst, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        perms = parts[2]
        if not _device_mode(perms):
            raise ParseError(f"bad mode specified: {perms}")
        dst = parts[1]
    elif len(parts) == 2:
        if _device_mode(parts[1]):
            perms = parts[1]
        else:
            dst = parts[1]
    container_path = dst or src
    if not container_path.startswith("/"):
        raise ParseError(f"{container_path} is not an absolute path")
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": perms}


def _device_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def _security_opts(options: list[str]) -> tuple[list[str], list | None, list | None]:
    kept, masked, readonly = [], None, None
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq and key != "no-new-privileges":
            key, eq, value = opt.partition(":")
        if (not eq or not value) and key != "no-new-privileges":
            raise ParseError(f'invalid --security-opt: "{opt}"')
        if opt == "systempaths=unconfined":
            masked, readonly = [], []
            continue
        if key == "seccomp" and value not in ("builtin", "unconfined"):
            import json
            try:
                with open(value, "rb") as f:
                    profile = json.loads(f.read())
            except OSError as e:
                raise ParseError(f"opening seccomp profile ({value}) failed: open {value}: "
                                 f"{(e.strerror or str(e)).lower()}") from None
            except ValueError as e:
                raise ParseError(f"compacting json for seccomp profile ({value}) failed: {e}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        kept.append(opt)
    return kept, masked, readonly


def _check_mode(value: str, kind: str, extra: tuple[str, ...] = ()) -> None:
    """Docker's PidMode/UTSMode/... Valid(): "", host, container:<id> (and extras)."""
    if value in ("", "host") + extra:
        return
    prefix, colon, rest = value.partition(":")
    if prefix == "container" and colon and rest and kind in ("pid", "ipc"):
        return
    messages = {"pid": "--pid: invalid PID mode", "uts": "--uts: invalid UTS mode",
                "userns": "--userns: invalid USER mode", "cgroupns": "--cgroupns: invalid CGROUP mode"}
    if kind in messages:
        raise ParseError(messages[kind])


def _endpoint(aliases=None, ipv4: str = "", ipv6: str = "", mac: str = "", links=None) -> dict:
    ipam = {k: v for k, v in (("IPv4Address", ipv4), ("IPv6Address", ipv6)) if v} or None
    return {"IPAMConfig": ipam, "Links": links or None, "Aliases": aliases or None,
            "MacAddress": mac, "DriverOpts": None, "GwPriority": 0, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


_BUILTIN_NETWORKS = ("default", "bridge", "host", "none")


def _network_config(opts) -> tuple[str, dict]:
    network = opts.network
    aliases, links = list(opts.network_alias), list(opts.link)
    has_options = bool(aliases or opts.ip or opts.ip6 or opts.mac_address)
    if opts.mac_address and not _valid_mac(opts.mac_address):
        raise ParseError(f"{opts.mac_address} is not a valid mac address")
    if not network:
        return "default", {"default": _endpoint(aliases, opts.ip, opts.ip6, opts.mac_address)}
    user_defined = network not in _BUILTIN_NETWORKS and not network.startswith("container:")
    if not user_defined and aliases:
        raise ParseError("network-scoped aliases are only supported for user-defined networks")
    if not has_options and not (user_defined and links):
        return network, {}
    return network, {network: _endpoint(aliases, opts.ip, opts.ip6, opts.mac_address,
                                        links if user_defined else None)}


def _valid_mac(text: str) -> bool:
    parts = text.strip().replace("-", ":").split(":")
    return len(parts) in (6, 8, 20) and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                            for p in parts)


def _normalize_capability(cap: str) -> str:
    cap = cap.strip().upper()
    if cap in ("ALL", "RESET") or cap.startswith("CAP_"):
        return cap
    return "CAP_" + cap


def _lookup_env(environ: dict[str, str]):
    return lambda key: environ.get(key)


def build_config(opts, image: str, command: list[str], environ: dict[str, str],
                 console_size: tuple[int, int] = (0, 0)) -> dict:
    """docker's parse(): the body of POST /containers/create. ParseError on bad input."""
    attach = set(opts.attach)
    attach_stdin = "stdin" in attach or opts.interactive
    attach_stdout = "stdout" in attach or not attach
    attach_stderr = "stderr" in attach or not attach
    if opts.memory_swappiness != -1 and not 0 <= opts.memory_swappiness <= 100:
        raise ParseError(f"invalid value: {opts.memory_swappiness}. Valid memory swappiness range is 0-100")

    binds: list[str] = []
    volumes: dict[str, dict] = {}
    for spec in opts.volume:
        parsed = parse_volume_spec(spec)
        if parsed["Source"]:
            if parsed["Type"] == "bind":
                host, colon, rest = spec.partition(":")
                if colon and host.startswith("."):
                    spec = lean_os.abspath(host) + ":" + rest
            binds.append(spec)
        else:
            volumes[spec] = {}
    tmpfs = {}
    for spec in opts.tmpfs:
        target, _, options = spec.partition(":")
        tmpfs[target] = options

    entrypoint = None
    if opts.entrypoint:
        entrypoint = [opts.entrypoint]
    elif opts.changed("entrypoint"):
        entrypoint = [""]  # --entrypoint= resets the image's entrypoint

    exposed, port_bindings = parse_port_specs(list(opts.publish))
    for spec in opts.expose:
        if ":" in spec:
            raise ParseError(f"invalid port format for --expose: {spec}")
        proto, port = split_proto_port(spec)
        try:
            start, end = parse_port_range(port)
        except ValueError as e:
            raise ParseError(f"invalid range format for --expose: {spec}, error: {e}") from None
        for number in range(start, end + 1):
            exposed.setdefault(f"{number}/{proto}", {})

    devices = [_parse_device(d) for d in opts.device]

    lookup = _lookup_env(environ)
    env: list[str] = []
    for path in opts.env_file:
        env += read_kv_file(path, lookup)
    for value in opts.env:
        if "=" not in value and lookup(value) is not None:
            value = f"{value}={lookup(value)}"
        env.append(value)
    labels_list: list[str] = []
    for path in opts.label_file:
        labels_list += read_kv_file(path)
    labels_list += opts.label
    labels = {}
    for item in labels_list:
        key, _, value = item.partition("=")
        labels[key] = value

    _check_mode(opts.pid, "pid")
    _check_mode(opts.uts, "uts")
    _check_mode(opts.userns, "userns")
    _check_mode(opts.cgroupns, "cgroupns", ("private",))

    restart = parse_restart_policy(opts.restart)
    log_opts = {}
    for item in opts.log_opt:
        key, _, value = item.partition("=")
        log_opts[key] = value
    if opts.log_driver == "none" and opts.log_opt:
        raise ParseError(f"invalid logging opts for driver {opts.log_driver}")
    security, masked_paths, readonly_paths = _security_opts(list(opts.security_opt))
    storage = {}
    for item in opts.storage_opt:
        key, eq, value = item.partition("=")
        if not eq:
            raise ParseError("invalid storage option")
        storage[key] = value

    healthcheck = _healthcheck(opts)
    network_mode, endpoints = _network_config(opts)

    config: dict = {
        "Hostname": opts.hostname, "Domainname": opts.domainname, "User": opts.user,
        "AttachStdin": attach_stdin, "AttachStdout": attach_stdout, "AttachStderr": attach_stderr,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    config.update({
        "Tty": opts.tty, "OpenStdin": opts.interactive,
        "StdinOnce": bool(opts.interactive and attach_stdin),
        "Env": env or None, "Cmd": list(command) or None,
    })
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    config.update({"Image": image, "Volumes": volumes, "WorkingDir": opts.workdir,
                   "Entrypoint": entrypoint, "OnBuild": None, "Labels": labels})
    if opts.stop_signal:
        config["StopSignal"] = opts.stop_signal
    if opts.changed("stop-timeout"):
        config["StopTimeout"] = opts.stop_timeout

    host: dict = {
        "Binds": binds or None, "ContainerIDFile": opts.cidfile,
        "LogConfig": {"Type": opts.log_driver, "Config": log_opts},
        "NetworkMode": network_mode, "PortBindings": port_bindings,
        "RestartPolicy": restart, "AutoRemove": opts.rm, "VolumeDriver": opts.volume_driver,
        "VolumesFrom": list(opts.volumes_from) or None, "ConsoleSize": list(console_size),
    }
    if opts.annotation:
        host["Annotations"] = dict(item.partition("=")[::2] for item in opts.annotation)
    host.update({
        "CapAdd": [_normalize_capability(c) for c in opts.cap_add] or None,
        "CapDrop": [_normalize_capability(c) for c in opts.cap_drop] or None,
        "CgroupnsMode": opts.cgroupns, "Dns": list(opts.dns), "DnsOptions": list(opts.dns_option),
        "DnsSearch": list(opts.dns_search), "ExtraHosts": list(opts.add_host) or None,
        "GroupAdd": list(opts.group_add) or None, "IpcMode": opts.ipc, "Cgroup": "",
        "Links": list(opts.link) or None, "OomScoreAdj": opts.oom_score_adj, "PidMode": opts.pid,
        "Privileged": opts.privileged, "PublishAllPorts": opts.publish_all,
        "ReadonlyRootfs": opts.read_only, "SecurityOpt": security or None,
    })
    if storage:
        host["StorageOpt"] = storage
    if tmpfs:
        host["Tmpfs"] = tmpfs
    host.update({
        "UTSMode": opts.uts, "UsernsMode": opts.userns, "ShmSize": opts.shm_size,
    })
    if opts.sysctl:
        host["Sysctls"] = dict(item.partition("=")[::2] for item in opts.sysctl)
    if opts.runtime:
        host["Runtime"] = opts.runtime
    host.update({
        "Isolation": opts.isolation, "CpuShares": opts.cpu_shares, "Memory": opts.memory,
        "NanoCpus": opts.cpus, "CgroupParent": opts.cgroup_parent, "BlkioWeight": opts.blkio_weight,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": opts.cpu_period, "CpuQuota": opts.cpu_quota,
        "CpuRealtimePeriod": opts.cpu_rt_period, "CpuRealtimeRuntime": opts.cpu_rt_runtime,
        "CpusetCpus": opts.cpuset_cpus, "CpusetMems": opts.cpuset_mems, "Devices": devices,
        "DeviceCgroupRules": list(opts.device_cgroup_rule) or None, "DeviceRequests": None,
        "MemoryReservation": opts.memory_reservation, "MemorySwap": opts.memory_swap,
        "MemorySwappiness": opts.memory_swappiness, "OomKillDisable": opts.oom_kill_disable,
        "PidsLimit": opts.pids_limit, "Ulimits": sorted(opts.ulimit, key=lambda u: u["Name"]),
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    })
    if opts.mount:
        host["Mounts"] = list(opts.mount)
    host["MaskedPaths"] = masked_paths
    host["ReadonlyPaths"] = readonly_paths
    if opts.changed("init"):
        host["Init"] = opts.init
    if opts.rm and restart["Name"] not in ("", "no"):
        raise ParseError("conflicting options: cannot specify both --restart and --rm")

    config["HostConfig"] = host
    config["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return config


def _healthcheck(opts) -> dict | None:
    durations = (opts.health_interval, opts.health_timeout, opts.health_start_period,
                 opts.health_start_interval)
    have = bool(opts.health_cmd) or any(durations) or opts.health_retries != 0
    if opts.no_healthcheck:
        if have:
            raise ParseError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    for name, value in (("interval", opts.health_interval), ("timeout", opts.health_timeout),
                        ("retries", opts.health_retries), ("start-period", opts.health_start_period),
                        ("start-interval", opts.health_start_interval)):
        if value < 0:
            raise ParseError(f"--health-{name} cannot be negative")
    check: dict = {}
    if opts.health_cmd:
        check["Test"] = ["CMD-SHELL", opts.health_cmd]
    for key, value in (("Interval", opts.health_interval), ("Timeout", opts.health_timeout),
                       ("StartPeriod", opts.health_start_period),
                       ("StartInterval", opts.health_start_interval),
                       ("Retries", opts.health_retries)):
        if value:
            check[key] = value
    return check
