//! The container spec (`<bundle>/spec.json`): berth's OCI-runtime-like description
//! of one container, written by the daemon and read by the monitor.
//!
//! Field names are camelCase JSON. Only `process.args` and `root` are required; the
//! defaults are the ones `docker run` gives (Docker's capability set, new namespaces,
//! `/` as working directory). The Python side (`berth.runtime.spec`) fills Docker's
//! masked and read-only paths; this crate applies whatever it is given.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub process: Process,
    pub root: Root,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub domainname: Option<String>,
    /// Mounted after berth's own /proc, /dev (+pts, shm, mqueue) and /sys, in order;
    /// a mount on one of those destinations replaces berth's default there.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub namespaces: Namespaces,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// Cgroup directories (v1 controllers and/or v2) the container joins; the daemon
    /// creates and configures them, the runtime only writes the pid into them.
    #[serde(default)]
    pub cgroup_paths: Vec<String>,
    /// json-file log; none means output goes to attached clients only.
    #[serde(default)]
    pub log_path: Option<String>,
    /// Signal the daemon sends on stop (kept here so it survives a daemon restart).
    #[serde(default)]
    pub stop_signal: Option<i32>,
    /// Device nodes made in the container's /dev (`--device`, `--privileged`).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Namespaced kernel parameters (`--sysctl net.core.somaxconn=1024`), set
    /// before /proc/sys is made read-only.
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<String, String>,
    /// Applies to the container's process and every exec into it.
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::Seccomp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    /// Path in the container (`/dev/fuse`).
    pub path: String,
    /// `c` (character) or `b` (block).
    #[serde(rename = "type")]
    pub kind: String,
    pub major: u32,
    pub minor: u32,
    #[serde(default = "default_device_mode")]
    pub file_mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

fn default_device_mode() -> u32 {
    0o666
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Process {
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default = "default_cwd")]
    pub cwd: String,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub terminal: bool,
    /// `docker run -i`: keep a stdin pipe; otherwise stdin is /dev/null.
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client closes its stdin.
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub console_size: Option<ConsoleSize>,
    /// Absent: Docker's default set. A list of names: bounding, effective and
    /// permitted all get it (Docker's way). An object: each set given explicitly.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// /proc/<pid>/oom_score_adj (`--oom-score-adj`), -1000..1000.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

fn default_cwd() -> String {
    "/".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// `docker run --group-add`: group names or numbers, resolved inside the
    /// container through its /etc/group.
    #[serde(default)]
    pub additional_groups: Vec<String>,
    /// `user[:group]` (names or numbers), resolved inside the container through its
    /// /etc/passwd and /etc/group like `docker run -u`; overrides uid/gid and adds the
    /// user's supplementary groups to `additionalGids`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Capabilities {
    Names(Vec<String>),
    Sets(CapabilitySets),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySets {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

impl Capabilities {
    pub fn sets(&self) -> CapabilitySets {
        match self {
            Capabilities::Names(names) => CapabilitySets {
                bounding: names.clone(),
                effective: names.clone(),
                permitted: names.clone(),
                inheritable: Vec::new(),
                ambient: Vec::new(),
            },
            Capabilities::Sets(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Root {
    /// Overlay lower layers, top-most first (overlayfs order).
    #[serde(default)]
    pub lowerdirs: Vec<String>,
    #[serde(default)]
    pub upperdir: Option<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// A ready directory to use as the rootfs instead of an overlay (bind-mounted).
    #[serde(default)]
    pub path: Option<String>,
    /// Host directory the rootfs is mounted on, inside the container's own mount
    /// namespace only (the host never sees the mount).
    pub mountpoint: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default = "default_mount_type")]
    pub kind: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

fn default_mount_type() -> String {
    "bind".into()
}

/// How a container gets one namespace: `new`, `host` (the monitor's), or the path of
/// a namespace file to join (`/proc/<pid>/ns/net`, `/run/netns/x`). For `net`,
/// `none` means a new namespace with only `lo`, up (the same as `new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsMode {
    New,
    Host,
    Join(String),
}

impl NsMode {
    fn parse(s: &str) -> std::result::Result<NsMode, String> {
        match s {
            "new" | "none" | "private" => Ok(NsMode::New),
            "host" => Ok(NsMode::Host),
            p if p.starts_with('/') => Ok(NsMode::Join(p.to_string())),
            other => Err(format!(
                "invalid namespace mode {other:?}: expected \"new\", \"host\" or an absolute path"
            )),
        }
    }
}

impl Serialize for NsMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            NsMode::New => s.serialize_str("new"),
            NsMode::Host => s.serialize_str("host"),
            NsMode::Join(p) => s.serialize_str(p),
        }
    }
}

impl<'de> Deserialize<'de> for NsMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NsMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    #[serde(default = "ns_new")]
    pub pid: NsMode,
    #[serde(default = "ns_new")]
    pub net: NsMode,
    #[serde(default = "ns_new")]
    pub ipc: NsMode,
    #[serde(default = "ns_new")]
    pub uts: NsMode,
    /// The mount namespace is always new: the rootfs is mounted in it.
    #[serde(default = "ns_host")]
    pub cgroup: NsMode,
}

fn ns_new() -> NsMode {
    NsMode::New
}
fn ns_host() -> NsMode {
    NsMode::Host
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces { pid: NsMode::New, net: NsMode::New, ipc: NsMode::New, uts: NsMode::New, cgroup: NsMode::Host }
    }
}

/// `<exec-dir>/spec.json` for `berth-monitor exec`: the process to run inside a
/// running container (the daemon merges the container's env into it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecSpec {
    pub process: Process,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&data).map_err(|e| Error::Spec(format!("{}: {e}", path.display())))
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec> {
        let spec: Spec = read_json(path)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<()> {
        self.process.validate()?;
        let r = &self.root;
        if !r.mountpoint.starts_with('/') {
            return Err(Error::Spec(format!("root.mountpoint {:?} is not an absolute path", r.mountpoint)));
        }
        match (&r.path, r.lowerdirs.is_empty()) {
            (Some(_), false) => return Err(Error::Spec("root: give either path or lowerdirs, not both".into())),
            (None, true) => return Err(Error::Spec("root: lowerdirs is empty and no path is given".into())),
            _ => {}
        }
        if r.upperdir.is_some() != r.workdir.is_some() {
            return Err(Error::Spec("root: upperdir and workdir go together".into()));
        }
        for m in &self.mounts {
            if !m.destination.starts_with('/') {
                return Err(Error::Spec(format!("mount destination {:?} is not an absolute path", m.destination)));
            }
            if m.kind == "bind" && m.source.as_deref().is_none_or(|s| !s.starts_with('/')) {
                return Err(Error::Spec(format!("bind mount on {}: source must be an absolute path", m.destination)));
            }
        }
        for d in &self.devices {
            if !d.path.starts_with("/dev/") || d.path.contains("/../") || d.path.ends_with("/..") {
                return Err(Error::Spec(format!("device path {:?} must be under /dev", d.path)));
            }
            if d.kind != "c" && d.kind != "b" {
                return Err(Error::Spec(format!("device {}: type must be \"c\" or \"b\", not {:?}", d.path, d.kind)));
            }
        }
        if let Some(sc) = &self.seccomp {
            crate::seccomp::compile(sc)?;
        }
        for key in self.sysctl.keys() {
            if key.is_empty() || key.contains('/') || key.split('.').any(|c| c.is_empty() || c == "..") {
                return Err(Error::Spec(format!("invalid sysctl name {key:?}")));
            }
        }
        if (self.hostname.is_some() || self.domainname.is_some()) && self.namespaces.uts != NsMode::New {
            return Err(Error::Spec("a hostname needs a new UTS namespace".into()));
        }
        Ok(())
    }
}

impl Process {
    pub fn validate(&self) -> Result<()> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(Error::Spec("process.args is empty: no command to run".into()));
        }
        if !self.cwd.starts_with('/') {
            return Err(Error::Spec(format!("process.cwd {:?} is not an absolute path", self.cwd)));
        }
        for e in &self.env {
            if !e.contains('=') {
                return Err(Error::Spec(format!("process.env entry {e:?} is not NAME=value")));
            }
        }
        if let Some(c) = &self.capabilities {
            let s = c.sets();
            for name in s.bounding.iter().chain(&s.effective).chain(&s.permitted).chain(&s.inheritable).chain(&s.ambient) {
                crate::caps::number(name)?;
            }
        }
        if let Some(adj) = self.oom_score_adj {
            if !(-1000..=1000).contains(&adj) {
                return Err(Error::Spec(format!("oomScoreAdj {adj} is outside -1000..1000")));
            }
        }
        for r in &self.rlimits {
            crate::sys::rlimit_resource(&r.kind)?;
            if r.soft > r.hard {
                return Err(Error::Spec(format!("{}: soft limit {} is above hard limit {}", r.kind, r.soft, r.hard)));
            }
        }
        Ok(())
    }
}

impl ExecSpec {
    pub fn load(path: &Path) -> Result<ExecSpec> {
        let spec: ExecSpec = read_json(path)?;
        spec.process.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_docker_defaults() {
        let s: Spec = serde_json::from_str(
            r#"{"process":{"args":["true"]},"root":{"path":"/r","mountpoint":"/m"}}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.process.cwd, "/");
        assert_eq!(s.namespaces.pid, NsMode::New);
        assert_eq!(s.namespaces.cgroup, NsMode::Host);
        assert!(s.process.capabilities.is_none());
    }

    #[test]
    fn namespace_modes_parse() {
        let n: Namespaces = serde_json::from_str(r#"{"net":"/run/netns/a","pid":"host","ipc":"none"}"#).unwrap();
        assert_eq!(n.net, NsMode::Join("/run/netns/a".into()));
        assert_eq!(n.pid, NsMode::Host);
        assert_eq!(n.ipc, NsMode::New);
        assert!(serde_json::from_str::<Namespaces>(r#"{"net":"bridge"}"#).is_err());
    }

    #[test]
    fn bad_specs_are_rejected_with_the_cause() {
        let bad = [
            (r#"{"process":{"args":[]},"root":{"path":"/r","mountpoint":"/m"}}"#, "no command"),
            (r#"{"process":{"args":["x"],"cwd":"rel"},"root":{"path":"/r","mountpoint":"/m"}}"#, "cwd"),
            (r#"{"process":{"args":["x"]},"root":{"mountpoint":"/m"}}"#, "lowerdirs"),
            (r#"{"process":{"args":["x"],"capabilities":["CAP_NOPE"]},"root":{"path":"/r","mountpoint":"/m"}}"#, "CAP_NOPE"),
            (r#"{"process":{"args":["x"]},"root":{"path":"/r","mountpoint":"/m"},"mounts":[{"destination":"/a","type":"bind"}]}"#, "source"),
            (r#"{"process":{"args":["x"]},"root":{"path":"/r","mountpoint":"/m"},"hostname":"h","namespaces":{"uts":"host"}}"#, "UTS"),
        ];
        for (json, needle) in bad {
            let err = serde_json::from_str::<Spec>(json).map_err(|e| e.to_string()).and_then(|s| s.validate().map_err(|e| e.to_string()));
            let msg = err.expect_err(json);
            assert!(msg.contains(needle), "{msg} should mention {needle}");
        }
    }
}
