//! The monitor proper: create the process, then one poll(2) loop over the control
//! socket, its clients, the process's output and a signalfd for SIGCHLD, until the
//! process has exited, its output is drained and the exit is recorded.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use berth_runtime::{process, sys, ChildStdio, Created, Error, ExecSpec, Spec};
use serde_json::{json, Value};

use crate::logfile::{self, JsonLog};
use crate::proto;
use crate::Mode;

/// Stop reading the process's output while a client has this much unsent.
const CLIENT_HIGH_WATER: usize = 1 << 20;
/// Cap on stdin bytes queued for a process that does not read them.
const STDIN_HIGH_WATER: usize = 1 << 20;
/// After the process exited, how long a quiet output is awaited before it is
/// given up (stray holders of its pipes: only possible with a shared pid
/// namespace), and the most the whole drain may take.
const DRAIN_MS: i64 = 500;
const DRAIN_MAX_MS: i64 = 5000;
/// After the exit is recorded, a client that takes nothing for this long is
/// dropped (one that keeps reading gets everything).
const CLIENT_STALL_MS: i64 = 10_000;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

struct Output {
    fd: OwnedFd,
    /// 0 stdout, 1 stderr.
    stream: usize,
}

struct Client {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    attached: bool,
    streams: [bool; 2],
    stdin: bool,
    waiting: bool,
    closed: bool,
}

struct Monitor {
    created: Option<Created>,
    pid: libc::pid_t,
    status: Status,
    created_at: String,
    started_at: Option<String>,
    exit_status: Option<libc::c_int>,
    exit_record: Option<Value>,
    exit_deadline: i64,
    drain_limit: i64,
    stdin_close_pending: bool,
    start_error: Option<String>,
    outputs: Vec<Output>,
    /// Where client stdin goes: the stdin pipe, or a dup of the pty master.
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    stdin_once: bool,
    /// The pty master, for resizing.
    terminal: Option<OwnedFd>,
    log: Option<JsonLog>,
    /// None once the exit is recorded: late connections are refused at once.
    listener: Option<OwnedFd>,
    clients: Vec<Client>,
    sigfd: OwnedFd,
    cgroup_paths: Vec<String>,
    oom_before: u64,
    /// Field 22 of /proc/<pid>/stat: tells a reused pid from ours after we die.
    pid_start_time: Option<u64>,
    /// The container's mount namespace, held so that its teardown happens here
    /// after the exit is reported, not in the exiting process before it: the
    /// overlay's unmount syncs the whole upper filesystem, which can take long.
    mount_ns: Option<OwnedFd>,
}

/// Report to the invoking process: "ok <json>" or "error <json>".
/// One line: the created process holds a copy of the pipe until it execs, so the
/// reader cannot wait for EOF.
fn report(w: &OwnedFd, line: &str) {
    let line = format!("{line}\n");
    let _ = unsafe { libc::write(w.as_raw_fd(), line.as_ptr().cast(), line.len()) };
}

fn report_error(w: OwnedFd, e: &Error) -> i32 {
    let msg = json!({"message": e.to_string(), "exitCode": e.exit_code()});
    report(&w, &format!("error {msg}"));
    1
}

/// A failed create leaves nothing of ours in the directory: the caller has the
/// error, and there is no process to describe.
fn remove_own_files() {
    for f in ["monitor.sock", "monitor.pid", "state.json", "monitor.log"] {
        let _ = std::fs::remove_file(f);
    }
}

pub fn run(mode: Mode, report_w: OwnedFd) -> i32 {
    let dir = match &mode {
        Mode::Container { bundle } => bundle.clone(),
        Mode::Exec { dir, .. } => dir.clone(),
    };
    if let Err(e) = detach(&dir) {
        return report_error(report_w, &e);
    }
    close_inherited_fds(report_w.as_raw_fd());
    let sigfd = match block_signals() {
        Ok(fd) => fd,
        Err(e) => return report_error(report_w, &e),
    };
    // One monitor per directory: a second one would steal the socket.
    if std::os::unix::net::UnixStream::connect("monitor.sock").is_ok() {
        let pid = std::fs::read_to_string("monitor.pid").unwrap_or_default();
        let e = Error::Setup(format!("{} already has a running monitor (pid {})", dir, pid.trim()));
        return report_error(report_w, &e);
    }
    // Leftovers of an earlier run of this bundle (a restart) would be misread.
    for f in ["exit.json", "state.json", "monitor.pid"] {
        let _ = std::fs::remove_file(f);
    }
    match create(&mode, sigfd) {
        Ok(mut m) => {
            let ok = json!({"monitorPid": std::process::id(), "pid": m.pid});
            report(&report_w, &format!("ok {ok}"));
            drop(report_w);
            m.serve();
            0
        }
        Err(e) => {
            remove_own_files();
            report_error(report_w, &e)
        }
    }
}

/// Become a daemon: own session, stdio away from the caller, cwd in our dir, and
/// a subreaper so orphans of a host-pid-namespace container are reaped here.
fn detach(dir: &str) -> Result<(), Error> {
    unsafe { libc::setsid() };
    std::env::set_current_dir(dir).map_err(|e| Error::io(format!("chdir {dir}"), e))?;
    let null = sys::open("/dev/null", libc::O_RDWR).map_err(|e| Error::io("open /dev/null", e))?;
    let log = sys::open("monitor.log", libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND).map_err(|e| Error::io("open monitor.log", e))?;
    for (from, to) in [(&null, 0), (&log, 1), (&log, 2)] {
        sys::dup2(from.as_raw_fd(), to).map_err(|e| Error::io("redirect stdio", e))?;
    }
    let _ = sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    Ok(())
}

/// Whatever fds the invoker leaked to us (a daemon's sockets) are not ours to hold
/// for the container's lifetime.
fn close_inherited_fds(keep: RawFd) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // The directory fd used for the listing is already closed: EBADF, harmless.
        unsafe { libc::close(fd) };
    }
}

/// SIGCHLD through a signalfd; termination signals are blocked (the daemon talks
/// to us over the socket, and a stray ^C must not orphan a container's output).
fn block_signals() -> Result<OwnedFd, Error> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let fd = sys::cvt(libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)).map_err(|e| Error::io("signalfd", e))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn set_nonblocking(fd: RawFd) {
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn create(mode: &Mode, sigfd: OwnedFd) -> Result<Monitor, Error> {
    let (container, process, cgroup_paths, log_path) = match mode {
        Mode::Container { .. } => {
            let spec = Spec::load(std::path::Path::new("spec.json"))?;
            let (p, c, l) = (spec.process.clone(), spec.cgroup_paths.clone(), spec.log_path.clone());
            (spec, p, c, l)
        }
        Mode::Exec { bundle, .. } => {
            let exec = ExecSpec::load(std::path::Path::new("spec.json"))?;
            let container = Spec::load(&std::path::Path::new(bundle).join("spec.json"))?;
            let c = container.cgroup_paths.clone();
            (container, exec.process, c, None)
        }
    };
    let mut outputs = Vec::new();
    let mut stdin = None;
    let stdio = if process.terminal {
        ChildStdio::Terminal
    } else {
        let (out_r, out_w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
        let (err_r, err_w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
        outputs.push(Output { fd: out_r, stream: 0 });
        outputs.push(Output { fd: err_r, stream: 1 });
        let child_in = if process.open_stdin {
            let (in_r, in_w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
            stdin = Some(in_w);
            Some(in_r)
        } else {
            None
        };
        ChildStdio::Pipes { stdin: child_in, stdout: out_w, stderr: err_w }
    };
    let created = match mode {
        Mode::Container { .. } => process::create_container(&container, stdio)?,
        Mode::Exec { bundle, .. } => {
            let init_pid = container_pid(bundle)?;
            process::create_exec(init_pid, &cgroup_paths, container.seccomp.as_ref(), &process, stdio)?
        }
    };
    let pid = created.pid;
    let log = match &log_path {
        Some(p) => match JsonLog::open(p) {
            Ok(l) => Some(l),
            Err(e) => {
                discard(&created);
                return Err(Error::io(format!("open log {p}"), e));
            }
        },
        None => None,
    };
    let mut terminal = None;
    if let Some(master) = &created.master {
        // Separate fds for output, input and resizing: each goes away on its own.
        let dup = || -> Result<OwnedFd, Error> {
            let fd = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            Ok(unsafe { OwnedFd::from_raw_fd(sys::cvt(fd).map_err(|e| Error::io("dup pty master", e))?) })
        };
        outputs.push(Output { fd: dup()?, stream: 0 });
        if process.open_stdin {
            stdin = Some(dup()?);
        }
        terminal = Some(dup()?);
    }
    for o in &outputs {
        set_nonblocking(o.fd.as_raw_fd());
    }
    if let Some(s) = &stdin {
        set_nonblocking(s.as_raw_fd());
    }
    let listener = match listen("monitor.sock") {
        Ok(l) => l,
        Err(e) => {
            discard(&created);
            return Err(e);
        }
    };
    let now = logfile::timestamp();
    let m = Monitor {
        created: Some(created),
        pid,
        status: Status::Created,
        created_at: now,
        started_at: None,
        exit_status: None,
        exit_record: None,
        exit_deadline: 0,
        drain_limit: 0,
        stdin_close_pending: false,
        start_error: None,
        outputs,
        stdin,
        stdin_pending: Vec::new(),
        stdin_once: process.stdin_once,
        terminal,
        log,
        listener: Some(listener),
        clients: Vec::new(),
        sigfd,
        oom_before: oom_kills(&cgroup_paths),
        pid_start_time: pid_start_time(pid),
        cgroup_paths,
        mount_ns: match mode {
            // Best effort: without it the teardown is merely on the exit path.
            Mode::Container { .. } => sys::open(&format!("/proc/{pid}/ns/mnt"), libc::O_RDONLY).ok(),
            Mode::Exec { .. } => None,
        },
    };
    write_atomic("monitor.pid", format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| Error::io("write monitor.pid", e))?;
    m.write_state();
    Ok(m)
}

/// Kill and reap a created process we cannot go on with.
fn discard(created: &Created) {
    unsafe {
        libc::kill(created.pid, libc::SIGKILL);
        libc::waitpid(created.pid, std::ptr::null_mut(), 0);
    }
}

/// The init pid of the container whose monitor serves `<bundle>/monitor.sock`.
fn container_pid(bundle: &str) -> Result<libc::pid_t, Error> {
    let not_running = || Error::Setup(format!("container {} is not running", container_name(bundle)));
    let dir = sys::open(bundle, libc::O_PATH | libc::O_DIRECTORY).map_err(|e| Error::io(format!("open {bundle}"), e))?;
    // Through our fd: the socket path stays short whatever the bundle path is.
    let path = format!("/proc/self/fd/{}/monitor.sock", dir.as_raw_fd());
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|_| not_running())?;
    use std::io::{Read, Write};
    s.write_all(&proto::frame(b'S', b"")).map_err(|_| not_running())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((kind, payload))) = proto::take_frame(&mut buf) {
            let v: Value = serde_json::from_slice(&payload).map_err(|_| not_running())?;
            if kind == b'O' && v["status"] == "running" {
                return v["pid"].as_i64().map(|p| p as libc::pid_t).ok_or_else(not_running);
            }
            return Err(not_running());
        }
        let n = s.read(&mut chunk).map_err(|_| not_running())?;
        if n == 0 {
            return Err(not_running());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn container_name(bundle: &str) -> String {
    std::path::Path::new(bundle).file_name().map_or_else(|| bundle.to_string(), |n| n.to_string_lossy().into_owned())
}

fn listen(name: &str) -> Result<OwnedFd, Error> {
    let _ = std::fs::remove_file(name);
    let fd = sys::cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) })
        .map_err(|e| Error::io("socket", e))?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in name.as_bytes().iter().enumerate() {
        addr.sun_path[i] = *b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + name.len() + 1) as libc::socklen_t;
    sys::cvt(unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) })
        .map_err(|e| Error::io(format!("bind {name}"), e))?;
    // Only root (the daemon) may drive the container.
    let c = sys::cstr(name).unwrap();
    unsafe { libc::chmod(c.as_ptr(), 0o600) };
    sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) }).map_err(|e| Error::io("listen", e))?;
    Ok(fd)
}

/// write temp + rename: readers see the old file or the whole new one (see
/// sync_durably for surviving a power loss).
fn write_atomic(name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = format!(".{name}.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    std::fs::rename(&tmp, name)
}

/// fsync a file and its directory (here: ours).
fn sync_durably(name: &str) {
    for path in [name, "."] {
        if let Ok(f) = std::fs::File::open(path) {
            if let Err(e) = f.sync_all() {
                eprintln!("berth-monitor: fsync {path}: {e}");
            }
        }
    }
}

/// OOM kills counted by the memory cgroup (v1 memory.oom_control, v2 memory.events).
fn oom_kills(paths: &[String]) -> u64 {
    let mut total = 0;
    for p in paths {
        for file in ["memory.oom_control", "memory.events"] {
            if let Ok(text) = std::fs::read_to_string(format!("{p}/{file}")) {
                total += text
                    .lines()
                    .filter_map(|l| l.strip_prefix("oom_kill "))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
    }
    total
}

fn pid_start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn now_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

impl Monitor {
    fn state_json(&self) -> Value {
        let mut v = json!({
            "status": self.status.name(),
            "pid": self.pid,
            "monitorPid": std::process::id(),
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "terminal": self.terminal.is_some(),
            "pidStartTime": self.pid_start_time,
        });
        if self.status == Status::Exited {
            v["exit"] = self.exit_json();
        }
        v
    }

    fn write_state(&self) {
        let data = serde_json::to_vec(&self.state_json()).unwrap();
        if let Err(e) = write_atomic("state.json", &data) {
            eprintln!("berth-monitor: write state.json: {e}");
        }
    }

    fn exit_json(&self) -> Value {
        self.exit_record.clone().unwrap_or(Value::Null)
    }

    fn record_exit(&mut self, status: libc::c_int) {
        let (code, signal) = if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(status), None)
        };
        self.exit_status = Some(status);
        self.exit_record = Some(json!({
            "exitCode": code,
            "signal": signal,
            "oomKilled": oom_kills(&self.cgroup_paths) > self.oom_before,
            "pid": self.pid,
            "startedAt": self.started_at,
            "finishedAt": logfile::timestamp(),
            "error": self.start_error,
        }));
        self.status = Status::Exited;
        self.exit_deadline = now_ms() + DRAIN_MS;
        self.drain_limit = now_ms() + DRAIN_MAX_MS;
        // Nobody reads stdin any more; the sync socket and pty master go too.
        self.stdin = None;
        self.stdin_pending.clear();
        self.created = None;
    }

    /// The main loop; returns once the exit is recorded and clients are told.
    fn serve(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = now_ms();
            if self.status == Status::Exited && (self.outputs.is_empty() || now >= self.exit_deadline.min(self.drain_limit)) {
                break;
            }
            let mut pfds: Vec<libc::pollfd> = Vec::new();
            let pfd = |fd: RawFd, events: libc::c_short| libc::pollfd { fd, events, revents: 0 };
            pfds.push(pfd(self.sigfd.as_raw_fd(), libc::POLLIN));
            pfds.push(pfd(self.listener.as_ref().map_or(-1, |l| l.as_raw_fd()), libc::POLLIN));
            // Backpressure from slow clients while the process runs; once it has
            // exited, what is left in its pipes is bounded: take it all, so the
            // exit is recorded without waiting for any client.
            let read_output =
                self.status == Status::Exited || !self.clients.iter().any(|c| c.outbuf.len() > CLIENT_HIGH_WATER);
            let n_out = if read_output { self.outputs.len() } else { 0 };
            for o in &self.outputs[..n_out] {
                pfds.push(pfd(o.fd.as_raw_fd(), libc::POLLIN));
            }
            let stdin_slot = match (&self.stdin, self.stdin_pending.is_empty()) {
                (Some(fd), false) => {
                    pfds.push(pfd(fd.as_raw_fd(), libc::POLLOUT));
                    true
                }
                _ => false,
            };
            let client_base = pfds.len();
            // accept() below appends clients; only these were polled.
            let polled_clients = self.clients.len();
            let read_clients = self.stdin_pending.len() < STDIN_HIGH_WATER;
            for c in &self.clients {
                let mut ev = if read_clients { libc::POLLIN } else { 0 };
                if !c.outbuf.is_empty() {
                    ev |= libc::POLLOUT;
                }
                pfds.push(pfd(c.fd.as_raw_fd(), ev));
            }
            let timeout = if self.status == Status::Exited {
                (self.exit_deadline.min(self.drain_limit) - now_ms()).max(0) as i32
            } else {
                -1
            };
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // Only ENOMEM is possible here: the container outlives a bad moment.
                eprintln!("berth-monitor: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            if pfds[0].revents != 0 {
                self.reap();
            }
            if pfds[1].revents != 0 {
                self.accept();
            }
            let mut closed_outputs = Vec::new();
            for (i, p) in pfds[2..2 + n_out].iter().enumerate() {
                if p.revents != 0 && !self.read_output(i, &mut buf) {
                    closed_outputs.push(i);
                }
            }
            for i in closed_outputs.into_iter().rev() {
                self.outputs.remove(i);
            }
            if stdin_slot && pfds[2 + n_out].revents != 0 {
                self.flush_stdin();
            }
            for i in 0..polled_clients {
                let rev = pfds[client_base + i].revents;
                if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.read_client(i, &mut buf);
                }
                if rev & libc::POLLOUT != 0 {
                    self.write_client(i);
                }
            }
            self.drop_closed_clients();
        }
        self.finish();
    }

    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) } > 0 {}
        loop {
            let mut status = 0;
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == self.pid && self.status != Status::Exited {
                self.record_exit(status);
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        let listener = listener.as_raw_fd();
        loop {
            let fd = unsafe {
                libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            };
            if fd < 0 {
                return;
            }
            self.clients.push(Client {
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                attached: false,
                streams: [false, false],
                stdin: false,
                waiting: false,
                closed: false,
            });
        }
    }

    /// false once the output is closed (EOF, or EIO from a pty whose slave is gone).
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let n = unsafe { libc::read(self.outputs[i].fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            return matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
        }
        if n == 0 {
            return false;
        }
        if self.status == Status::Exited {
            self.exit_deadline = now_ms() + DRAIN_MS;
        }
        let data = &buf[..n as usize];
        let stream = self.outputs[i].stream;
        if let Some(log) = &mut self.log {
            log.write(stream, data);
        }
        for c in self.clients.iter_mut().filter(|c| c.attached && c.streams[stream]) {
            proto::push_frame(&mut c.outbuf, b'1' + stream as u8, data);
        }
        true
    }

    fn flush_stdin(&mut self) {
        if let Some(fd) = &self.stdin {
            let n = unsafe { libc::write(fd.as_raw_fd(), self.stdin_pending.as_ptr().cast(), self.stdin_pending.len()) };
            if n > 0 {
                self.stdin_pending.drain(..n as usize);
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPIPE) {
                // The process closed its stdin: drop what it will never read.
                self.stdin_pending.clear();
                self.stdin = None;
            }
        }
        if self.stdin_pending.is_empty() && self.stdin_close_pending {
            self.stdin = None;
        }
    }

    fn close_stdin(&mut self) {
        // Docker's rule: without stdinOnce, stdin stays open for the next attach.
        if !self.stdin_once {
            return;
        }
        if self.stdin_pending.is_empty() {
            self.stdin = None;
        } else {
            self.stdin_close_pending = true;
        }
    }

    fn read_client(&mut self, i: usize, buf: &mut [u8]) {
        let n = unsafe { libc::read(self.clients[i].fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if !matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                self.client_gone(i);
            }
            return;
        }
        if n == 0 {
            self.client_gone(i);
            return;
        }
        self.clients[i].inbuf.extend_from_slice(&buf[..n as usize]);
        loop {
            match proto::take_frame(&mut self.clients[i].inbuf) {
                Ok(Some((kind, payload))) => self.handle(i, kind, &payload),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("berth-monitor: client: {e}");
                    self.client_gone(i);
                    break;
                }
            }
        }
    }

    fn client_gone(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.closed = true;
        if c.stdin {
            c.stdin = false;
            self.close_stdin();
        }
    }

    fn write_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.outbuf.is_empty() {
            return;
        }
        let n = unsafe { libc::send(c.fd.as_raw_fd(), c.outbuf.as_ptr().cast(), c.outbuf.len(), libc::MSG_NOSIGNAL) };
        if n > 0 {
            c.outbuf.drain(..n as usize);
        } else if n < 0 && !matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            c.outbuf.clear();
            self.client_gone(i);
        }
    }

    fn drop_closed_clients(&mut self) {
        self.clients.retain(|c| !c.closed);
    }

    fn reply(&mut self, i: usize, kind: u8, v: &Value) {
        let payload = serde_json::to_vec(v).unwrap();
        proto::push_frame(&mut self.clients[i].outbuf, kind, &payload);
        self.write_client(i);
    }

    fn handle(&mut self, i: usize, kind: u8, payload: &[u8]) {
        let args: Value = if payload.is_empty() || kind == b'i' { Value::Null } else { serde_json::from_slice(payload).unwrap_or(Value::Null) };
        match kind {
            b'S' => {
                let st = self.state_json();
                self.reply(i, b'O', &st);
            }
            b'G' => self.start(i),
            b'K' => self.kill(i, &args),
            b'R' => self.resize(i, &args),
            b'W' => self.clients[i].waiting = true,
            b'A' => {
                let c = &mut self.clients[i];
                let flag = |k: &str| args.get(k).and_then(Value::as_bool).unwrap_or(false);
                c.attached = true;
                c.streams = [flag("stdout"), flag("stderr")];
                c.stdin = flag("stdin") && self.stdin.is_some();
                self.reply(i, b'O', &json!({"terminal": self.terminal.is_some(), "stdin": self.clients[i].stdin}));
            }
            b'i' => {
                if self.clients[i].stdin && self.stdin.is_some() {
                    self.stdin_pending.extend_from_slice(payload);
                    self.flush_stdin();
                }
            }
            b'c' => {
                if self.clients[i].stdin {
                    self.clients[i].stdin = false;
                    self.close_stdin();
                }
            }
            other => {
                let msg = format!("unknown request {:?}", other as char);
                self.reply(i, b'E', &json!({"message": msg}));
            }
        }
    }

    fn start(&mut self, i: usize) {
        if self.status != Status::Created {
            let msg = format!("process already {}", if self.status == Status::Running { "started" } else { "exited" });
            self.reply(i, b'E', &json!({"message": msg, "exitCode": 125, "status": self.status.name()}));
            return;
        }
        let created = self.created.as_ref().expect("created process");
        self.started_at = Some(logfile::timestamp());
        match created.start() {
            Ok(()) => {
                self.status = Status::Running;
                self.write_state();
                self.reply(i, b'O', &json!({"pid": self.pid}));
            }
            Err(e) => {
                self.started_at = None;
                self.start_error = Some(e.to_string());
                let v = json!({"message": e.to_string(), "exitCode": e.exit_code()});
                self.reply(i, b'E', &v);
            }
        }
    }

    fn kill(&mut self, i: usize, args: &Value) {
        let Some(sig) = args.get("signal").and_then(Value::as_i64) else {
            return self.reply(i, b'E', &json!({"message": "kill: no signal given"}));
        };
        if self.status == Status::Exited {
            return self.reply(i, b'E', &json!({"message": "process has already exited", "status": "exited"}));
        }
        // Our child, not yet reaped: the pid cannot have been reused.
        if unsafe { libc::kill(self.pid, sig as libc::c_int) } == 0 {
            self.reply(i, b'O', &json!({}));
        } else {
            let e = std::io::Error::last_os_error();
            self.reply(i, b'E', &json!({"message": format!("kill {} with signal {sig}: {e}", self.pid)}));
        }
    }

    fn resize(&mut self, i: usize, args: &Value) {
        let Some(fd) = self.terminal.as_ref().map(|t| t.as_raw_fd()) else {
            return self.reply(i, b'E', &json!({"message": "the process has no terminal to resize"}));
        };
        let dim = |k: &str| args.get(k).and_then(Value::as_u64).filter(|v| *v <= u16::MAX as u64);
        let (Some(h), Some(w)) = (dim("height"), dim("width")) else {
            return self.reply(i, b'E', &json!({"message": "resize: height and width must be numbers up to 65535"}));
        };
        let ws = libc::winsize { ws_row: h as u16, ws_col: w as u16, ws_xpixel: 0, ws_ypixel: 0 };
        if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } == 0 {
            self.reply(i, b'O', &json!({}));
        } else {
            let e = std::io::Error::last_os_error();
            self.reply(i, b'E', &json!({"message": format!("resize: {e}")}));
        }
    }

    /// Record the exit, tell the clients, and stop serving.
    fn finish(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush();
        }
        let exit = self.exit_json();
        let data = serde_json::to_vec(&exit).unwrap();
        // Atomic for readers at once (temp + rename); made durable below, after
        // the clients are told: an fsync costs milliseconds that `docker run`
        // would otherwise wait for, and a power loss ends the container anyway.
        if let Err(e) = write_atomic("exit.json", &data) {
            eprintln!("berth-monitor: write exit.json: {e}");
        }
        // New connections now fail, and clients read exit.json instead.
        let _ = std::fs::remove_file("monitor.sock");
        self.listener = None;
        for i in 0..self.clients.len() {
            if self.clients[i].attached || self.clients[i].waiting {
                proto::push_frame(&mut self.clients[i].outbuf, b'X', &data);
                self.write_client(i);
            }
        }
        self.write_state();
        self.mount_ns = None; // the namespace goes now, the clients already know
        sync_durably("exit.json");
        // Clients get all their frames as long as they keep reading.
        let mut deadline = now_ms() + CLIENT_STALL_MS;
        loop {
            self.clients.retain(|c| !c.closed && !c.outbuf.is_empty());
            if self.clients.is_empty() || now_ms() >= deadline {
                break;
            }
            let mut pfds: Vec<libc::pollfd> =
                self.clients.iter().map(|c| libc::pollfd { fd: c.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 }).collect();
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
            let before: usize = self.clients.iter().map(|c| c.outbuf.len()).sum();
            for (i, p) in pfds.iter().enumerate() {
                if p.revents != 0 {
                    self.write_client(i);
                }
            }
            if self.clients.iter().map(|c| c.outbuf.len()).sum::<usize>() < before {
                deadline = now_ms() + CLIENT_STALL_MS;
            }
        }
    }
}
