//! `berth-monitor zygote`: the daemon's monitor factory.
//!
//! Executing berth-monitor for every container costs more than the rest of its
//! start: execve, the dynamic loader, and glibc's CPU feature probing (cpuid,
//! which traps to the hypervisor on a VM). The daemon starts one zygote instead
//! and sends it a request per container; the zygote forks, and the child is the
//! monitor, in its own session. The zygote reaps its monitors as they exit; if
//! the zygote goes first (the daemon stopped or died), they are reparented to
//! init and go on, as with the command line.
//!
//! Protocol, on fd 0 (a SOCK_SEQPACKET socket): one packet per request, the
//! command line's arguments separated by NUL bytes, with one fd attached (the
//! write end of a pipe). The monitor writes its report there and closes it:
//! `ok {"monitorPid":…}` or `error {"message":…}` (the lines the command line
//! relays without their first word). EOF on the socket (the daemon closed it,
//! or died) ends the zygote; it never runs anything of its own, so it holds no
//! state worth keeping.

use std::os::fd::{AsRawFd, OwnedFd};

use berth_runtime::sys;

pub fn serve() -> ! {
    // Monitors are reaped as they exit (recvmsg is interrupted, and resumed).
    unsafe { libc::signal(libc::SIGCHLD, on_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    loop {
        reap_children();
        let (request, report) = match sys::recv_packet(0) {
            Ok(packet) => packet,
            Err(_) => std::process::exit(1),
        };
        if request.is_empty() && report.is_none() {
            std::process::exit(0);
        }
        // A request without its report pipe has nobody to answer: ignored.
        let Some(report) = report else { continue };
        match unsafe { libc::fork() } {
            0 => child(&request, report),
            pid if pid < 0 => {
                let e = std::io::Error::last_os_error();
                let line = serde_json::json!({"message": format!("fork: {e}"), "exitCode": 125});
                let _ = write_all(&report, format!("error {line}\n").as_bytes());
            }
            _ => {} // our copy of the pipe closes here; the child answers on it
        }
    }
}

/// Monitors that exited. Async-signal-safe: waitpid only.
fn reap_children() {
    let mut status = 0;
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

extern "C" fn on_sigchld(_: libc::c_int) {
    let errno = unsafe { *libc::__errno_location() };
    reap_children();
    unsafe { *libc::__errno_location() = errno };
}

fn child(request: &[u8], report: OwnedFd) -> ! {
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let args: Vec<String> = request.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    set_title(request);
    let mode = match crate::parse_args(&args) {
        Ok(mode) => mode,
        Err(e) => {
            let line = serde_json::json!({"message": e, "exitCode": 125});
            let _ = write_all(&report, format!("error {line}\n").as_bytes());
            std::process::exit(1);
        }
    };
    std::process::exit(crate::monitor::run(mode, report))
}

/// Show a monitor as `berth-monitor <its arguments>` (ps, and whoever looks for
/// a bundle's monitor), not as `zygote`: the arguments are written over the
/// zygote's own, in the room the daemon reserved with a padding argument.
fn set_title(request: &[u8]) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    let Some((_, rest)) = stat.rsplit_once(')') else { return };
    // Fields after the command name start at field 3; arg_start and arg_end are 48 and 49.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(start), Some(end)) = (
        fields.get(45).and_then(|f| f.parse::<usize>().ok()),
        fields.get(46).and_then(|f| f.parse::<usize>().ok()),
    ) else {
        return;
    };
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end.saturating_sub(start));
        let Some(argv0) = area.iter().position(|b| *b == 0) else { return };
        let room = &mut area[argv0 + 1..];
        let n = request.len().min(room.len().saturating_sub(1));
        room[..n].copy_from_slice(&request[..n]);
        room[n..].fill(0);
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        data = &data[n as usize..];
    }
    Ok(())
}
