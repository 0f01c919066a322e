//! The container's filesystem, built inside its own (new, private) mount namespace:
//! the overlay rootfs, /proc, /dev, /sys, the spec's mounts, pivot_root, masked and
//! read-only paths. Since every mount lives in that namespace, nothing is left
//! mounted on the host when the container's last process exits.
//!
//! Mount targets are resolved with openat2(RESOLVE_IN_ROOT) below the rootfs and
//! mounted through their `/proc/self/fd/N` path, so a symlink planted in an image
//! (`/data -> /etc` on the host) can never redirect a mount outside the rootfs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use libc::c_ulong;

use crate::error::{Context, Error, Result};
use crate::spec::{Mount, Root};
use crate::sys;

/// What a mount target must be when it has to be created.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Dir,
    File,
}

/// Mount flags, propagation and fs data parsed from Docker/OCI option strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: c_ulong,
    pub propagation: c_ulong,
    pub data: Vec<String>,
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let (set, clear): (c_ulong, c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let base = opt.strip_prefix('r').filter(|b| PROPAGATIONS.iter().any(|(n, _)| n == b));
                let (name, rec) = match base {
                    Some(b) => (b, libc::MS_REC),
                    None => (opt.as_str(), 0),
                };
                o.propagation = PROPAGATIONS.iter().find(|(n, _)| *n == name).map_or(0, |(_, p)| *p) | rec;
                continue;
            }
            "mand" | "nomand" | "defaults" => continue,
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
    }
    o
}

const PROPAGATIONS: &[(&str, c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("shared", libc::MS_SHARED),
    ("slave", libc::MS_SLAVE),
    ("unbindable", libc::MS_UNBINDABLE),
];

/// Open `path` (absolute, in container terms) below `root`, creating what is missing
/// (directories, and a file for the last component when `kind` is File). The result
/// is an O_PATH fd of the real target, never outside `root`.
pub fn resolve_in_root(root: RawFd, path: &str, kind: Option<Kind>) -> Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return sys::openat2(root, ".", libc::O_PATH | libc::O_DIRECTORY, sys::RESOLVE_IN_ROOT).with_ctx(|| format!("open {path}"));
    }
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
    match sys::openat2(root, rel, libc::O_PATH, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && kind.is_some() => {}
        Err(e) => return Err(Error::io(format!("open {path} in the container rootfs"), e)),
    }
    let kind = kind.unwrap();
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut parent = sys::openat2(root, ".", libc::O_PATH | libc::O_DIRECTORY, resolve).ctx("open rootfs")?;
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        match sys::openat2(parent.as_raw_fd(), comp, libc::O_PATH, resolve) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io(format!("open {path} in the container rootfs"), e)),
        }
        if *comp == ".." {
            return Err(Error::Setup(format!("mount target {path}: cannot create \"..\"")));
        }
        let c = sys::cstr(comp).with_ctx(|| format!("path {path}"))?;
        if last && kind == Kind::File {
            let fd = unsafe {
                libc::openat(parent.as_raw_fd(), c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o644)
            };
            match sys::cvt(fd) {
                Ok(fd) => unsafe { libc::close(fd); },
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::io(format!("create mount target {path}"), e)),
            }
        } else {
            match sys::cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755) }) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::io(format!("create mount target {path}"), e)),
            }
        }
        // An EEXIST above with ENOENT before means a dangling symlink: the re-open
        // below fails and says so rather than following it.
        parent = sys::openat2(parent.as_raw_fd(), comp, libc::O_PATH, resolve).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Error::Setup(format!("mount target {path}: {comp} is a dangling symlink"))
            } else {
                Error::io(format!("open {path} in the container rootfs"), e)
            }
        })?;
    }
    Ok(parent)
}

/// Make every mount in our namespace private: nothing we mount reaches the host.
pub fn make_private() -> Result<()> {
    sys::mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None).ctx("make / rprivate")
}

/// Mount the container's rootfs on `root.mountpoint` and return an O_PATH fd of it.
pub fn mount_root(root: &Root) -> Result<OwnedFd> {
    std::fs::create_dir_all(&root.mountpoint).with_ctx(|| format!("create rootfs mountpoint {}", root.mountpoint))?;
    if let Some(path) = &root.path {
        sys::mount(Some(path), &root.mountpoint, None, libc::MS_BIND | libc::MS_REC, None)
            .with_ctx(|| format!("bind rootfs {path}"))?;
    } else {
        mount_overlay(root)?;
    }
    sys::open(&root.mountpoint, libc::O_PATH | libc::O_DIRECTORY).with_ctx(|| format!("open rootfs {}", root.mountpoint))
}

fn mount_overlay(root: &Root) -> Result<()> {
    for d in root.lowerdirs.iter().chain(&root.upperdir).chain(&root.workdir) {
        let st = sys::stat(d).with_ctx(|| format!("overlay layer {d}"))?;
        if !sys::is_dir(&st) {
            return Err(Error::Setup(format!("overlay layer {d}: not a directory")));
        }
    }
    if root.upperdir.is_none() && root.lowerdirs.len() == 1 {
        // overlayfs wants two layers without an upper dir; one layer is a bind.
        return sys::mount(Some(&root.lowerdirs[0]), &root.mountpoint, None, libc::MS_BIND, None)
            .with_ctx(|| format!("bind rootfs layer {}", root.lowerdirs[0]));
    }
    // BERTH_OVERLAY_LEGACY=1 takes the pre-6.8 path on any kernel (to test it).
    if std::env::var_os("BERTH_OVERLAY_LEGACY").is_some_and(|v| v == "1") {
        return overlay_mount_data(root);
    }
    match overlay_fsconfig(root) {
        Ok(()) => Ok(()),
        // ENOSYS: no fd mount API; EINVAL: no `lowerdir+` (Linux < 6.8).
        Err(e) if matches!(e.errno(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => overlay_mount_data(root),
        Err(e) => Err(e),
    }
}

/// Many layers: `lowerdir+` takes one layer per call, so the page-sized limit of a
/// mount(2) option string never applies.
fn overlay_fsconfig(root: &Root) -> Result<()> {
    let fs = sys::fsopen("overlay").ctx("fsopen overlay")?;
    let fd = fs.as_raw_fd();
    for l in &root.lowerdirs {
        sys::fsconfig_string(fd, "lowerdir+", l).with_ctx(|| format!("overlay lowerdir {l}"))?;
    }
    if let (Some(u), Some(w)) = (&root.upperdir, &root.workdir) {
        sys::fsconfig_string(fd, "upperdir", u).with_ctx(|| format!("overlay upperdir {u}"))?;
        sys::fsconfig_string(fd, "workdir", w).with_ctx(|| format!("overlay workdir {w}"))?;
    }
    sys::fsconfig_create(fd).map_err(|e| overlay_error(e, &fs))?;
    let mnt = sys::fsmount(fd, 0).ctx("fsmount overlay")?;
    sys::move_mount_to(mnt.as_raw_fd(), &root.mountpoint).with_ctx(|| format!("attach overlay on {}", root.mountpoint))
}

/// The kernel explains a failed fsconfig CREATE in messages read from the fs fd.
fn overlay_error(e: std::io::Error, fs: &OwnedFd) -> Error {
    let mut buf = [0u8; 512];
    let mut msgs = Vec::new();
    loop {
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        msgs.push(String::from_utf8_lossy(&buf[..n as usize]).trim().to_string());
    }
    if msgs.is_empty() {
        Error::io("mount overlay rootfs", e)
    } else {
        Error::io(format!("mount overlay rootfs ({})", msgs.join("; ")), e)
    }
}

/// mount(2) takes one page of options. When absolute layer paths do not fit, the
/// layers are named through short symlinks (`0`, `1`, ...) in a scratch directory
/// beside the mountpoint, made our cwd: the kernel resolves them at mount time, and
/// the directory is removed right after.
fn overlay_mount_data(root: &Root) -> Result<()> {
    for l in &root.lowerdirs {
        if l.contains([':', ',']) {
            return Err(Error::Setup(format!("overlay lowerdir {l}: ':' and ',' are not allowed in layer paths")));
        }
    }
    let tail = match (&root.upperdir, &root.workdir) {
        (Some(u), Some(w)) => format!(",upperdir={u},workdir={w}"),
        _ => String::new(),
    };
    const PAGE_LIMIT: usize = 4000;
    let data = format!("lowerdir={}{tail}", root.lowerdirs.join(":"));
    if data.len() < PAGE_LIMIT {
        return sys::mount(Some("overlay"), &root.mountpoint, Some("overlay"), 0, Some(&data)).ctx("mount overlay rootfs");
    }
    let names: Vec<String> = (0..root.lowerdirs.len()).map(|i| i.to_string()).collect();
    let data = format!("lowerdir={}{tail}", names.join(":"));
    if data.len() >= PAGE_LIMIT {
        return Err(Error::Setup(format!(
            "overlay rootfs: {} layers do not fit the kernel's option page even as short names (Linux 6.8 lifts the limit)",
            root.lowerdirs.len()
        )));
    }
    let scratch = format!("{}.layers", root.mountpoint.trim_end_matches('/'));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir(&scratch).with_ctx(|| format!("create {scratch}"))?;
    let result = (|| {
        for (name, layer) in names.iter().zip(&root.lowerdirs) {
            std::os::unix::fs::symlink(layer, format!("{scratch}/{name}")).with_ctx(|| format!("link layer {layer}"))?;
        }
        std::env::set_current_dir(&scratch).with_ctx(|| format!("chdir {scratch}"))?;
        sys::mount(Some("overlay"), &root.mountpoint, Some("overlay"), 0, Some(&data)).ctx("mount overlay rootfs")
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// One spec mount, resolved inside `root`.
pub fn mount_one(root: RawFd, m: &Mount) -> Result<()> {
    let o = parse_options(&m.options);
    let is_bind = m.kind == "bind" || o.flags & libc::MS_BIND != 0;
    let data = o.data.join(",");
    let dest = &m.destination;
    if is_bind {
        let src = m.source.as_deref().unwrap_or_default();
        let st = sys::stat(src).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Error::Setup(format!("mount {dest}: bind source path does not exist: {src}"))
            } else {
                Error::io(format!("mount {dest}: bind source {src}"), e)
            }
        })?;
        let kind = if sys::is_dir(&st) { Kind::Dir } else { Kind::File };
        let target = resolve_in_root(root, dest, Some(kind))?;
        let rec = o.flags & libc::MS_REC;
        sys::mount(Some(src), &sys::fd_path(&target), None, libc::MS_BIND | rec, None)
            .with_ctx(|| format!("bind {src} on {dest}"))?;
        let extra = o.flags & !(libc::MS_BIND | libc::MS_REC);
        if extra != 0 {
            // A bind ignores flags; they take effect on a remount of the new mount.
            let target = resolve_in_root(root, dest, None)?;
            remount(&sys::fd_path(&target), extra).with_ctx(|| format!("remount {dest} ({})", m.options.join(",")))?;
        }
    } else {
        let target = resolve_in_root(root, dest, Some(Kind::Dir))?;
        let src = m.source.as_deref().unwrap_or(&m.kind);
        sys::mount(Some(src), &sys::fd_path(&target), Some(&m.kind), o.flags, Some(&data))
            .with_ctx(|| format!("mount {} on {dest}", m.kind))?;
    }
    if o.propagation != 0 {
        let target = resolve_in_root(root, dest, None)?;
        sys::mount(None, &sys::fd_path(&target), None, o.propagation, None).with_ctx(|| format!("set propagation of {dest}"))?;
    }
    Ok(())
}

/// Bind-remount with `flags`, keeping the lock-worthy flags the mount already has
/// (nosuid, nodev, noexec...) so the kernel accepts it.
pub fn remount(target: &str, flags: c_ulong) -> std::io::Result<()> {
    let c = sys::cstr(target)?;
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    let mut keep: c_ulong = 0;
    if unsafe { libc::statvfs(c.as_ptr(), &mut vfs) } == 0 {
        for (st, ms) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if vfs.f_flag & st != 0 {
                keep |= ms;
            }
        }
    }
    sys::mount(None, target, None, libc::MS_BIND | libc::MS_REMOUNT | keep | flags, None)
}

fn has_mount(mounts: &[Mount], dest: &str) -> bool {
    mounts.iter().any(|m| m.destination.trim_end_matches('/') == dest)
}

/// /proc, /dev (device nodes, devpts with a private ptmx, shm, mqueue) and a
/// read-only /sys, unless the spec mounts its own there.
pub fn mount_defaults(root: RawFd, mounts: &[Mount]) -> Result<()> {
    let nx = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    let simple = |dest: &str, fstype: &str, flags: c_ulong, data: &str| -> Result<()> {
        if has_mount(mounts, dest) {
            return Ok(());
        }
        let t = resolve_in_root(root, dest, Some(Kind::Dir))?;
        sys::mount(Some(fstype), &sys::fd_path(&t), Some(fstype), flags, Some(data)).with_ctx(|| format!("mount {fstype} on {dest}"))
    };
    simple("/proc", "proc", nx, "")?;
    if !has_mount(mounts, "/dev") {
        simple("/dev", "tmpfs", libc::MS_NOSUID | libc::MS_STRICTATIME, "mode=755,size=65536k")?;
        let dev = resolve_in_root(root, "/dev", None)?;
        let devfd = sys::openat(dev.as_raw_fd(), ".", libc::O_PATH | libc::O_DIRECTORY, 0).ctx("open /dev")?;
        make_devices(devfd.as_raw_fd())?;
    }
    simple("/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")?;
    simple("/dev/shm", "tmpfs", nx, "mode=1777,size=65536k")?;
    simple("/dev/mqueue", "mqueue", nx, "")?;
    if !has_mount(mounts, "/sys") {
        let t = resolve_in_root(root, "/sys", Some(Kind::Dir))?;
        let target = sys::fd_path(&t);
        if let Err(e) = sys::mount(Some("sysfs"), &target, Some("sysfs"), nx | libc::MS_RDONLY, None) {
            // sysfs of a network namespace we do not own cannot be mounted: bind it.
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(Error::io("mount sysfs on /sys", e));
            }
            sys::mount(Some("/sys"), &target, None, libc::MS_BIND | libc::MS_REC, None).ctx("bind /sys")?;
            let t = resolve_in_root(root, "/sys", None)?;
            remount(&sys::fd_path(&t), libc::MS_RDONLY).ctx("remount /sys read-only")?;
        }
    }
    Ok(())
}

/// The host's view of the cgroup hierarchies, read while still in its namespaces.
pub struct CgroupView {
    mountinfo: String,
    own: String,
}

impl CgroupView {
    /// Read before unsharing the cgroup namespace (which rewrites both files).
    pub fn capture() -> CgroupView {
        CgroupView {
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            own: std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        }
    }

    /// (name under /sys/fs/cgroup, host directory of our cgroup in it); a cgroup2
    /// root mounted at /sys/fs/cgroup itself has the name "".
    fn hierarchies(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for line in self.mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else { continue };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let (mount_root, mountpoint, fstype) = (pre[3], pre[4], post[0]);
            let name = match mountpoint.strip_prefix("/sys/fs/cgroup") {
                Some("") => "",
                Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => &rest[1..],
                _ => continue,
            };
            let opts: Vec<&str> = post[2].split(',').collect();
            let path = self.own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
                let matches = match fstype {
                    "cgroup2" => controllers.is_empty(),
                    "cgroup" => !controllers.is_empty() && controllers.split(',').all(|c| opts.contains(&c)),
                    _ => false,
                };
                matches.then(|| path.to_string())
            });
            let Some(path) = path else { continue };
            let rel = path.strip_prefix(mount_root).unwrap_or(&path).trim_start_matches('/');
            let source = if rel.is_empty() { mountpoint.to_string() } else { format!("{mountpoint}/{rel}") };
            out.push((name.to_string(), source));
        }
        out
    }
}

/// Docker's /sys/fs/cgroup: the container's own cgroups, read-only (unless the
/// spec's /sys is writable). cgroup v2 at /sys/fs/cgroup: a bind of our directory;
/// v1/hybrid: a tmpfs holding a bind of our directory in each hierarchy.
pub fn mount_cgroups(root: RawFd, mounts: &[Mount], view: &CgroupView) -> Result<()> {
    if has_mount(mounts, "/sys/fs/cgroup") {
        return Ok(());
    }
    let hierarchies = view.hierarchies();
    if hierarchies.is_empty() {
        return Ok(());
    }
    let ro = mounts
        .iter()
        .find(|m| m.destination.trim_end_matches('/') == "/sys")
        .map_or(true, |m| m.options.iter().any(|o| o == "ro"));
    let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV | if ro { libc::MS_RDONLY } else { 0 };
    let bind = |source: &str, target: &OwnedFd, what: &str| -> Result<()> {
        let t = sys::fd_path(target);
        sys::mount(Some(source), &t, None, libc::MS_BIND | libc::MS_REC, None).with_ctx(|| format!("bind {source} on {what}"))?;
        Ok(())
    };
    let base = resolve_in_root(root, "/sys/fs/cgroup", None)?;
    if let Some((_, source)) = hierarchies.iter().find(|(name, _)| name.is_empty()) {
        bind(source, &base, "/sys/fs/cgroup")?;
        let t = resolve_in_root(root, "/sys/fs/cgroup", None)?;
        return remount(&sys::fd_path(&t), flags).ctx("remount /sys/fs/cgroup");
    }
    sys::mount(Some("tmpfs"), &sys::fd_path(&base), Some("tmpfs"), libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV, Some("mode=755"))
        .ctx("mount tmpfs on /sys/fs/cgroup")?;
    for (name, source) in &hierarchies {
        let dest = format!("/sys/fs/cgroup/{name}");
        let t = resolve_in_root(root, &dest, Some(Kind::Dir))?;
        bind(source, &t, &dest)?;
        let t = resolve_in_root(root, &dest, None)?;
        remount(&sys::fd_path(&t), flags).with_ctx(|| format!("remount {dest}"))?;
    }
    if ro {
        let t = resolve_in_root(root, "/sys/fs/cgroup", None)?;
        remount(&sys::fd_path(&t), libc::MS_RDONLY).ctx("remount /sys/fs/cgroup read-only")?;
    }
    Ok(())
}

const DEVICES: &[(&str, u32, u32)] = &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

fn make_devices(dev: RawFd) -> Result<()> {
    for (name, major, minor) in DEVICES {
        let c = sys::cstr(name).unwrap();
        sys::cvt(unsafe { libc::mknodat(dev, c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(*major, *minor)) })
            .with_ctx(|| format!("mknod /dev/{name}"))?;
        // mknod obeys the umask; device nodes must be world-usable.
        sys::cvt(unsafe { libc::fchmodat(dev, c.as_ptr(), 0o666, 0) }).with_ctx(|| format!("chmod /dev/{name}"))?;
    }
    for (name, target) in DEV_LINKS {
        let n = sys::cstr(name).unwrap();
        let t = sys::cstr(target).unwrap();
        sys::cvt(unsafe { libc::symlinkat(t.as_ptr(), dev, n.as_ptr()) }).with_ctx(|| format!("symlink /dev/{name}"))?;
    }
    Ok(())
}

/// The spec's device nodes, replacing berth's own of the same name.
pub fn make_spec_devices(root: RawFd, devices: &[crate::spec::Device]) -> Result<()> {
    for d in devices {
        let (parent, name) = d.path.rsplit_once('/').unwrap_or(("/dev", &d.path));
        let dir = resolve_in_root(root, parent, Some(Kind::Dir))?;
        let c = sys::cstr(name).with_ctx(|| format!("device {}", d.path))?;
        let kind = if d.kind == "b" { libc::S_IFBLK } else { libc::S_IFCHR };
        let dev = libc::makedev(d.major, d.minor);
        let mut r = unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), kind | (d.file_mode & 0o7777), dev) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            r = unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), kind | (d.file_mode & 0o7777), dev) };
        }
        sys::cvt(r).with_ctx(|| format!("mknod {}", d.path))?;
        sys::cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), d.file_mode & 0o7777, 0) })
            .with_ctx(|| format!("chmod {}", d.path))?;
        sys::cvt(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), d.uid, d.gid, libc::AT_SYMLINK_NOFOLLOW) })
            .with_ctx(|| format!("chown {}", d.path))?;
    }
    Ok(())
}

/// Write namespaced sysctls through the container's /proc (after pivot_root).
pub fn set_sysctls(sysctl: &std::collections::BTreeMap<String, String>) -> Result<()> {
    for (key, value) in sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        sys::write_file(&path, value).with_ctx(|| format!("sysctl {key}={value}"))?;
    }
    Ok(())
}

/// Enter the rootfs: pivot_root on itself, then detach the old root (which is
/// stacked under the new one), leaving no path back to the host.
pub fn pivot(root: &OwnedFd) -> Result<()> {
    sys::cvt(unsafe { libc::fchdir(root.as_raw_fd()) }).ctx("chdir to rootfs")?;
    sys::pivot_root(".", ".").ctx("pivot_root")?;
    sys::umount_detach(".").ctx("detach the old root")?;
    std::env::set_current_dir("/").ctx("chdir /")?;
    Ok(())
}

/// Run `f` on each of `paths` that exists, resolved inside the (pivoted) root;
/// paths missing in this kernel are skipped. `f` gets the path, its fd and the
/// root's fd.
fn for_each_existing(paths: &[String], mut f: impl FnMut(&str, OwnedFd, RawFd) -> Result<()>) -> Result<()> {
    let root = sys::open("/", libc::O_PATH | libc::O_DIRECTORY).ctx("open /")?;
    for p in paths {
        match resolve_in_root(root.as_raw_fd(), p, None) {
            Ok(fd) => f(p, fd, root.as_raw_fd())?,
            Err(e) if e.errno() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Docker's masked paths: a directory gets an empty read-only tmpfs, anything else
/// /dev/null. Runs after pivot_root.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for_each_existing(paths, |p, fd, _| {
        let target = sys::fd_path(&fd);
        let st = sys::fstat(fd.as_raw_fd()).with_ctx(|| format!("stat {p}"))?;
        if sys::is_dir(&st) {
            sys::mount(Some("tmpfs"), &target, Some("tmpfs"), libc::MS_RDONLY, Some("size=0")).with_ctx(|| format!("mask {p}"))
        } else {
            sys::mount(Some("/dev/null"), &target, None, libc::MS_BIND, None).with_ctx(|| format!("mask {p}"))
        }
    })
}

/// Docker's read-only paths (/proc/sys, /proc/sysrq-trigger...): bind each on
/// itself, then remount read-only.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for_each_existing(paths, |p, fd, root| {
        let target = sys::fd_path(&fd);
        sys::mount(Some(&target), &target, None, libc::MS_BIND | libc::MS_REC, None).with_ctx(|| format!("bind {p}"))?;
        // Resolved again: the bind mount now covers what the first fd saw.
        let fd = resolve_in_root(root, p, None)?;
        remount(&sys::fd_path(&fd), libc::MS_RDONLY).with_ctx(|| format!("make {p} read-only"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cgroup_hierarchies_map_to_our_directories() {
        let view = CgroupView {
            mountinfo: "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
                        37 25 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                        38 25 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                        39 25 0:34 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                        40 25 0:35 / /proc rw - proc proc rw\n"
                .into(),
            own: "4:memory:/berth/c1\n3:cpu,cpuacct:/berth/c1\n1:name=systemd:/\n0::/berth/c1\n".into(),
        };
        assert_eq!(
            view.hierarchies(),
            vec![
                ("memory".to_string(), "/sys/fs/cgroup/memory/berth/c1".to_string()),
                ("cpu,cpuacct".to_string(), "/sys/fs/cgroup/cpu,cpuacct/berth/c1".to_string()),
                ("unified".to_string(), "/sys/fs/cgroup/unified/berth/c1".to_string()),
                ("systemd".to_string(), "/sys/fs/cgroup/systemd".to_string()),
            ]
        );
        let v2 = CgroupView {
            mountinfo: "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n".into(),
            own: "0::/system.slice/x\n".into(),
        };
        assert_eq!(v2.hierarchies(), vec![("".to_string(), "/sys/fs/cgroup/system.slice/x".to_string())]);
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&s(&["rbind", "ro", "nosuid", "rprivate", "mode=755", "size=64k"]));
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.propagation, libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(o.data, s(&["mode=755", "size=64k"]));
        let o = parse_options(&s(&["ro", "rw", "slave"]));
        assert_eq!(o.flags, 0);
        assert_eq!(o.propagation, libc::MS_SLAVE);
        assert_eq!(parse_options(&s(&["rslave"])).propagation, libc::MS_SLAVE | libc::MS_REC);
        assert_eq!(parse_options(&s(&["runbindable"])).propagation, libc::MS_UNBINDABLE | libc::MS_REC);
    }
}
