//! berth-runtime: container process creation, no Python in it.
//!
//! From a [`spec::Spec`] (the daemon's `spec.json`) the monitor calls
//! [`process::create_container`]: the child is forked (clone3, clone on ENOSYS) into
//! new mount/pid/uts/ipc/net namespaces (or joins given ones), joins its cgroups,
//! mounts its rootfs (overlay of many lowerdirs via `lowerdir+`), /proc, /dev, /sys
//! and the spec's mounts (targets resolved with openat2 RESOLVE_IN_ROOT),
//! pivot_roots, masks Docker's paths, sets hostname, rlimits, user and groups,
//! capabilities, no_new_privs and cwd, resolves the command through the spec's
//! PATH, and stops just before execve. [`process::Created::start`] lets it exec.
//! [`process::create_exec`] does the same for a process entering a running
//! container (setns, then chdir: never chroot).
//!
//! Modules: `spec` (the JSON), `init` (child side), `process` (parent side),
//! `rootfs` (mounts), `caps`, `seccomp`, `user` (passwd/group), `sys` (syscall wrappers),
//! `error`.

pub mod caps;
pub mod error;
pub mod init;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sys;
pub mod user;

pub use error::{Error, Result};
pub use init::ChildStdio;
pub use process::{create_container, create_exec, Created};
pub use spec::{ExecSpec, Spec};
