//! Layer unpack: a gzip, zstd or plain tar stream into a snapshot directory,
//! with OCI whiteouts turned into their overlayfs form.
//!
//! Two threads per layer: the reader decompresses and hashes (digest of the raw
//! bytes, diffID of the tar), the caller's thread parses the tar and writes the
//! tree. Every entry goes through [`Root`], so nothing lands outside the target.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use berth_digest::{is_sha256_digest, HashingReader};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::compression::{Compression, Decoder};
use crate::error::{Error, Result};
use crate::pipe::{chunk_pipe, ChunkReader, ChunkSender, CHUNK};
use crate::root::{clean_components, join, open_in_root, proc_path, remove_all_at, Root};
use crate::tarstream::{Entry, Kind, TarError, TarReader, Time};

pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

#[derive(Clone, Debug, Default)]
pub struct UnpackOptions {
    /// `sha256:<hex>` the raw (compressed) bytes must hash to.
    pub expected_digest: Option<String>,
    /// `sha256:<hex>` the uncompressed tar must hash to.
    pub expected_diff_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackStats {
    pub diff_id: String,
    pub digest: String,
    pub compressed_size: u64,
    /// Sum of the sizes of the regular files written.
    pub size: u64,
    pub entries: u64,
    pub compression: Compression,
}

/// Unpack the layer file at `source` into `target` (created if missing).
pub fn unpack_layer_path(source: &Path, target: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let file = File::open(source)
        .map_err(|e| Error::io(format!("opening layer {}", source.display()), e))?;
    unpack_layer(file, target, opts)
}

/// Unpack the layer read from `source` (a file or pipe) into `target`.
///
/// On error the tree may be partly written; the caller removes `target`.
pub fn unpack_layer(source: File, target: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    for (what, value) in [("expected_digest", &opts.expected_digest), ("expected_diff_id", &opts.expected_diff_id)] {
        if let Some(v) = value {
            if !is_sha256_digest(v) {
                return Err(Error::InvalidArgument(format!(
                    "{what} {v:?} is not a digest of the form sha256:<64 hex digits>"
                )));
            }
        }
    }
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let root_fd = rfs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening {}", target.display()), e.into()))?;

    let mut raw = HashingReader::new(source);
    let magic = read_magic(&mut raw).map_err(|e| Error::io("reading layer stream", e))?;
    let compression = Compression::detect(&magic);

    let (sender, mut reader) = chunk_pipe();
    // The diffID is hashed on this thread as chunks arrive, so that the reader
    // thread only decompresses: inflate is the critical path.
    reader.hash_chunks();
    let (applied, produced) = std::thread::scope(|s| {
        let producer = s.spawn(move || produce(compression, magic, raw, sender));
        let applied = apply_stream(Root::new(root_fd), reader);
        (applied, producer.join().expect("layer reader thread panicked"))
    });

    // A stream error explains a failed entry better than the entry's own error
    // (a truncated gzip shows up in the tar parser as an early EOF).
    let ((size, entries, diff_id), d) = match (applied, produced) {
        (_, Err(Produce::Failed(e))) => return Err(e),
        (Err(e), _) => return Err(e),
        (Ok(_), Err(Produce::Disconnected)) => unreachable!("consumer drains the stream on success"),
        (Ok(applied), Ok(d)) => (applied, d),
    };
    if let Some(expected) = &opts.expected_digest {
        if *expected != d.digest {
            return Err(Error::DigestMismatch { what: "layer digest", expected: expected.clone(), actual: d.digest });
        }
    }
    if let Some(expected) = &opts.expected_diff_id {
        if *expected != diff_id {
            return Err(Error::DigestMismatch { what: "layer diff_id", expected: expected.clone(), actual: diff_id });
        }
    }
    Ok(UnpackStats {
        diff_id,
        digest: d.digest,
        compressed_size: d.compressed_size,
        size,
        entries,
        compression,
    })
}

fn read_magic<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut magic = vec![0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match r.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    magic.truncate(got);
    Ok(magic)
}

struct StreamDigests {
    digest: String,
    compressed_size: u64,
}

enum Produce {
    Failed(Error),
    /// The consumer stopped early; its own error is the one to report.
    Disconnected,
}

/// The reader thread: hash the raw bytes, decompress, ship the tar in chunks.
fn produce(
    compression: Compression,
    magic: Vec<u8>,
    raw: HashingReader<File>,
    sender: ChunkSender,
) -> Result<StreamDigests, Produce> {
    let stream_err = |e: io::Error| {
        let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
            "unexpected end of stream (truncated layer?)".to_string()
        } else {
            e.to_string()
        };
        Produce::Failed(Error::Stream { format: compression.stream_name(), reason })
    };
    let buffered = BufReader::with_capacity(256 << 10, io::Cursor::new(magic).chain(raw));
    let mut decoder = Decoder::new(compression, buffered).map_err(stream_err)?;
    loop {
        let mut chunk = sender.buffer();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stream_err(e)),
            }
        }
        chunk.truncate(filled);
        if filled == 0 {
            break;
        }
        sender.send(chunk).map_err(|_| Produce::Disconnected)?;
    }
    // Bytes after the compressed stream still belong to the blob's digest.
    let mut rest = decoder.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| Produce::Failed(Error::io("reading layer stream", e)))?;
    let (_, raw) = rest.into_inner().into_inner();
    let (_, raw_hash, raw_count) = raw.into_parts();
    Ok(StreamDigests { digest: raw_hash.oci_digest(), compressed_size: raw_count })
}

/// Parse the tar from `reader` and apply every entry; returns (bytes, entries, diffID).
fn apply_stream(root: Root, reader: ChunkReader) -> Result<(u64, u64, String)> {
    let tar_err = |e: TarError| Error::Stream { format: "tar", reason: e.to_string() };
    let mut applier = Applier::new(root);
    let mut tar = TarReader::new(reader);
    while let Some(entry) = tar.next_entry().map_err(tar_err)? {
        applier.apply(&mut tar, entry)?;
    }
    // Read to the end so the diffID covers the padding after the end-of-archive blocks.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| tar_err(e.into()))?;
    applier.finish()?;
    let diff_id = rest.hasher().expect("reader hashes chunks").oci_digest();
    Ok((applier.size, applier.entries, diff_id))
}

/// Metadata of one entry, as applied to the file.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier {
    root: Root,
    chown: bool,
    /// Directory mtimes are set last: creating children would move them.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    size: u64,
    entries: u64,
}

fn timespec(t: Time) -> Timespec {
    Timespec { tv_sec: t.sec, tv_nsec: t.nsec as _ }
}

fn meta_of(entry: &Entry) -> Result<Meta, String> {
    let uid = u32::try_from(entry.uid).map_err(|_| format!("uid {} does not fit in 32 bits", entry.uid))?;
    let gid = u32::try_from(entry.gid).map_err(|_| format!("gid {} does not fit in 32 bits", entry.gid))?;
    let mtime = timespec(entry.mtime);
    let times = Timestamps { last_access: entry.atime.map_or(mtime, timespec), last_modification: mtime };
    // Only whiteout entries may make overlay metadata: a layer that carries
    // trusted.overlay.* itself could redirect overlayfs lookups.
    let xattrs = entry.xattrs.iter().filter(|(k, _)| !k.starts_with(OVERLAY_XATTR_PREFIX)).cloned().collect();
    Ok(Meta { mode: entry.mode, uid, gid, times, xattrs })
}

fn ctx(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn errno_ctx(what: &'static str) -> impl Fn(Errno) -> String {
    move |e| format!("{what}: {}", io::Error::from(e))
}

/// Xattr errors that mean "this filesystem or file type cannot hold it", which
/// Docker ignores too.
fn xattr_unsupported(name: &[u8], e: Errno) -> bool {
    e == Errno::OPNOTSUPP || (e == Errno::PERM && name.starts_with(b"user."))
}

impl Applier {
    fn new(root: Root) -> Self {
        Self { root, chown: rustix::process::geteuid().is_root(), dir_times: Vec::new(), size: 0, entries: 0 }
    }

    fn apply<R: BufRead>(&mut self, tar: &mut TarReader<R>, entry: Entry) -> Result<()> {
        self.entries += 1;
        self.apply_inner(tar, &entry).map_err(|reason| Error::entry(&entry.path, reason))
    }

    fn apply_inner<R: BufRead>(&mut self, tar: &mut TarReader<R>, entry: &Entry) -> Result<(), String> {
        let kind = entry.kind;
        match kind {
            Kind::Ignored => return Ok(()),
            Kind::Unsupported(t) => return Err(format!("unsupported entry type {:?}", t as char)),
            _ => {}
        }
        let meta = meta_of(entry)?;
        let comps = clean_components(&entry.path);
        let Some((name, parent_comps)) = comps.split_last() else {
            if kind != Kind::Directory {
                return Err("only a directory may stand for the layer root".into());
            }
            return self.apply_root(&meta);
        };
        let name: &[u8] = name;

        let parent = self.root.dir(parent_comps).map_err(|e| {
            // Typically a symlink in the path that, resolved inside the root,
            // dangles or loops (e.g. "etc" -> "/etc"): refused, never followed out.
            format!(
                "parent directory {:?} does not resolve to a directory inside the layer: {e}",
                String::from_utf8_lossy(&join(parent_comps))
            )
        })?;
        let parent = parent.as_fd();

        if name == WHITEOUT_OPAQUE {
            return rfs::fsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(errno_ctx("marking directory opaque"));
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here; Docker skips it too.
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err("whiteout names no file".into());
            }
            // overlayfs' whiteout: a 0:0 character device under the hidden name.
            self.create(parent, hidden, || {
                rfs::mknodat(parent, hidden, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
            })
            .map_err(ctx("creating whiteout"))?;
            return self.chown_at(parent, hidden, &meta);
        }

        match kind {
            Kind::Regular => self.regular_file(tar, entry, parent, name, &meta),
            Kind::Directory => self.directory(parent, name, &comps, &meta),
            Kind::Symlink => {
                let target = entry.link.as_slice();
                if target.is_empty() {
                    return Err("symlink without a target".into());
                }
                self.create(parent, name, || rfs::symlinkat(target, parent, name))
                    .map_err(ctx("creating symlink"))?;
                self.chown_at(parent, name, &meta)?;
                self.xattrs_at(parent, name, &meta)?;
                rfs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno_ctx("setting times"))
            }
            Kind::HardLink => self.hard_link(parent, name, &entry.link),
            Kind::Char | Kind::Block | Kind::Fifo => {
                let (ftype, dev) = match kind {
                    Kind::Fifo => (FileType::Fifo, 0),
                    Kind::Block => (FileType::BlockDevice, rfs::makedev(entry.dev_major, entry.dev_minor)),
                    _ => (FileType::CharacterDevice, rfs::makedev(entry.dev_major, entry.dev_minor)),
                };
                self.create(parent, name, || rfs::mknodat(parent, name, ftype, Mode::from_raw_mode(0o600), dev))
                    .map_err(ctx("creating device node"))?;
                self.chown_at(parent, name, &meta)?;
                rfs::chmodat(parent, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                    .map_err(errno_ctx("setting mode"))?;
                self.xattrs_at(parent, name, &meta)?;
                rfs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno_ctx("setting times"))
            }
            Kind::Ignored | Kind::Unsupported(_) => unreachable!("handled above"),
        }
    }

    /// Run `make`; if the name is taken, remove what is there (recursively)
    /// and run it again: a later entry replaces an earlier one.
    fn create<T>(&mut self, parent: BorrowedFd<'_>, name: &[u8], mut make: impl FnMut() -> Result<T, Errno>) -> io::Result<T> {
        match make() {
            Err(Errno::EXIST) => {
                remove_all_at(parent, name)?;
                self.root.invalidate();
                make().map_err(io::Error::from)
            }
            other => other.map_err(io::Error::from),
        }
    }

    fn regular_file<R: BufRead>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &Entry,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), String> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd: OwnedFd = self
            .create(parent, name, || rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600)))
            .map_err(ctx("creating file"))?;
        let mut file = File::from(fd);
        match &entry.sparse {
            None => self.copy_data(tar, &mut file, u64::MAX)?,
            Some(sparse) => {
                // Runs land at their offsets; the holes stay holes.
                for &(offset, len) in &sparse.runs {
                    file.seek(SeekFrom::Start(offset)).map_err(ctx("writing file"))?;
                    self.copy_data(tar, &mut file, len)?;
                }
                file.set_len(sparse.real_size).map_err(ctx("writing file"))?;
                // `size` counts file sizes, holes included.
                self.size += sparse.real_size - entry.size;
            }
        }
        // Order matters: chown clears setuid bits and file capabilities, so mode
        // and xattrs come after it; times come last.
        if self.chown {
            rfs::fchown(&file, Some(rfs::Uid::from_raw(meta.uid)), Some(rfs::Gid::from_raw(meta.gid)))
                .map_err(errno_ctx("setting owner"))?;
        }
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode)).map_err(errno_ctx("setting mode"))?;
        for (key, value) in &meta.xattrs {
            match rfs::fsetxattr(&file, key.as_slice(), value, XattrFlags::empty()) {
                Err(e) if !xattr_unsupported(key, e) => {
                    return Err(format!("setting xattr {}: {}", String::from_utf8_lossy(key), io::Error::from(e)))
                }
                _ => {}
            }
        }
        rfs::futimens(&file, &meta.times).map_err(errno_ctx("setting times"))
    }

    /// Write up to `limit` bytes of the entry's data straight from the stream buffer.
    fn copy_data<R: BufRead>(&mut self, tar: &mut TarReader<R>, file: &mut File, mut limit: u64) -> Result<(), String> {
        while limit > 0 {
            let data = tar.data(limit.min(CHUNK as u64) as usize).map_err(|e| format!("reading content: {e}"))?;
            if data.is_empty() {
                break;
            }
            let n = data.len();
            file.write_all(data).map_err(ctx("writing file"))?;
            tar.consume_data(n);
            self.size += n as u64;
            limit -= n as u64;
        }
        Ok(())
    }

    fn directory(&mut self, parent: BorrowedFd<'_>, name: &[u8], comps: &[&[u8]], meta: &Meta) -> Result<(), String> {
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_ctx("inspecting existing entry"))?;
                // A directory over a directory merges; anything else is replaced.
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    remove_all_at(parent, name).map_err(ctx("replacing existing entry"))?;
                    self.root.invalidate();
                    rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(errno_ctx("creating directory"))?;
                }
            }
            Err(e) => return Err(format!("creating directory: {}", io::Error::from(e))),
        }
        self.chown_at(parent, name, meta)?;
        // Not a symlink (just made or checked), so following the last component is safe.
        rfs::chmodat(parent, name, Mode::from_raw_mode(meta.mode), AtFlags::empty()).map_err(errno_ctx("setting mode"))?;
        self.xattrs_at(parent, name, meta)?;
        self.dir_times.push((join(comps), meta.times.clone()));
        Ok(())
    }

    fn apply_root(&mut self, meta: &Meta) -> Result<(), String> {
        let root = self.root.fd();
        if self.chown {
            rfs::fchown(root, Some(rfs::Uid::from_raw(meta.uid)), Some(rfs::Gid::from_raw(meta.gid)))
                .map_err(errno_ctx("setting owner"))?;
        }
        rfs::fchmod(root, Mode::from_raw_mode(meta.mode)).map_err(errno_ctx("setting mode"))?;
        for (key, value) in &meta.xattrs {
            match rfs::fsetxattr(root, key.as_slice(), value, XattrFlags::empty()) {
                Err(e) if !xattr_unsupported(key, e) => {
                    return Err(format!("setting xattr {}: {}", String::from_utf8_lossy(key), io::Error::from(e)))
                }
                _ => {}
            }
        }
        self.dir_times.push((Vec::new(), meta.times.clone()));
        Ok(())
    }

    fn hard_link(&mut self, parent: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> Result<(), String> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let tcomps = clean_components(target);
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(format!("hard link target {shown:?} is the layer root"));
        };
        // The target's directory is resolved inside the root too, so "/etc/shadow"
        // or "../../etc/shadow" can only ever name a file of this tree.
        let tdir = open_in_root(self.root.fd(), &join(tparent), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| format!("hard link target {shown:?} not found inside the layer: {e}"))?;
        let tname: &[u8] = tname;
        let linked = self.create(parent, name, || rfs::linkat(&tdir, tname, parent, name, AtFlags::empty()));
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                Err(format!("hard link target {shown:?} not found inside the layer"))
            }
            Err(e) => Err(format!("linking to {shown:?}: {e}")),
        }
    }

    fn chown_at(&self, parent: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), String> {
        if !self.chown {
            return Ok(());
        }
        rfs::chownat(
            parent,
            name,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_ctx("setting owner"))
    }

    fn xattrs_at(&self, parent: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), String> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let path = proc_path(parent, name);
        for (key, value) in &meta.xattrs {
            match rfs::lsetxattr(path.as_slice(), key.as_slice(), value, XattrFlags::empty()) {
                Err(e) if !xattr_unsupported(key, e) => {
                    return Err(format!("setting xattr {}: {}", String::from_utf8_lossy(key), io::Error::from(e)))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Directory times, deepest first so a parent's is not moved by a child's.
    fn finish(&mut self) -> Result<()> {
        let depth = |p: &[u8]| if p.is_empty() { 0 } else { 1 + p.iter().filter(|&&b| b == b'/').count() };
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
        for (path, times) in dirs {
            let fd = match open_in_root(self.root.fd(), &path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
                Ok(fd) => fd,
                // Replaced by a later entry: its times were applied there.
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)) => continue,
                Err(e) => return Err(Error::entry(&path, format!("setting directory times: {e}"))),
            };
            rfs::futimens(&fd, &times)
                .map_err(|e| Error::entry(&path, format!("setting directory times: {}", io::Error::from(e))))?;
        }
        Ok(())
    }
}
