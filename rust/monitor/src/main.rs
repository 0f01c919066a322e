//! berth-monitor: one small process per container (and per exec) that owns its
//! stdio, log and exit status, so containers outlive the daemon.
//!
//! ```text
//! berth-monitor <bundle>                    create <bundle>/spec.json's container
//! berth-monitor exec <bundle> <exec-dir>    create <exec-dir>/spec.json's process
//!                                           inside <bundle>'s running container
//! ```
//!
//! The invoked process forks the monitor proper and waits: it exits 0 and prints
//! `{"monitorPid":…,"pid":…}` once the process is created (stopped before exec,
//! waiting for a `start` on the control socket), or exits 1 with
//! `{"message":…,"exitCode":…}` on stderr. The monitor is then nobody's child
//! (reparented to init), in its own session, a child subreaper, with cwd = its
//! directory and stdio on /dev/null and `monitor.log`. One fork is enough: the
//! classic second fork only keeps a session leader from acquiring a controlling
//! terminal, and the monitor never opens one (a pty master arrives by
//! SCM_RIGHTS from the container's init).
//!
//! Files in the directory (the bundle, or the exec dir):
//! `monitor.pid`, `monitor.sock` (see [`proto`]), `state.json` (created/running,
//! pid, times), `exit.json` (`exitCode`, `signal`, `oomKilled`, `startedAt`,
//! `finishedAt`, `error`), written atomically once the process has exited and its
//! output is drained; the monitor then removes `monitor.sock` and exits.
//! A container's log goes to the spec's `logPath` (Docker's json-file format);
//! an exec's output goes to attached clients only.
//!
//! `berth-monitor zygote` is the same thing without an exec per container: it
//! serves spawn requests from the daemon (see [`zygote`]), forking where the
//! command line would have been run.

mod logfile;
mod monitor;
mod proto;
mod zygote;

use std::io::Write;
use std::os::fd::OwnedFd;

use berth_runtime::sys;

const USAGE: &str = "usage: berth-monitor <bundle> | berth-monitor exec <bundle> <exec-dir> | berth-monitor zygote";

pub enum Mode {
    Container { bundle: String },
    Exec { bundle: String, dir: String },
}

fn absolute(p: &str) -> Result<String, String> {
    std::fs::canonicalize(p)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("{p}: {e}"))
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--version"] => {
            println!("berth-monitor {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0)
        }
        ["exec", bundle, dir] => Ok(Mode::Exec { bundle: absolute(bundle)?, dir: absolute(dir)? }),
        [bundle] if !bundle.starts_with('-') => Ok(Mode::Container { bundle: absolute(bundle)? }),
        _ => Err(USAGE.into()),
    }
}

fn fail_early(message: &str, code: i32) -> ! {
    let out = serde_json::json!({"message": message, "exitCode": code});
    eprintln!("{out}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("zygote") {
        zygote::serve(); // (what follows is room for the monitors' titles)
    }
    launch(&args)
}

/// Create the process the arguments describe under a forked monitor, report as
/// described above, and exit.
fn launch(args: &[String]) -> ! {
    let mode = parse_args(args).unwrap_or_else(|e| fail_early(&e, 125));
    let (report_r, report_w) = sys::pipe().unwrap_or_else(|e| fail_early(&format!("pipe: {e}"), 125));
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail_early(&format!("fork: {}", std::io::Error::last_os_error()), 125);
    }
    if pid > 0 {
        drop(report_w);
        wait_for_report(report_r, pid);
    }
    drop(report_r);
    let code = monitor::run(mode, report_w);
    std::process::exit(code);
}

/// The invoking side: relay the monitor's report and exit. The monitor reports
/// once, then closes the pipe.
fn wait_for_report(r: OwnedFd, child: libc::pid_t) -> ! {
    let f = std::fs::File::from(r);
    let mut report = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut report);
    if let Some(ok) = report.strip_prefix("ok ") {
        println!("{}", ok.trim());
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
    if let Some(err) = report.strip_prefix("error ") {
        eprintln!("{}", err.trim());
        std::process::exit(1);
    }
    // No report: the monitor died; its status says how.
    let mut status = 0;
    unsafe { libc::waitpid(child, &mut status, 0) };
    fail_early(&format!("berth-monitor died before reporting ({})", berth_runtime::process::describe_status(status)), 125)
}
