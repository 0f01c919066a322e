//! A directory tree that untrusted names are resolved inside.
//!
//! Every parent directory is opened with openat2(RESOLVE_IN_ROOT), so `..`,
//! absolute symlinks and relative symlinks that climb out are all clamped to the
//! root the way a chroot would (Docker's behaviour; see CVE-2018-15664 and
//! CVE-2019-14271 for what string-joined paths lead to). The final component is
//! then created relative to that parent fd with *at() calls that never follow it.

use std::collections::HashMap;
use std::sync::Arc;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The lexical clean of a tar name: components without "", "." and "..", where
/// ".." pops (never above the root), as Go's filepath.Clean("/" + name) does.
pub fn clean_components(name: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

pub fn join(components: &[&[u8]]) -> Vec<u8> {
    let mut path = Vec::with_capacity(components.iter().map(|c| c.len() + 1).sum());
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(c);
    }
    path
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// openat2 with RESOLVE_IN_ROOT, retrying the EAGAIN the kernel returns when a
/// rename raced with the lookup.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    loop {
        match rfs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// An opened directory inside the root, with its inode number (which tells
/// two paths to the same directory apart from two different ones).
#[derive(Clone)]
pub struct Dir {
    pub fd: Arc<OwnedFd>,
    pub ino: u64,
}

/// The root plus a small cache of opened parent directories.
pub struct Root {
    fd: OwnedFd,
    parents: HashMap<Vec<u8>, Dir>,
}

const PARENT_CACHE: usize = 256;

impl Root {
    pub fn new(fd: OwnedFd) -> Self {
        Self { fd, parents: HashMap::new() }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forget cached parents; needed whenever something that may be a directory
    /// or a symlink is removed or replaced, since cached fds would be stale.
    pub fn invalidate(&mut self) {
        self.parents.clear();
    }

    /// The directory `components` inside the root. With `create`, missing
    /// directories are made (mode 0755, like Docker's MkdirAll); without it a
    /// missing one is an error.
    pub fn dir(&mut self, components: &[&[u8]], create: bool) -> io::Result<Dir> {
        let key = join(components);
        if let Some(dir) = self.parents.get(&key) {
            return Ok(dir.clone());
        }
        let fd = match open_in_root(self.fd.as_fd(), &key, dir_flags()) {
            Ok(fd) => fd,
            Err(e) if create && e.raw_os_error() == Some(libc_enoent()) => self.make_dirs(components)?,
            Err(e) => return Err(e),
        };
        let ino = rfs::fstat(&fd)?.st_ino as u64;
        if self.parents.len() >= PARENT_CACHE {
            self.parents.clear();
        }
        let dir = Dir { fd: Arc::new(fd), ino };
        self.parents.insert(key, dir.clone());
        Ok(dir)
    }

    fn make_dirs(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut current = rustix::io::dup(&self.fd)?;
        for (i, comp) in components.iter().enumerate() {
            let prefix = join(&components[..=i]);
            current = match open_in_root(self.fd.as_fd(), &prefix, dir_flags()) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {
                    match rfs::mkdirat(&current, *comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    // Just created by us, so not a symlink: NOFOLLOW keeps it that way.
                    rfs::openat(&current, *comp, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(current)
    }
}

pub fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}

/// `/proc/self/fd/<dirfd>/<name>`: a path naming `name` inside an already
/// confined directory, for calls that have no *at() form (lsetxattr). The
/// directory magic link is followed; `name` itself is a single component.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// Remove `name` in `dir`, recursively if it is a directory, never following
/// symlinks.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let sub = rfs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
    let mut names = Vec::new();
    let mut entries = rfs::Dir::read_from(&sub)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_all_at(sub.as_fd(), &n)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_clamps_dotdot_at_the_root() {
        let c = |s: &str| join(&clean_components(s.as_bytes()));
        assert_eq!(c("../../etc/passwd"), b"etc/passwd");
        assert_eq!(c("/abs/./x//y/"), b"abs/x/y");
        assert_eq!(c("a/b/../../../c"), b"c");
        assert_eq!(c("./"), b"");
    }
}
