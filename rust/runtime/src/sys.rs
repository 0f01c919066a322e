//! Thin, safe wrappers over the Linux system calls the runtime needs. Every fd made
//! here is O_CLOEXEC: nothing of the host may reach a container through exec
//! (CVE-2024-21626 leaked a host cgroup directory fd as the container's cwd).
//!
//! Kernel requirements: clone3 (5.3, falls back to clone), openat2 (5.6),
//! close_range (5.11, falls back to /proc/self/fd), overlay `lowerdir+` (6.8, falls
//! back to mount(2) option strings).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_long, c_ulong, c_void, pid_t};

use crate::error::{Error, Result};

pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains a NUL byte")))
}

pub fn cvt(r: c_int) -> io::Result<c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

pub fn cvt_l(r: c_long) -> io::Result<c_long> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

pub fn mount(src: Option<&str>, target: &str, fstype: Option<&str>, flags: c_ulong, data: Option<&str>) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(cstr).transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    cvt(unsafe {
        libc::mount(p(&src), target.as_ptr(), p(&fstype), flags, p(&data).cast::<c_void>())
    })?;
    Ok(())
}

pub fn umount_detach(target: &str) -> io::Result<()> {
    let t = cstr(target)?;
    cvt(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

pub fn pivot_root(new_root: &str, put_old: &str) -> io::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    cvt_l(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) })?;
    Ok(())
}

pub fn open(path: &str, flags: c_int) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let fd = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o666) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn openat(dir: RawFd, path: &str, flags: c_int, mode: u32) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let fd = cvt(unsafe { libc::openat(dir, p.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): resolve `path` below `dir` with `resolve` flags (RESOLVE_IN_ROOT makes
/// `..` and absolute symlinks stop at `dir`, so a rootfs cannot point us at the host).
pub fn openat2(dir: RawFd, path: &str, flags: c_int, resolve: u64) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve };
    let fd = cvt_l(unsafe {
        libc::syscall(libc::SYS_openat2, dir, p.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

pub fn stat(path: &str) -> io::Result<libc::stat> {
    let p = cstr(path)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::stat(p.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// fork(2) into new namespaces (`flags` = CLONE_NEW*): clone3, or clone where the
/// kernel lacks clone3. With `cgroup` (a cgroup v2 directory fd) the child is born
/// in that cgroup (CLONE_INTO_CGROUP); any error then is returned so the caller can
/// retry without it. Returns 0 in the child. Only safe in a single-threaded
/// process, which the monitor is.
pub fn fork_into(flags: u64, cgroup: Option<RawFd>) -> io::Result<pid_t> {
    let mut args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r >= 0 {
        return Ok(r as pid_t);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) || cgroup.is_some() {
        return Err(err);
    }
    // Null stack: the child runs on a copy of ours, like fork.
    let r = unsafe {
        libc::syscall(libc::SYS_clone, flags as c_ulong | libc::SIGCHLD as c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    cvt_l(r).map(|p| p as pid_t)
}

pub fn is_cgroup2(path: &str) -> bool {
    let Ok(c) = cstr(path) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC }
}

pub fn setns(fd: RawFd, nstype: c_int) -> io::Result<()> {
    cvt(unsafe { libc::setns(fd, nstype) })?;
    Ok(())
}

/// Mark every fd from `first` up close-on-exec, so the exec drops all of them.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: c_int = 1 << 2;
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Older kernels: walk our fd table (collect first: the directory fd is in it).
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in fds {
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send one packet, with an fd attached (SCM_RIGHTS) when given.
pub fn send_packet(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let mut cbuf = [0u64; 8];
    if let Some(fd) = fd {
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), fd);
        }
    }
    loop {
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one packet (empty Vec and no fd on EOF); a passed fd comes back owned and
/// close-on-exec.
pub fn recv_packet(sock: RawFd) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 65536];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cbuf = [0u64; 8];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fd = None;
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<c_int>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    buf.truncate(n);
    Ok((buf, fd))
}

pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    if from == to {
        // dup2 would keep FD_CLOEXEC; clear it so the fd survives exec.
        cvt(unsafe { libc::fcntl(from, libc::F_SETFD, 0) })?;
    } else {
        cvt(unsafe { libc::dup2(from, to) })?;
    }
    Ok(())
}

pub fn prctl(option: c_int, arg: c_ulong) -> io::Result<()> {
    cvt(unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) })?;
    Ok(())
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

pub fn set_domainname(name: &str) -> io::Result<()> {
    cvt(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

const RLIMITS: &[(&str, libc::__rlimit_resource_t)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

/// `RLIMIT_NOFILE` (or Docker's `nofile`) -> the resource number.
pub fn rlimit_resource(name: &str) -> Result<libc::__rlimit_resource_t> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") { upper } else { format!("RLIMIT_{upper}") };
    RLIMITS
        .iter()
        .find(|(n, _)| *n == full)
        .map(|(_, r)| *r)
        .ok_or_else(|| Error::Spec(format!("unknown rlimit {name:?}")))
}

pub fn getrlimit(res: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    cvt(unsafe { libc::getrlimit(res, &mut r) })?;
    Ok((r.rlim_cur, r.rlim_max))
}

pub fn setrlimit(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let r = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    cvt(unsafe { libc::setrlimit(res, &r) })?;
    Ok(())
}

// The fd-based mount API (Linux 5.2); constants from <linux/mount.h>.
const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;

pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let t = cstr(fstype)?;
    let fd = cvt_l(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

pub fn fsconfig_string(fs: RawFd, key: &str, value: &str) -> io::Result<()> {
    let k = cstr(key)?;
    let v = cstr(value)?;
    cvt_l(unsafe { libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) })?;
    Ok(())
}

pub fn fsconfig_create(fs: RawFd) -> io::Result<()> {
    cvt_l(unsafe {
        libc::syscall(libc::SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, std::ptr::null::<u8>(), std::ptr::null::<u8>(), 0)
    })?;
    Ok(())
}

pub fn fsmount(fs: RawFd, attr_flags: u32) -> io::Result<OwnedFd> {
    let fd = cvt_l(unsafe { libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, attr_flags) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// Attach a detached mount (from fsmount) on `target`.
pub fn move_mount_to(mnt: RawFd, target: &str) -> io::Result<()> {
    let empty = cstr("")?;
    let t = cstr(target)?;
    cvt_l(unsafe {
        libc::syscall(libc::SYS_move_mount, mnt, empty.as_ptr(), libc::AT_FDCWD, t.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    })?;
    Ok(())
}

pub fn write_file(path: &str, data: &str) -> io::Result<()> {
    let fd = open(path, libc::O_WRONLY)?;
    let r = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

pub fn errno_text(e: i32) -> String {
    unsafe { CStr::from_ptr(libc::strerror(e)) }.to_string_lossy().to_lowercase()
}

/// The inode of a namespace file: two processes share a namespace iff they match.
pub fn ns_inode(path: &str) -> io::Result<u64> {
    Ok(stat(path)?.st_ino)
}
