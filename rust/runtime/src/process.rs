//! The parent (monitor) side of process creation: fork the child into its
//! namespaces, wait until it is ready to exec (`create`), and later let it exec
//! (`start`). Mirrors `runc create` / `runc start`.

use std::os::fd::{AsRawFd, OwnedFd};

use libc::pid_t;

use crate::error::{Context, Error, Result};
use crate::init::{self, ChildStdio, JoinNamespaces};
use crate::spec::{NsMode, Process, Spec};
use crate::sys;

/// A process stopped just before execve, waiting for `start`.
pub struct Created {
    pub pid: pid_t,
    /// The pty master, when the process has a terminal.
    pub master: Option<OwnedFd>,
    chan: OwnedFd,
}

/// Fork the container's init into new namespaces and set it up up to exec.
/// Setup errors come back here (and the child is reaped); command errors (127/126)
/// only come at `start`, as with Docker.
pub fn create_container(spec: &Spec, stdio: ChildStdio) -> Result<Created> {
    let ns = &spec.namespaces;
    let mut flags = libc::CLONE_NEWNS as u64;
    for (mode, flag) in [
        (&ns.pid, libc::CLONE_NEWPID),
        (&ns.net, libc::CLONE_NEWNET),
        (&ns.ipc, libc::CLONE_NEWIPC),
        (&ns.uts, libc::CLONE_NEWUTS),
        // A new cgroup namespace is made by the child once it is in its cgroups
        // (CLONE_INTO_CGROUP aside, cloning it here would root it at ours).
    ] {
        if *mode == NsMode::New {
            flags |= flag as u64;
        }
    }
    if let NsMode::Join(path) = &ns.pid {
        // A pid namespace is entered by children only: set ours-for-children.
        let fd = sys::open(path, libc::O_RDONLY).with_ctx(|| format!("open pid namespace {path}"))?;
        sys::setns(fd.as_raw_fd(), libc::CLONE_NEWPID).with_ctx(|| format!("join pid namespace {path}"))?;
    }
    let (parent, child) = sys::seqpacket_pair().ctx("socketpair")?;
    non_dumpable()?;
    // Fast path: be born in the (first) cgroup v2 directory, so no instant of the
    // init runs outside its limits; other cgroups are joined by the child.
    let v2 = spec.cgroup_paths.iter().position(|p| sys::is_cgroup2(p));
    let v2_fd = v2.and_then(|i| sys::open(&spec.cgroup_paths[i], libc::O_RDONLY | libc::O_DIRECTORY).ok());
    let (pid, born_in) = match sys::fork_into(flags, v2_fd.as_ref().map(|f| f.as_raw_fd())) {
        Ok(pid) => (pid, v2),
        Err(_) if v2_fd.is_some() => (sys::fork_into(flags, None).ctx("clone the container's init")?, None),
        Err(e) => return Err(Error::io("clone the container's init", e)),
    };
    if pid == 0 {
        drop(parent);
        drop(v2_fd);
        init::container_init(spec, child, stdio, born_in);
    }
    drop(v2_fd);
    drop(child);
    drop(stdio);
    wait_ready(pid, parent, "container init")
}

const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("pid", libc::CLONE_NEWPID),
    // Last: after it, paths resolve inside the container.
    ("mnt", libc::CLONE_NEWNS),
];

/// Fork a process into the namespaces and cgroups of the running process
/// `init_pid` (the container's init) and set it up up to exec.
pub fn create_exec(
    init_pid: pid_t,
    cgroup_paths: &[String],
    seccomp: Option<&crate::seccomp::Seccomp>,
    process: &Process,
    stdio: ChildStdio,
) -> Result<Created> {
    let mut fds = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{init_pid}/ns/{name}");
        let their_ino = sys::ns_inode(&theirs).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Error::Setup(format!("container process {init_pid} is not running"))
            } else {
                Error::io(format!("stat {theirs}"), e)
            }
        })?;
        let ours = if *name == "pid" { "/proc/self/ns/pid_for_children".to_string() } else { format!("/proc/self/ns/{name}") };
        if sys::ns_inode(&ours).ok() == Some(their_ino) {
            continue;
        }
        let fd = sys::open(&theirs, libc::O_RDONLY).with_ctx(|| format!("open {theirs}"))?;
        if *flag == libc::CLONE_NEWPID {
            sys::setns(fd.as_raw_fd(), *flag).ctx("join the container's pid namespace")?;
        } else {
            fds.push((fd, *flag));
        }
    }
    let (parent, child) = sys::seqpacket_pair().ctx("socketpair")?;
    non_dumpable()?;
    let pid = sys::fork_into(0, None).ctx("fork the exec process")?;
    if pid == 0 {
        drop(parent);
        init::exec_init(process, cgroup_paths, seccomp, JoinNamespaces { fds }, child, stdio);
    }
    drop(child);
    drop(stdio);
    drop(fds);
    wait_ready(pid, parent, "exec process")
}

/// Forked children inherit this: an exec'd process is visible in the container's
/// pid namespace from its first instant, and must never be dumpable there, or a
/// container process could open its /proc/<pid>/exe (our binary) or fds
/// (CVE-2019-5736). execve makes the final program dumpable again.
fn non_dumpable() -> Result<()> {
    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("make the monitor non-dumpable")
}

fn wait_ready(pid: pid_t, chan: OwnedFd, what: &str) -> Result<Created> {
    let (packet, fd) = sys::recv_packet(chan.as_raw_fd()).ctx("wait for the child")?;
    if packet == init::READY {
        return Ok(Created { pid, master: fd, chan });
    }
    let status = reap(pid);
    Err(init::parse_error_packet(&packet)
        .unwrap_or_else(|| Error::Setup(format!("{what} exited during setup ({})", describe_status(status)))))
}

fn reap(pid: pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return status;
        }
    }
}

pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

impl Created {
    /// Let the process exec. Ok once execve succeeded (the sync socket closed on
    /// exec); an error carries Docker's message and exit code, and the child then
    /// exits with that code.
    pub fn start(&self) -> Result<()> {
        sys::send_packet(self.chan.as_raw_fd(), init::START, None).ctx("send start")?;
        let (packet, _) = sys::recv_packet(self.chan.as_raw_fd()).ctx("wait for exec")?;
        if packet.is_empty() {
            return Ok(());
        }
        Err(init::parse_error_packet(&packet).unwrap_or_else(|| Error::Setup("the process failed to start".into())))
    }
}
