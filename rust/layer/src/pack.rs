//! Layer pack: a directory (or an overlay upper dir) into a reproducible tar,
//! compressed, with the diffID and the compressed digest computed in the same
//! pass.
//!
//! Reproducible means: names sorted byte-wise per directory, numeric owners with
//! empty user/group names, mtimes in whole seconds, PAX records in key order, a
//! gzip header without name or time. The same tree always gives the same bytes.
//!
//! Two threads: the caller's walks the tree, formats and hashes the tar; a
//! second compresses, hashes and writes the output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use berth_digest::HashingWriter;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::compression::{gzip_level, Compression, Encoder};
use crate::pgzip;
use crate::error::{Error, Result};
use crate::pipe::{chunk_pipe, ChunkReader, ChunkWriter, CHUNK};
use crate::root::proc_path;
use crate::unpack::{OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

#[derive(Clone, Debug)]
pub struct PackOptions {
    pub compression: Compression,
    /// gzip 0-9 or zstd 1-22; None: gzip 6 (Go's DefaultCompression, as Docker), zstd 3.
    pub level: Option<i32>,
    /// Turn overlayfs whiteouts (0:0 char devices, opaque dirs) into OCI ones.
    pub overlay_upper: bool,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self { compression: Compression::Gzip, level: None, overlay_upper: false }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackStats {
    pub diff_id: String,
    pub digest: String,
    /// Bytes written to the output.
    pub size: u64,
    pub uncompressed_size: u64,
}

/// Pack `source` into the file `output` (replaced if present; removed on error).
pub fn pack_layer(source: &Path, output: &Path, opts: &PackOptions) -> Result<PackStats> {
    let src = rfs::open(source, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening {}", source.display()), e.into()))?;
    let file = File::create(output).map_err(|e| Error::io(format!("creating {}", output.display()), e))?;
    let result = pack_to(src, file, opts);
    if result.is_err() {
        let _ = std::fs::remove_file(output);
    }
    result
}

/// Pack the directory `src` into `out`.
pub fn pack_to(src: OwnedFd, out: File, opts: &PackOptions) -> Result<PackStats> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sink = HashingWriter::new(BufWriter::with_capacity(CHUNK, out));
    // Arguments are checked before any thread starts or byte is written.
    let compressor = match opts.compression {
        Compression::Gzip => Compressor::Gzip(gzip_level(opts.level)?, sink),
        other => Compressor::Stream(Encoder::new(other, sink, opts.level, workers as u32)?),
    };
    let (sender, reader) = chunk_pipe();
    let (walked, compressed) = std::thread::scope(|s| {
        let compressing = s.spawn(move || compress(reader, compressor, workers));
        let mut tar = TarWriter::new(HashingWriter::new(ChunkWriter::new(sender)));
        let walked = (|| {
            let mut packer = Packer { tar: &mut tar, links: HashMap::new(), overlay: opts.overlay_upper };
            packer.walk(src.as_fd(), b"")?;
            tar.finish().map_err(|e| Error::io("writing tar stream", e))?;
            Ok::<_, Error>(())
        })();
        let (mut chunks, diff, uncompressed) = tar.into_inner().into_parts();
        let flushed = chunks.flush();
        drop(chunks);
        let compressed = compressing.join().expect("layer compressor thread panicked");
        (walked.and(flushed.map_err(|e| Error::io("writing tar stream", e))).map(|_| (diff, uncompressed)), compressed)
    });
    // A failed compressor makes the walker fail with a broken pipe: report the cause.
    let (digest, size) = compressed?;
    let (diff, uncompressed_size) = walked?;
    Ok(PackStats { diff_id: diff.oci_digest(), digest, size, uncompressed_size })
}

type Sink = HashingWriter<BufWriter<File>>;

enum Compressor {
    Gzip(u32, Sink),
    Stream(Encoder<Sink>),
}

fn compress(mut reader: ChunkReader, compressor: Compressor, workers: usize) -> Result<(String, u64)> {
    let werr = |e| Error::io("writing layer output", e);
    let sink = match compressor {
        Compressor::Gzip(level, sink) => pgzip::compress(|| reader.take_chunk(), sink, level, workers).map_err(werr)?,
        Compressor::Stream(mut encoder) => {
            loop {
                let chunk = reader.peek();
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                encoder.write_all(chunk).map_err(werr)?;
                reader.consume(n);
            }
            encoder.finish().map_err(werr)?
        }
    };
    let (mut buffered, hash, count) = sink.into_parts();
    buffered.flush().map_err(werr)?;
    Ok((hash.oci_digest(), count))
}

/// One tar member to write.
struct Member {
    name: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Vec<u8>,
    dev: (u32, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Member {
    fn new(name: Vec<u8>, kind: tar::EntryType, st: &rfs::Stat) -> Self {
        Self {
            name,
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid as u64,
            gid: st.st_gid as u64,
            mtime: st.st_mtime,
            size: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

const USTAR_NAME: usize = 100;
const USTAR_PREFIX: usize = 155;
const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Split `name` into ustar (prefix, name) if it fits without PAX.
fn ustar_split(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= USTAR_NAME {
        return Some((b"", name));
    }
    if name.len() > USTAR_PREFIX + 1 + USTAR_NAME {
        return None;
    }
    // The first slash that leaves at most 100 bytes after it.
    let from = name.len() - USTAR_NAME - 1;
    let i = from + name[from..].iter().position(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    (prefix.len() <= USTAR_PREFIX && !rest.is_empty()).then_some((prefix, rest))
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

struct TarWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> Self {
        Self { out, buf: vec![0u8; CHUNK] }
    }

    fn header(&mut self, m: &Member) -> io::Result<()> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = m
            .xattrs
            .iter()
            .map(|(k, v)| ([&b"SCHILY.xattr."[..], k].concat(), v.clone()))
            .collect();
        let split = ustar_split(&m.name);
        if split.is_none() {
            pax.push((b"path".to_vec(), m.name.clone()));
        }
        if m.link.len() > USTAR_NAME {
            pax.push((b"linkpath".to_vec(), m.link.clone()));
        }
        if m.uid > USTAR_MAX_ID {
            pax.push((b"uid".to_vec(), m.uid.to_string().into_bytes()));
        }
        if m.gid > USTAR_MAX_ID {
            pax.push((b"gid".to_vec(), m.gid.to_string().into_bytes()));
        }
        if m.size > USTAR_MAX_SIZE {
            pax.push((b"size".to_vec(), m.size.to_string().into_bytes()));
        }
        if m.mtime < 0 || m.mtime as u64 > USTAR_MAX_SIZE {
            pax.push((b"mtime".to_vec(), m.mtime.to_string().into_bytes()));
        }

        if !pax.is_empty() {
            pax.sort();
            let mut records = Vec::new();
            for (k, v) in &pax {
                pax_record(&mut records, k, v);
            }
            let base = m.name.rsplit(|&b| b == b'/').find(|c| !c.is_empty()).unwrap_or(b"");
            let mut h = tar::Header::new_ustar();
            copy_field(&mut h.as_ustar_mut().unwrap().name, &[&b"PaxHeaders.0/"[..], base].concat());
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(records.len() as u64);
            h.set_cksum();
            self.out.write_all(h.as_bytes())?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }

        let mut h = tar::Header::new_ustar();
        {
            let ustar = h.as_ustar_mut().unwrap();
            let (prefix, name) = split.unwrap_or((b"", &m.name[..]));
            copy_field(&mut ustar.name, name);
            copy_field(&mut ustar.prefix, prefix);
            copy_field(&mut ustar.linkname, &m.link);
        }
        h.set_mode(m.mode);
        h.set_uid(m.uid.min(USTAR_MAX_ID + 1) % (USTAR_MAX_ID + 1));
        h.set_gid(m.gid.min(USTAR_MAX_ID + 1) % (USTAR_MAX_ID + 1));
        h.set_mtime(m.mtime.clamp(0, USTAR_MAX_SIZE as i64) as u64);
        h.set_size(m.size);
        h.set_entry_type(m.kind);
        if m.kind.is_character_special() || m.kind.is_block_special() {
            h.set_device_major(m.dev.0)?;
            h.set_device_minor(m.dev.1)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Copy exactly `size` bytes of `file`; a file that shrank is an error (the
    /// header already promised its size).
    fn data(&mut self, file: &mut File, size: u64) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while it was being packed"))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        self.pad(size)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()
    }

    fn into_inner(self) -> W {
        self.out
    }
}

struct Packer<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    /// (dev, ino) of files with several links -> the tar name first written.
    links: HashMap<(u64, u64), Vec<u8>>,
    overlay: bool,
}

fn list_xattrs(list: Vec<u8>, get: impl Fn(&[u8]) -> io::Result<Vec<u8>>, overlay: bool) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if overlay && name.starts_with(b"trusted.overlay.") {
            continue;
        }
        match get(name) {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed between list and get.
            Err(e) if e.raw_os_error() == Some(Errno::NODATA.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

fn fd_xattrs(fd: BorrowedFd<'_>, overlay: bool) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = grow(|buf| rfs::flistxattr(fd, buf))?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list_xattrs(list, |n| grow(|buf| rfs::fgetxattr(fd, n, buf)), overlay)
}

fn path_xattrs(path: &[u8], overlay: bool) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = grow(|buf| rfs::llistxattr(path, buf))?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list_xattrs(list, |n| grow(|buf| rfs::lgetxattr(path, n, buf)), overlay)
}

/// Call a size-returning xattr getter with a buffer that grows on ERANGE.
fn grow(mut call: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

impl<W: Write> Packer<'_, W> {
    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<()> {
        let shown = |name: &[u8]| String::from_utf8_lossy(&[prefix, name].concat()).into_owned();
        let mut names = Vec::new();
        let mut entries = rfs::Dir::read_from(dir).map_err(|e| Error::Pack { path: shown(b""), reason: format!("reading directory: {}", io::Error::from(e)) })?;
        while let Some(entry) = entries.read() {
            let entry = entry.map_err(|e| Error::Pack { path: shown(b""), reason: format!("reading directory: {}", io::Error::from(e)) })?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        for name in names {
            let rel = [prefix, &name].concat();
            self.entry(dir, &name, rel).map_err(|reason| Error::Pack { path: shown(&name), reason })?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: Vec<u8>) -> Result<(), String> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()), // removed while we walk
            Err(e) => return Err(format!("stat: {}", io::Error::from(e))),
        };
        let ftype = FileType::from_raw_mode(st.st_mode);
        let werr = |e: io::Error| format!("writing tar stream: {e}");
        let xerr = |e: io::Error| format!("reading xattrs: {e}");

        if ftype == FileType::Directory {
            let sub = rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("opening directory: {}", io::Error::from(e)))?;
            let mut m = Member::new([&rel[..], b"/"].concat(), tar::EntryType::Directory, &st);
            let opaque = self.overlay
                && grow(|buf| rfs::fgetxattr(&sub, OVERLAY_OPAQUE_XATTR, buf)).ok().as_deref() == Some(b"y");
            m.xattrs = fd_xattrs(sub.as_fd(), self.overlay).map_err(xerr)?;
            self.tar.header(&m).map_err(werr)?;
            if opaque {
                let mut wo = Member::new([&m.name[..], WHITEOUT_OPAQUE].concat(), tar::EntryType::Regular, &st);
                wo.mode &= 0o777;
                self.tar.header(&wo).map_err(werr)?;
            }
            let mut sub_prefix = rel;
            sub_prefix.push(b'/');
            return self.walk(sub.as_fd(), &sub_prefix).map_err(|e| match e {
                // Already names the deeper entry.
                Error::Pack { path, reason } => format!("in {path:?}: {reason}"),
                other => other.to_string(),
            });
        }

        // An overlayfs whiteout (kernels >= 5.8 may hard-link them all to one
        // inode, so this comes before the hard link check).
        if self.overlay && ftype == FileType::CharacterDevice && st.st_rdev == 0 {
            let (parent, base) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..=i], &rel[i + 1..]),
                None => (&b""[..], &rel[..]),
            };
            let mut wo = Member::new([parent, WHITEOUT_PREFIX, base].concat(), tar::EntryType::Regular, &st);
            wo.mode = 0;
            return self.tar.header(&wo).map_err(werr);
        }

        if st.st_nlink > 1 {
            let key = (st.st_dev as u64, st.st_ino as u64);
            if let Some(first) = self.links.get(&key) {
                let mut m = Member::new(rel, tar::EntryType::Link, &st);
                m.link = first.clone();
                return self.tar.header(&m).map_err(werr);
            }
            self.links.insert(key, rel.clone());
        }

        match ftype {
            FileType::RegularFile => {
                let fd = rfs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| format!("opening file: {}", io::Error::from(e)))?;
                let mut m = Member::new(rel, tar::EntryType::Regular, &st);
                m.size = st.st_size as u64;
                m.xattrs = fd_xattrs(fd.as_fd(), self.overlay).map_err(xerr)?;
                self.tar.header(&m).map_err(werr)?;
                let mut file = File::from(fd);
                self.tar.data(&mut file, m.size).map_err(|e| format!("reading content: {e}"))
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| format!("reading symlink: {}", io::Error::from(e)))?;
                let mut m = Member::new(rel, tar::EntryType::Symlink, &st);
                m.link = target.into_bytes();
                m.xattrs = path_xattrs(&proc_path(dir, name), self.overlay).map_err(xerr)?;
                self.tar.header(&m).map_err(werr)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match ftype {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut m = Member::new(rel, kind, &st);
                m.dev = (rfs::major(st.st_rdev), rfs::minor(st.st_rdev));
                m.xattrs = path_xattrs(&proc_path(dir, name), self.overlay).map_err(xerr)?;
                self.tar.header(&m).map_err(werr)
            }
            // Sockets cannot be carried by tar; Docker skips them too.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"a");
        assert_eq!(out, b"9 path=a\n"); // nine bytes, counting the "9"
        let mut out = Vec::new();
        let v = vec![b'x'; 95];
        pax_record(&mut out, b"path", &v);
        // 95 + 4 + 3 = 102, plus three digits = 105
        assert!(out.starts_with(b"105 path="));
        assert_eq!(out.len(), 105);
    }

    #[test]
    fn ustar_split_prefers_plain_names() {
        assert_eq!(ustar_split(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let long = [vec![b'd'; 120], b"/".to_vec(), vec![b'f'; 50]].concat();
        assert_eq!(ustar_split(&long), Some((&long[..120], &long[121..])));
        assert_eq!(ustar_split(&[b'f'; 101]), None);
    }
}
