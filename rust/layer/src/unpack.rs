//! Layer unpack: a gzip, zstd or plain tar stream into a snapshot directory,
//! with OCI whiteouts turned into their overlayfs form.
//!
//! Threads per layer: the reader hashes the raw bytes (the blob digest) and
//! decompresses, the critical path for big files; the caller's thread hashes
//! the tar (the diffID), parses it and applies it, the critical path for many
//! small files; file workers may create small regular files meanwhile when
//! CPUs are idle (see [`UnpackOptions::file_workers`], and [`Pool`] for how
//! order is kept). A new file costs open, write, futimens and close: owner
//! and mode are set only when creating did not give them (see [`Defaults`]).
//! Every entry goes through [`Root`], so nothing lands outside the target.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use berth_digest::{is_sha256_digest, Sha256};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::compression::{Compression, Decoder};
use crate::error::{Error, Result};
use crate::pipe::{chunk_pipe, ChunkReader, ChunkSender, CHUNK};
use crate::root::{clean_components, join, open_in_root, proc_path, remove_all_at, Dir, Root};
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
    /// Threads that create and write small regular files while the parser goes
    /// on. Some(n): n of them, always used (Some(0): none, all on the parsing
    /// thread). None: the CPUs a layer leaves idle, used only while no other
    /// layer takes them: one layer keeps about two CPUs busy (inflate on one
    /// thread, parse and apply on another), and measured on 2 CPUs, workers
    /// beside that cost 10-30% more wall time (their copies and wake-ups, and
    /// files of one directory created side by side only take turns on its lock).
    pub file_workers: Option<usize>,
    /// Leave the raw bytes unhashed: for a caller that hashes them itself as
    /// it feeds them (a download checked against its descriptor), so that the
    /// blob is hashed once. `digest` then comes back None, and
    /// `expected_digest` must be None.
    pub skip_source_digest: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackStats {
    pub diff_id: String,
    /// None with [`UnpackOptions::skip_source_digest`].
    pub digest: Option<String>,
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
    if opts.skip_source_digest && opts.expected_digest.is_some() {
        return Err(Error::InvalidArgument("expected_digest given for a layer whose digest is not computed".into()));
    }
    let _unpacking = Unpacking::enter();
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let root_fd = rfs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening {}", target.display()), e.into()))?;

    let mut raw = RawReader { inner: source, hasher: (!opts.skip_source_digest).then(Sha256::new), count: 0 };
    let magic = read_magic(&mut raw).map_err(|e| Error::io("reading layer stream", e))?;
    let compression = Compression::detect(&magic);

    let (sender, mut reader) = chunk_pipe();
    // The diffID is hashed on this thread as chunks arrive, so that the reader
    // thread only decompresses: inflate is the critical path.
    reader.hash_chunks();
    let (applied, produced) = std::thread::scope(|s| {
        let producer = s.spawn(move || produce(compression, magic, raw, sender));
        let workers = match opts.file_workers {
            Some(n) => Workers::Always(n),
            None => Workers::WhileCpusSpare(std::thread::available_parallelism().map_or(1, |n| n.get())),
        };
        let applied = apply_stream(Root::new(root_fd), reader, workers);
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
    if let (Some(expected), Some(actual)) = (&opts.expected_digest, &d.digest) {
        if expected != actual {
            return Err(Error::DigestMismatch { what: "layer digest", expected: expected.clone(), actual: actual.clone() });
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
    digest: Option<String>,
    compressed_size: u64,
}

/// The raw stream, counted and (unless the caller hashes it) hashed.
struct RawReader {
    inner: File,
    hasher: Option<Sha256>,
    count: u64,
}

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
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
    raw: RawReader,
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
    Ok(StreamDigests { digest: raw.hasher.map(|h| h.oci_digest()), compressed_size: raw.count })
}

/// Layers being unpacked in this process now (see [`UnpackOptions::file_workers`]).
static UNPACKING: AtomicUsize = AtomicUsize::new(0);

/// Counts one layer in [`UNPACKING`] while it lives.
struct Unpacking;

impl Unpacking {
    fn enter() -> Self {
        UNPACKING.fetch_add(1, Ordering::Relaxed);
        Unpacking
    }
}

impl Drop for Unpacking {
    fn drop(&mut self) {
        UNPACKING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// CPUs one layer keeps busy by itself: the reader and the parser.
const CPUS_PER_LAYER: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Workers {
    /// This many workers, given every small file.
    Always(usize),
    /// Workers for the CPUs (this many in all) one layer leaves idle, given
    /// files only while the layers being unpacked leave CPUs idle.
    WhileCpusSpare(usize),
}

impl Workers {
    fn threads(self) -> usize {
        match self {
            Workers::Always(n) => n,
            Workers::WhileCpusSpare(cpus) => cpus.saturating_sub(CPUS_PER_LAYER),
        }
    }

    fn in_use(self) -> bool {
        match self {
            Workers::Always(n) => n > 0,
            Workers::WhileCpusSpare(cpus) => UNPACKING.load(Ordering::Relaxed) * CPUS_PER_LAYER < cpus,
        }
    }
}

/// Parse the tar from `reader` and apply every entry; returns (bytes, entries, diffID).
fn apply_stream(root: Root, reader: ChunkReader, workers: Workers) -> Result<(u64, u64, String)> {
    let tar_err = |e: TarError| Error::Stream { format: "tar", reason: e.to_string() };
    let defaults = Defaults::of(root.fd());
    std::thread::scope(|s| {
        let pool = (workers.threads() > 0).then(|| Pool::start(s, workers.threads()));
        let mut applier =
            Applier { root, defaults, pool, workers, dir_times: Vec::new(), size: 0, entries: 0, earlier: None };
        let mut tar = TarReader::new(reader);
        let applied = (|| {
            while let Some(entry) = tar.next_entry().map_err(tar_err)? {
                applier.apply(&mut tar, entry)?;
            }
            applier.finish()
        })();
        // Whatever happened, wait for the workers and let them go, or the scope never ends.
        let drained = applier.drain();
        if let Some(pool) = &mut applier.pool {
            pool.lanes = None;
        }
        applied?;
        drained?;
        // Read to the end so the diffID covers the padding after the end-of-archive blocks.
        let mut rest = tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| tar_err(e.into()))?;
        let diff_id = rest.hasher().expect("reader hashes chunks").oci_digest();
        Ok((applier.size, applier.entries, diff_id))
    })
}

/// Metadata of one entry, as applied to the file.
#[derive(Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Regular files up to this size may be handed to a worker (their content is copied).
const POOL_FILE_MAX: u64 = 256 << 10;
/// Files go to the workers in batches, so that a wake-up (a futex call and a
/// context switch, dear in a VM) is paid per batch rather than per file.
const BATCH_FILES: usize = 16;
const BATCH_BYTES: usize = 512 << 10;
const POOL_QUEUE: usize = 8;

/// A small regular file to create, complete with its content.
struct FileJob {
    seq: u64,
    path: Vec<u8>,
    parent: Arc<OwnedFd>,
    name: Vec<u8>,
    data: Vec<u8>,
    meta: Meta,
    plan: Plan,
}

/// What a worker reports for one batch.
struct BatchDone {
    files: usize,
    bytes: u64,
    /// The batch's earliest failure: (seq, path, reason).
    failed: Option<(u64, Vec<u8>, String)>,
}

/// Workers that create small files. The parsing thread keeps order: it hands
/// a file over only if its name is free and not already in flight, and waits
/// for all workers (`drain`) before anything that could depend on or undo
/// their work (replacing an entry, a hard link, a missing parent, dir times).
///
/// Each worker has a lane of its own and a directory's files always go down
/// the same lane: creating a file holds its directory's lock, and two workers
/// creating in one directory only take turns, the waiter spinning on the
/// lock (measured: 5% of a pull's CPU when lanes were shared).
struct Pool {
    /// None once parsing ended: dropping the senders lets the workers go.
    lanes: Option<Vec<Lane>>,
    done: Receiver<BatchDone>,
    /// Files handed over and not yet reported back.
    outstanding: usize,
    /// (parent inode, name) handed over since the last drain.
    in_flight: HashSet<(u64, Vec<u8>)>,
    /// The earliest failed job: (seq, error).
    failed: Option<(u64, Error)>,
}

struct Lane {
    jobs: SyncSender<Vec<FileJob>>,
    /// Handed over but not yet sent.
    batch: Vec<FileJob>,
    batch_bytes: usize,
}

impl Lane {
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_FILES));
        self.batch_bytes = 0;
        self.jobs.send(batch).expect("file workers outlive the parser");
    }
}

impl Pool {
    fn start<'scope>(s: &'scope std::thread::Scope<'scope, '_>, workers: usize) -> Self {
        let (done_tx, done_rx) = channel();
        let mut lanes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_tx, job_rx) = sync_channel::<Vec<FileJob>>(POOL_QUEUE);
            let done_tx = done_tx.clone();
            s.spawn(move || {
                for batch in job_rx {
                    let mut done = BatchDone { files: batch.len(), bytes: 0, failed: None };
                    for job in batch {
                        match write_file(job.parent.as_fd(), &job.name, &job.data, &job.meta, job.plan) {
                            Ok(()) => done.bytes += job.data.len() as u64,
                            Err(reason) => {
                                if done.failed.as_ref().is_none_or(|(s, _, _)| job.seq < *s) {
                                    done.failed = Some((job.seq, job.path, reason));
                                }
                            }
                        }
                    }
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            });
            lanes.push(Lane { jobs: job_tx, batch: Vec::with_capacity(BATCH_FILES), batch_bytes: 0 });
        }
        Self { lanes: Some(lanes), done: done_rx, outstanding: 0, in_flight: HashSet::new(), failed: None }
    }

    fn push(&mut self, job: FileJob, parent_ino: u64) {
        self.in_flight.insert((parent_ino, job.name.clone()));
        self.outstanding += 1;
        let lanes = self.lanes.as_mut().expect("pool open while parsing");
        let k = (parent_ino % lanes.len() as u64) as usize;
        let lane = &mut lanes[k];
        lane.batch_bytes += job.data.len();
        lane.batch.push(job);
        if lane.batch.len() >= BATCH_FILES || lane.batch_bytes >= BATCH_BYTES {
            lane.flush();
        }
    }

    /// Send the files held back so far.
    fn flush(&mut self) {
        for lane in self.lanes.iter_mut().flatten() {
            lane.flush();
        }
    }

    fn record(&mut self, done: BatchDone, size: &mut u64) {
        self.outstanding -= done.files;
        *size += done.bytes;
        if let Some((seq, path, reason)) = done.failed {
            if self.failed.as_ref().is_none_or(|(s, _)| seq < *s) {
                self.failed = Some((seq, Error::entry(&path, reason)));
            }
        }
    }
}

struct Applier {
    root: Root,
    defaults: Defaults,
    pool: Option<Pool>,
    workers: Workers,
    /// Directory mtimes are set last: creating children would move them.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    size: u64,
    entries: u64,
    /// An earlier entry's failure, found (on a worker) while applying a later one.
    earlier: Option<Error>,
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

/// What a new inode gets without being asked, so that the chown and chmod
/// that would change nothing are left out: for the typical layer file (root's,
/// mode 0644 or 0755) that is two of its six syscalls.
#[derive(Clone, Copy, Debug)]
struct Defaults {
    /// Only root may give files away; others keep their own.
    chown: bool,
    /// A new inode's owner: the process's.
    uid: u32,
    gid: u32,
    /// None when unknown: then every mode is set explicitly.
    umask: Option<u32>,
    /// Some directory of the tree may pass its group on (setgid) or dictate
    /// modes (a default ACL): then owner and mode are always set. Once true,
    /// it stays true for the rest of the layer.
    inherits: bool,
}

/// How one new file or directory is created and finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    create_mode: u32,
    chown: bool,
    chmod: bool,
}

const ACL_DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

impl Defaults {
    fn of(root: BorrowedFd<'_>) -> Self {
        let plain_root = rfs::fstat(root).is_ok_and(|st| st.st_mode & 0o2000 == 0)
            && matches!(rfs::fgetxattr(root, ACL_DEFAULT_XATTR, &mut [0u8; 0]), Err(Errno::NODATA | Errno::OPNOTSUPP))
            && is_empty_dir(root);
        Defaults {
            chown: rustix::process::geteuid().is_root(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask: process_umask(),
            // A target that is not empty may hold setgid directories of its own.
            inherits: !plain_root,
        }
    }

    /// The plan for a regular file (or, with `dir`, a directory).
    fn plan(&self, meta: &Meta, dir: bool) -> Plan {
        let chown = self.chown && (self.inherits || (meta.uid, meta.gid) != (self.uid, self.gid));
        let perm = meta.mode & 0o777;
        // Special bits go through chmod after chown (which clears them); a
        // directory must stay writable to us while its children are made.
        let exact = !self.inherits
            && meta.mode & 0o7000 == 0
            && self.umask.is_some_and(|u| perm & u == 0)
            && (!dir || perm & 0o700 == 0o700);
        let fallback = if dir { 0o700 } else { 0o600 };
        Plan { create_mode: if exact { perm } else { fallback }, chown, chmod: !exact }
    }

    /// Whether applying `meta` to a directory makes it pass things on.
    fn makes_inheriting(meta: &Meta) -> bool {
        meta.mode & 0o2000 != 0 || meta.xattrs.iter().any(|(k, _)| k == ACL_DEFAULT_XATTR)
    }
}

fn set_owner_at(parent: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), String> {
    rfs::chownat(
        parent,
        name,
        Some(rfs::Uid::from_raw(meta.uid)),
        Some(rfs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(errno_ctx("setting owner"))
}

/// The umask, from /proc (reading it with umask(2) would change it for a moment
/// under the other threads' feet).
fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn is_empty_dir(dir: BorrowedFd<'_>) -> bool {
    let Ok(mut entries) = rfs::Dir::read_from(dir) else { return false };
    while let Some(entry) = entries.read() {
        match entry {
            Ok(e) if matches!(e.file_name().to_bytes(), b"." | b"..") => {}
            _ => return false,
        }
    }
    true
}

/// Create `name` in `parent` with `data`, then owner, mode, xattrs and times.
/// Fails if the name exists (the caller decides about replacing).
fn write_file(parent: BorrowedFd<'_>, name: &[u8], data: &[u8], meta: &Meta, plan: Plan) -> Result<(), String> {
    let mut file = create_file(parent, name, plan.create_mode).map_err(|e| format!("creating file: {}", io::Error::from(e)))?;
    file.write_all(data).map_err(ctx("writing file"))?;
    finish_file(&file, meta, plan)
}

fn create_file(parent: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<File, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(parent, name, flags, Mode::from_raw_mode(mode)).map(File::from)
}

/// Owner, mode, xattrs, times of a written file. Order matters: chown clears
/// setuid bits and file capabilities, so mode and xattrs come after it;
/// times come last.
fn finish_file(file: &File, meta: &Meta, plan: Plan) -> Result<(), String> {
    if plan.chown {
        rfs::fchown(file, Some(rfs::Uid::from_raw(meta.uid)), Some(rfs::Gid::from_raw(meta.gid)))
            .map_err(errno_ctx("setting owner"))?;
    }
    if plan.chmod {
        rfs::fchmod(file, Mode::from_raw_mode(meta.mode)).map_err(errno_ctx("setting mode"))?;
    }
    for (key, value) in &meta.xattrs {
        match rfs::fsetxattr(file, key.as_slice(), value, XattrFlags::empty()) {
            Err(e) if !xattr_unsupported(key, e) => {
                return Err(format!("setting xattr {}: {}", String::from_utf8_lossy(key), io::Error::from(e)))
            }
            _ => {}
        }
    }
    rfs::futimens(file, &meta.times).map_err(errno_ctx("setting times"))
}

impl Applier {
    fn apply<R: BufRead>(&mut self, tar: &mut TarReader<R>, entry: Entry) -> Result<()> {
        self.entries += 1;
        let seq = self.entries;
        match self.apply_inner(tar, &entry, seq) {
            Ok(()) => Ok(()),
            Err(reason) => {
                // An earlier entry that failed on a worker is the one to report.
                if let Some(e) = self.earlier.take() {
                    return Err(e);
                }
                self.drain()?;
                Err(Error::entry(&entry.path, reason))
            }
        }
    }

    /// `drain` for use inside an entry: an earlier entry's failure is kept
    /// aside (and reported by `apply`) instead of being blamed on this one.
    fn wait_for_workers(&mut self) -> Result<(), String> {
        self.drain().map_err(|e| {
            let msg = e.to_string();
            self.earlier = Some(e);
            msg
        })
    }

    /// Wait for every handed-over file; the earliest failure, if any.
    fn drain(&mut self) -> Result<()> {
        let Some(pool) = &mut self.pool else { return Ok(()) };
        pool.flush();
        while pool.outstanding > 0 {
            let done = pool.done.recv().expect("file workers outlive the parser");
            pool.record(done, &mut self.size);
        }
        pool.in_flight.clear();
        match pool.failed.take() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// The parent directory; a missing one is created only once no worker can
    /// still be creating a file of that name.
    fn parent(&mut self, comps: &[&[u8]]) -> Result<Dir, String> {
        if let Ok(dir) = self.root.dir(comps, false) {
            return Ok(dir);
        }
        self.wait_for_workers()?;
        self.root.dir(comps, true).map_err(|e| {
            // Typically a symlink in the path that, resolved inside the root,
            // dangles or loops (e.g. "etc" -> "/etc"): refused, never followed out.
            format!(
                "parent directory {:?} does not resolve to a directory inside the layer: {e}",
                String::from_utf8_lossy(&join(comps))
            )
        })
    }

    /// Before touching `name` on this thread: wait if a worker has it in hand.
    fn settle(&mut self, dir: &Dir, name: &[u8]) -> Result<(), String> {
        let busy = self.pool.as_ref().is_some_and(|p| p.in_flight.contains(&(dir.ino, name.to_vec())));
        if busy {
            self.wait_for_workers()?;
        }
        Ok(())
    }

    fn apply_inner<R: BufRead>(&mut self, tar: &mut TarReader<R>, entry: &Entry, seq: u64) -> Result<(), String> {
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
        let dir = self.parent(parent_comps)?;
        let parent = dir.fd.as_fd();

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
            self.settle(&dir, hidden)?;
            // overlayfs' whiteout: a 0:0 character device under the hidden name.
            self.create(parent, hidden, || {
                rfs::mknodat(parent, hidden, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
            })
            .map_err(ctx("creating whiteout"))?;
            return self.chown_at(parent, hidden, &meta);
        }

        self.settle(&dir, name)?;
        match kind {
            Kind::Regular => self.regular_file(tar, entry, &dir, name, meta, seq),
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
            Kind::HardLink => {
                // Its target may be a file still in a worker's hands.
                self.wait_for_workers()?;
                self.hard_link(parent, name, &entry.link)
            }
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

    /// Run `make`; if the name is taken, remove what is there (recursively,
    /// once no worker is writing under it) and run it again: a later entry
    /// replaces an earlier one.
    fn create<T>(&mut self, parent: BorrowedFd<'_>, name: &[u8], mut make: impl FnMut() -> Result<T, Errno>) -> io::Result<T> {
        match make() {
            Err(Errno::EXIST) => {
                self.wait_for_workers().map_err(io::Error::other)?;
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
        dir: &Dir,
        name: &[u8],
        meta: Meta,
        seq: u64,
    ) -> Result<(), String> {
        let parent = dir.fd.as_fd();
        if self.pool.is_some() && entry.sparse.is_none() && entry.size <= POOL_FILE_MAX && self.workers.in_use() {
            // A taken name (a replacement) or an unclear answer is handled here, in order.
            if let Err(Errno::NOENT) = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                let mut data = Vec::with_capacity(entry.size as usize);
                loop {
                    let chunk = tar.data(CHUNK).map_err(|e| format!("reading content: {e}"))?;
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len();
                    data.extend_from_slice(chunk);
                    tar.consume_data(n);
                }
                let plan = self.defaults.plan(&meta, false);
                let job = FileJob { seq, path: entry.path.clone(), parent: Arc::clone(&dir.fd), name: name.to_vec(), data, meta, plan };
                return self.hand_over(job, dir.ino);
            }
        }
        let plan = self.defaults.plan(&meta, false);
        let mut file = match create_file(parent, name, plan.create_mode) {
            Ok(f) => f,
            Err(Errno::EXIST) => {
                self.wait_for_workers()?;
                remove_all_at(parent, name).map_err(ctx("replacing existing entry"))?;
                self.root.invalidate();
                create_file(parent, name, plan.create_mode).map_err(|e| format!("creating file: {}", io::Error::from(e)))?
            }
            Err(e) => return Err(format!("creating file: {}", io::Error::from(e))),
        };
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
        finish_file(&file, &meta, plan)
    }

    fn hand_over(&mut self, job: FileJob, parent_ino: u64) -> Result<(), String> {
        let pool = self.pool.as_mut().expect("pool checked by the caller");
        // Collect finished work first, so a failure stops the layer early.
        while let Ok(done) = pool.done.try_recv() {
            pool.record(done, &mut self.size);
        }
        if pool.failed.is_some() {
            return self.wait_for_workers();
        }
        pool.push(job, parent_ino);
        Ok(())
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
        if Defaults::makes_inheriting(meta) && !self.defaults.inherits {
            // Files in flight were planned for a directory that passed nothing on.
            self.wait_for_workers()?;
            self.defaults.inherits = true;
        }
        let mut plan = self.defaults.plan(meta, true);
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(plan.create_mode)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_ctx("inspecting existing entry"))?;
                // A directory over a directory merges; anything else is replaced.
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.wait_for_workers()?;
                    remove_all_at(parent, name).map_err(ctx("replacing existing entry"))?;
                    self.root.invalidate();
                    rfs::mkdirat(parent, name, Mode::from_raw_mode(plan.create_mode)).map_err(errno_ctx("creating directory"))?;
                } else {
                    // Made earlier with other metadata: everything is set again.
                    plan.chown = self.defaults.chown;
                    plan.chmod = true;
                }
            }
            Err(e) => return Err(format!("creating directory: {}", io::Error::from(e))),
        }
        if plan.chown {
            set_owner_at(parent, name, meta)?;
        }
        if plan.chmod {
            // Not a symlink (just made or checked), so following the last component is safe.
            rfs::chmodat(parent, name, Mode::from_raw_mode(meta.mode), AtFlags::empty()).map_err(errno_ctx("setting mode"))?;
        }
        self.xattrs_at(parent, name, meta)?;
        self.dir_times.push((join(comps), meta.times.clone()));
        Ok(())
    }

    fn apply_root(&mut self, meta: &Meta) -> Result<(), String> {
        if Defaults::makes_inheriting(meta) && !self.defaults.inherits {
            self.wait_for_workers()?;
            self.defaults.inherits = true;
        }
        let root = self.root.fd();
        if self.defaults.chown {
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

    /// Owner of a symlink, device node or whiteout, when it is not the one it got.
    fn chown_at(&self, parent: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), String> {
        if !self.defaults.plan(meta, false).chown {
            return Ok(());
        }
        set_owner_at(parent, name, meta)
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

    /// Directory times, deepest first so a parent's is not moved by a child's;
    /// after every file is written.
    fn finish(&mut self) -> Result<()> {
        self.drain()?;
        if let Some(pool) = &mut self.pool {
            pool.lanes = None; // lets the workers end
        }
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

#[cfg(test)]
mod worker_tests {
    use super::*;

    #[test]
    fn automatic_workers_take_only_the_cpus_a_layer_leaves() {
        assert_eq!(Workers::WhileCpusSpare(1).threads(), 0);
        assert_eq!(Workers::WhileCpusSpare(2).threads(), 0);
        assert_eq!(Workers::WhileCpusSpare(8).threads(), 6);
        assert_eq!(Workers::Always(3).threads(), 3);
        assert!(Workers::Always(1).in_use() && !Workers::Always(0).in_use());
        // No CPUs: never, however many layers are being unpacked.
        assert!(!Workers::WhileCpusSpare(0).in_use());
    }
}
