//! What runs in the forked child, up to execve: the container's init (namespaces,
//! rootfs, hostname) or an exec'd process (setns into a running container), then
//! the common tail (stdio or pty, user, rlimits, capabilities, cwd, command lookup).
//!
//! The child reports on its sync socket (SOCK_SEQPACKET, close-on-exec) to the
//! monitor: `ready` once everything up to exec is done (with the pty master fd when
//! there is a terminal), or `E<code> <message>`. It then waits for `start`, and
//! the socket closing at execve tells the monitor the exec succeeded.
//!
//! Defences: the child is non-dumpable until execve, so no container process can
//! open its /proc/<pid>/exe (the host's berth-monitor binary, CVE-2019-5736) or its
//! fds; every fd but 0-2 is close-on-exec before execve (CVE-2024-21626).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::caps;
use crate::error::{Context, Error, Result};
use crate::rootfs;
use crate::seccomp::{self, Seccomp};
use crate::spec::{NsMode, Process, Spec};
use crate::sys;
use crate::user;

/// The child's stdio, prepared by the monitor before the fork.
pub enum ChildStdio {
    /// Pipe ends for the child; `stdin: None` gives it /dev/null (no `-i`).
    Pipes { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
    /// The child opens a pty in the container's devpts and passes the master back.
    Terminal,
}

pub const READY: &[u8] = b"ready";
pub const START: &[u8] = b"start";

/// Encode an error report for the sync socket.
pub fn error_packet(e: &Error) -> Vec<u8> {
    format!("E{} {}", e.exit_code(), e).into_bytes()
}

/// Decode `E<code> <message>`.
pub fn parse_error_packet(p: &[u8]) -> Option<Error> {
    let text = String::from_utf8_lossy(p.strip_prefix(b"E")?);
    let (code, message) = text.split_once(' ')?;
    let code: i32 = code.parse().ok()?;
    Some(if code == 125 { Error::Setup(message.to_string()) } else { Error::Exec { message: message.to_string(), code } })
}

fn fail(chan: &OwnedFd, e: Error) -> ! {
    let _ = sys::send_packet(chan.as_raw_fd(), &error_packet(&e), None);
    unsafe { libc::_exit(e.exit_code()) }
}

/// Namespace fds of a running container, for exec (each one differs from ours).
pub struct JoinNamespaces {
    /// (fd, CLONE_NEW* flag), joined in this order; the mount namespace is last.
    pub fds: Vec<(OwnedFd, libc::c_int)>,
}

/// Child side of a container's creation. Never returns. `born_in`: the index of
/// the cgroup path the clone already placed us in.
pub fn container_init(spec: &Spec, chan: OwnedFd, stdio: ChildStdio, born_in: Option<usize>) -> ! {
    if let Err(e) = container_setup(spec, &stdio, born_in) {
        fail(&chan, e)
    }
    finish(&spec.process, chan, &stdio, Role::Init, spec.seccomp.as_ref())
}

/// Child side of an exec into a running container. Never returns.
pub fn exec_init(
    process: &Process,
    cgroup_paths: &[String],
    seccomp: Option<&Seccomp>,
    ns: JoinNamespaces,
    chan: OwnedFd,
    stdio: ChildStdio,
) -> ! {
    let r = (|| -> Result<()> {
        early_process_setup(&stdio)?;
        join_cgroups(cgroup_paths)?;
        for (fd, flag) in &ns.fds {
            sys::setns(fd.as_raw_fd(), *flag).with_ctx(|| format!("join the container's {} namespace", ns_name(*flag)))?;
        }
        drop(ns);
        // setns(mnt) put our root and cwd at the namespace root: the container's /.
        std::env::set_current_dir("/").ctx("chdir /")?;
        Ok(())
    })();
    if let Err(e) = r {
        fail(&chan, e)
    }
    finish(process, chan, &stdio, Role::Exec, seccomp)
}

fn ns_name(flag: libc::c_int) -> &'static str {
    match flag {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWCGROUP => "cgroup",
        _ => "?",
    }
}

fn early_process_setup(stdio: &ChildStdio) -> Result<()> {
    sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("make the init non-dumpable")?;
    // Do not outlive a monitor that dies during setup.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).ctx("set parent-death signal")?;
    unsafe { libc::umask(0) };
    if let ChildStdio::Pipes { stdin, stdout, stderr } = stdio {
        if let Some(i) = stdin {
            sys::dup2(i.as_raw_fd(), 0).ctx("set up stdin")?;
        }
        sys::dup2(stdout.as_raw_fd(), 1).ctx("set up stdout")?;
        sys::dup2(stderr.as_raw_fd(), 2).ctx("set up stderr")?;
    }
    Ok(())
}

/// Join the daemon-made cgroups; "0" means the writing process. Callers are single-
/// threaded, so in v1 writing to `tasks` moves the whole process, and the kernel then
/// skips the global threadgroup lock whose RCU grace period makes a `cgroup.procs`
/// write cost 5-20 ms. v2 refuses moving one thread across domains: cgroup.procs.
fn join_cgroups(paths: &[String]) -> Result<()> {
    for p in paths {
        let p = p.trim_end_matches('/');
        let file = if sys::is_cgroup2(p) { "cgroup.procs" } else { "tasks" };
        sys::write_file(&format!("{p}/{file}"), "0").with_ctx(|| format!("join cgroup {p}"))?;
    }
    Ok(())
}

fn container_setup(spec: &Spec, stdio: &ChildStdio, born_in: Option<usize>) -> Result<()> {
    early_process_setup(stdio)?;
    let to_join: Vec<String> =
        spec.cgroup_paths.iter().enumerate().filter(|(i, _)| Some(*i) != born_in).map(|(_, p)| p.clone()).collect();
    join_cgroups(&to_join)?;
    let cgroups = rootfs::CgroupView::capture();
    let ns = &spec.namespaces;
    if ns.cgroup == NsMode::New {
        sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }).ctx("new cgroup namespace")?;
    }
    for (mode, flag) in [(&ns.ipc, libc::CLONE_NEWIPC), (&ns.uts, libc::CLONE_NEWUTS), (&ns.net, libc::CLONE_NEWNET), (&ns.cgroup, libc::CLONE_NEWCGROUP)] {
        if let NsMode::Join(path) = mode {
            let fd = sys::open(path, libc::O_RDONLY).with_ctx(|| format!("open {} namespace {path}", ns_name(flag)))?;
            sys::setns(fd.as_raw_fd(), flag).with_ctx(|| format!("join {} namespace {path}", ns_name(flag)))?;
        }
    }
    if ns.net == NsMode::New {
        loopback_up()?;
    }
    rootfs::make_private()?;
    let root = rootfs::mount_root(&spec.root)?;
    rootfs::mount_defaults(root.as_raw_fd(), &spec.mounts)?;
    rootfs::mount_cgroups(root.as_raw_fd(), &spec.mounts, &cgroups)?;
    for m in &spec.mounts {
        rootfs::mount_one(root.as_raw_fd(), m)?;
    }
    rootfs::make_spec_devices(root.as_raw_fd(), &spec.devices)?;
    rootfs::pivot(&root)?;
    drop(root);
    rootfs::set_sysctls(&spec.sysctl)?;
    rootfs::mask_paths(&spec.masked_paths)?;
    rootfs::readonly_paths(&spec.readonly_paths)?;
    if spec.root.readonly {
        rootfs::remount("/", libc::MS_RDONLY).ctx("make the rootfs read-only")?;
    }
    if let Some(h) = &spec.hostname {
        sys::set_hostname(h).with_ctx(|| format!("set hostname {h:?}"))?;
    }
    if let Some(d) = &spec.domainname {
        sys::set_domainname(d).with_ctx(|| format!("set domainname {d:?}"))?;
    }
    Ok(())
}

/// A new network namespace has `lo` down; Docker's `none` network has it up.
fn loopback_up() -> Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let s = sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }).ctx("socket")?;
    let mut req = IfReq { name: [0; 16], flags: 0, _pad: [0; 22] };
    req.name[..2].copy_from_slice(b"lo");
    let r = (|| {
        sys::cvt(unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) })?;
        req.flags |= libc::IFF_UP as libc::c_short;
        sys::cvt(unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &req) })
    })();
    unsafe { libc::close(s) };
    r.map(|_| ()).ctx("bring up lo")
}

/// The pty for `terminal: true`, opened from the container's own devpts so the
/// process sees /dev/pts/0; returns the master for the monitor.
fn open_terminal(process: &Process, console: bool) -> Result<OwnedFd> {
    let master = sys::open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY).ctx("open /dev/ptmx")?;
    let unlock: libc::c_int = 0;
    sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }).ctx("unlock pty")?;
    let slave = sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) })
        .ctx("open pty peer")?;
    if let Some(sz) = process.console_size {
        let ws = libc::winsize { ws_row: sz.height, ws_col: sz.width, ws_xpixel: 0, ws_ypixel: 0 };
        sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).ctx("set the console size")?;
    }
    if console {
        let fd = sys::open("/dev/console", libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW).ctx("create /dev/console")?;
        drop(fd);
        sys::mount(Some(&format!("/proc/self/fd/{slave}")), "/dev/console", None, libc::MS_BIND, None)
            .ctx("bind the pty on /dev/console")?;
    }
    sys::cvt(unsafe { libc::setsid() }).ctx("setsid")?;
    sys::cvt(unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) }).ctx("set the controlling terminal")?;
    for fd in 0..3 {
        sys::dup2(slave, fd).ctx("set up pty stdio")?;
    }
    if slave > 2 {
        unsafe { libc::close(slave) };
    }
    Ok(master)
}

/// Everything common to a container's init and an exec, from stdio to execve.
/// The container's init gets /dev/console and a missing working directory made
/// (Docker creates a container's WorkingDir); an exec gets neither (as runc,
/// a missing `exec -w` directory is an error).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Init,
    Exec,
}

fn finish(process: &Process, chan: OwnedFd, stdio: &ChildStdio, role: Role, seccomp: Option<&Seccomp>) -> ! {
    let prepared = match prepare_exec(process, stdio, role, seccomp) {
        Ok(p) => p,
        Err(e) => fail(&chan, e),
    };
    let (master, command) = prepared;
    if let Err(e) = sys::send_packet(chan.as_raw_fd(), READY, master.as_ref().map(|m| m.as_raw_fd())) {
        fail(&chan, Error::io("report ready", e))
    }
    drop(master);
    match sys::recv_packet(chan.as_raw_fd()) {
        Ok((p, _)) if p == START => {}
        // The monitor went away (or spoke nonsense): never run unsupervised.
        _ => unsafe { libc::_exit(125) },
    }
    let (path, argv, envp) = match command {
        Ok(c) => c,
        Err(e) => fail(&chan, e),
    };
    reset_signals();
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, 0);
    unsafe { libc::umask(0o022) };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    fail(&chan, exec_errno_error(&path.to_string_lossy(), errno))
}

/// execve failed after the lookup succeeded (a missing #! interpreter, a binary for
/// another architecture...): runc's wording, Docker's exit codes.
fn exec_errno_error(path: &str, errno: i32) -> Error {
    let code = match errno {
        libc::ENOENT => 127,
        _ => 126,
    };
    Error::Exec { message: format!("exec {path}: {}", sys::errno_text(errno)), code }
}

type Command = (CString, Vec<CString>, Vec<CString>);

/// Returns the pty master (if any) and the command to exec, or the error to report
/// at start (an unknown command is not a create-time error, as in Docker).
fn prepare_exec(
    process: &Process,
    stdio: &ChildStdio,
    role: Role,
    seccomp: Option<&Seccomp>,
) -> Result<(Option<OwnedFd>, Result<Command>)> {
    let master = match stdio {
        ChildStdio::Terminal => Some(open_terminal(process, role == Role::Init)?),
        ChildStdio::Pipes { stdin, .. } => {
            if stdin.is_none() {
                let null = sys::open("/dev/null", libc::O_RDONLY).ctx("open /dev/null for stdin")?;
                sys::dup2(null.as_raw_fd(), 0).ctx("set up stdin")?;
            }
            sys::cvt(unsafe { libc::setsid() }).ctx("setsid")?;
            None
        }
    };
    let mut env = process.env.clone();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let spec_user = &process.user;
    let named = spec_user.name.as_deref().map(|n| user::resolve(n, &passwd, &group)).transpose()?;
    let (uid, gid) = named.as_ref().map_or((spec_user.uid, spec_user.gid), |u| (u.uid, u.gid));
    let mut groups = spec_user.additional_gids.clone();
    for g in &spec_user.additional_groups {
        let gid = user::resolve_group(g, &group)?;
        if !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    for g in named.iter().flat_map(|u| u.additional_gids.iter()) {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // Like runc: HOME from the user's passwd entry, else "/".
        let home = match &named {
            Some(u) => u.home.clone(),
            None => user::resolve(&uid.to_string(), &passwd, &group).map(|u| u.home).unwrap_or_else(|_| "/".into()),
        };
        env.push(format!("HOME={home}"));
    }
    if let Some(adj) = process.oom_score_adj {
        sys::write_file("/proc/self/oom_score_adj", &adj.to_string()).ctx("set oom_score_adj")?;
    }
    apply_rlimits(process)?;
    if role == Role::Init {
        ensure_cwd(&process.cwd, uid, gid)?;
    }
    let sets = match &process.capabilities {
        Some(c) => c.sets(),
        None => caps::docker_default_sets(),
    };
    let mut masks = caps::Masks::from_sets(&sets)?;
    masks.limit_to(caps::current_permitted()?);
    if let Some(sc) = seccomp {
        // While we still hold CAP_SYS_ADMIN (no_new_privs is not required then).
        seccomp::install(&seccomp::compile(sc)?)?;
    }
    caps::drop_bounding(masks.bounding)?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 1).ctx("keep capabilities across setuid")?;
    sys::cvt(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).ctx("setgroups")?;
    sys::cvt(unsafe { libc::setresgid(gid, gid, gid) }).with_ctx(|| format!("setgid {gid}"))?;
    sys::cvt(unsafe { libc::setresuid(uid, uid, uid) }).with_ctx(|| format!("setuid {uid}"))?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0).ctx("reset keep-capabilities")?;
    caps::apply(&masks)?;
    if let Err(e) = std::env::set_current_dir(&process.cwd) {
        return Err(Error::Setup(format!("chdir to cwd ({:?}) set in config.json failed: {}", process.cwd, sys::errno_text(e.raw_os_error().unwrap_or(0)))));
    }
    if process.no_new_privileges {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).ctx("set no_new_privs")?;
    }
    let command = lookup(&process.args[0], &env).and_then(|path| {
        let c = |s: &str| sys::cstr(s).map_err(|e| Error::Spec(e.to_string()));
        let argv = process.args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
        let envp = env.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
        Ok((c(&path)?, argv, envp))
    });
    sys::cloexec_from(3).ctx("mark fds close-on-exec")?;
    Ok((master, command))
}

/// Rlimits from the spec. A hard limit above ours needs CAP_SYS_RESOURCE; without
/// it (a sandboxed daemon) the limit is lowered to ours rather than failing.
fn apply_rlimits(process: &Process) -> Result<()> {
    for r in &process.rlimits {
        let res = sys::rlimit_resource(&r.kind)?;
        if sys::setrlimit(res, r.soft, r.hard).is_ok() {
            continue;
        }
        let (_, cur_hard) = sys::getrlimit(res).with_ctx(|| format!("getrlimit {}", r.kind))?;
        let hard = r.hard.min(cur_hard);
        sys::setrlimit(res, r.soft.min(hard), hard).with_ctx(|| format!("set {} to {}:{}", r.kind, r.soft, r.hard))?;
    }
    Ok(())
}

/// Create a missing working directory (Docker does), owned by the process's user.
fn ensure_cwd(cwd: &str, uid: u32, gid: u32) -> Result<()> {
    let mut path = String::new();
    for comp in cwd.split('/').filter(|c| !c.is_empty()) {
        path.push('/');
        path.push_str(comp);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("working directory {cwd}"), e)),
        }
        let c = sys::cstr(&path).ctx("working directory")?;
        match sys::cvt(unsafe { libc::mkdir(c.as_ptr(), 0o755) }) {
            Ok(_) => {
                unsafe { libc::chown(c.as_ptr(), uid, gid) };
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(Error::io(format!("create working directory {cwd}"), e)),
        }
    }
    Ok(())
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolve the command like Go's exec.LookPath (what runc uses), with the PATH of
/// the container's env; errors carry Docker's text and exit code.
pub fn lookup(cmd: &str, env: &[String]) -> Result<String> {
    if cmd.contains('/') {
        return check_executable(cmd).map(|_| cmd.to_string()).map_err(|errno| exec_error(cmd, errno, true));
    }
    let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':') {
        // An empty PATH element means ".", which Go refuses to resolve to (ErrDot).
        if dir.is_empty() || dir == "." {
            continue;
        }
        let candidate = format!("{}/{cmd}", dir.trim_end_matches('/'));
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(Error::Exec { message: format!("exec: \"{cmd}\": executable file not found in $PATH"), code: 127 })
}

fn exec_error(cmd: &str, errno: i32, with_slash: bool) -> Error {
    let (code, text) = match errno {
        libc::ENOENT if with_slash => (127, format!("stat {cmd}: no such file or directory")),
        libc::EISDIR => (126, "is a directory".to_string()),
        libc::EACCES | libc::EPERM => (126, "permission denied".to_string()),
        libc::ENOENT => (127, "no such file or directory".to_string()),
        e => (126, sys::errno_text(e)),
    };
    Error::Exec { message: format!("exec: \"{cmd}\": {text}"), code }
}

fn check_executable(path: &str) -> std::result::Result<(), i32> {
    let st = sys::stat(path).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    if sys::is_dir(&st) {
        return Err(libc::EISDIR);
    }
    let c = sys::cstr(path).map_err(|_| libc::EINVAL)?;
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) } != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES));
    }
    Ok(())
}

/// The monitor blocks and ignores signals for itself; the container must start
/// with every signal unblocked and at its default disposition.
fn reset_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reports_docker_messages() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        let e = lookup("surely-not-a-command", &env).unwrap_err();
        assert_eq!(e.to_string(), "exec: \"surely-not-a-command\": executable file not found in $PATH");
        assert_eq!(e.exit_code(), 127);
        let e = lookup("/nonexistent/x", &env).unwrap_err();
        assert_eq!(e.to_string(), "exec: \"/nonexistent/x\": stat /nonexistent/x: no such file or directory");
        assert_eq!(e.exit_code(), 127);
        let e = lookup("/tmp", &env).unwrap_err();
        assert_eq!((e.to_string().as_str(), e.exit_code()), ("exec: \"/tmp\": is a directory", 126));
        assert_eq!(lookup("sh", &env).unwrap(), "/bin/sh");
    }

    #[test]
    fn error_packets_round_trip() {
        let e = Error::Exec { message: "exec: \"x\": permission denied".into(), code: 126 };
        let back = parse_error_packet(&error_packet(&e)).unwrap();
        assert_eq!((back.exit_code(), back.to_string()), (126, e.to_string()));
        let back = parse_error_packet(&error_packet(&Error::Setup("mount /proc: busy".into()))).unwrap();
        assert_eq!((back.exit_code(), back.to_string()), (125, "mount /proc: busy".to_string()));
    }
}
