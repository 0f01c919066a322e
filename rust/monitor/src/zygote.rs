//! `berth-monitor zygote`: the daemon's monitor factory.
//!
//! Executing berth-monitor for every container costs more than the rest of its
//! start: execve, the dynamic loader, and glibc's CPU feature probing (cpuid,
//! which traps to the hypervisor on a VM). The daemon starts one zygote instead
//! and sends it a request per container; the zygote forks, and the child does
//! what `berth-monitor <args>` would have done (it forks the monitor, relays its
//! report and exits), so the monitor ends up where it always did: in its own
//! session, reparented to init, outliving the zygote and the daemon.
//!
//! Protocol, on fd 0 (a SOCK_SEQPACKET socket): one packet per request, the
//! command line's arguments separated by NUL bytes, with one fd attached (the
//! write end of a pipe). The child's stdout and stderr are that pipe, so the
//! daemon reads exactly what the command line's stdout and stderr would carry:
//! the `{"monitorPid":…}` line, or an error line (`{"message":…}`). EOF on the
//! socket (the daemon closed it, or died) ends the zygote; it never runs
//! anything of its own, so it holds no state worth keeping.

use std::os::fd::{AsRawFd, OwnedFd};

use berth_runtime::sys;

pub fn serve() -> ! {
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
                let _ = write_all(&report, format!("{line}\n").as_bytes());
            }
            _ => {} // our copy of the pipe closes here; the child answers on it
        }
    }
}

/// The children that relayed their report and exited (the monitors they forked
/// are not ours: they are reparented to init when their parent exits).
fn reap_children() {
    let mut status = 0;
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

fn child(request: &[u8], report: OwnedFd) -> ! {
    // stdin from /dev/null, not the daemon's socket; stdout and stderr to the report pipe.
    let redirected = sys::open("/dev/null", libc::O_RDWR).and_then(|null| {
        sys::dup2(null.as_raw_fd(), 0)?;
        sys::dup2(report.as_raw_fd(), 1)?;
        sys::dup2(report.as_raw_fd(), 2)
    });
    if let Err(e) = redirected {
        let line = serde_json::json!({"message": format!("zygote: redirect stdio: {e}"), "exitCode": 125});
        let _ = write_all(&report, format!("{line}\n").as_bytes());
        std::process::exit(1);
    }
    drop(report);
    let args: Vec<String> = request.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    crate::launch(&args)
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
