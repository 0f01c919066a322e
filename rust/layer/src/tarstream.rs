//! A streaming tar reader for untrusted layers.
//!
//! Our own rather than the `tar` crate's because a layer is hostile input:
//! extension headers (PAX, GNU long names) are read into memory, so their size
//! is capped at 1 MiB as Go's archive/tar (Docker's reader) caps them; and every
//! rule that decides where the next header starts (PAX `size` overriding the
//! ustar field, which Go writes as 0 for files of 8 GiB and more; GNU sparse
//! maps) lives in this one place. Formats: v7, ustar (prefix), GNU (long
//! names, base-256 numbers, old sparse), PAX (path, linkpath, size, uid, gid,
//! mtime, atime, SCHILY.xattr.*). Data is handed out by reference from the
//! reader's buffer, without copying.

use std::io::{self, BufRead};

pub const BLOCK: usize = 512;
/// Largest PAX / GNU long-name payload accepted (Go's archive/tar limit).
pub const MAX_EXTENSION: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("unexpected end of archive{0}")]
    Truncated(String),
    #[error("header checksum mismatch at offset {0}")]
    Checksum(u64),
    #[error("bad header at offset {offset}: {reason}")]
    Header { offset: u64, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
    /// Entries with no meaning in a layer (GNU volume labels, PAX globals).
    Ignored,
    Unsupported(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sparse {
    /// (offset in the file, length) of each stored run, in archive order.
    pub runs: Vec<(u64, u64)>,
    pub real_size: u64,
}

/// One entry, extension headers applied; its data follows in the stream.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Data bytes stored in the archive for this entry.
    pub size: u64,
    pub sparse: Option<Sparse>,
}

pub struct TarReader<R: BufRead> {
    src: R,
    /// Archive offset of the next unread byte.
    offset: u64,
    /// Data bytes of the current entry not yet read, then its padding.
    data_left: u64,
    pad_left: u64,
    ended: bool,
}

fn parse_number(field: &[u8]) -> Result<u64, String> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // GNU base-256: big-endian two's complement; negative is meaningless here.
            if first == 0xff {
                return Err("negative number".into());
            }
            let mut v: u64 = (first & 0x7f) as u64;
            for &b in &field[1..] {
                v = v.checked_mul(256).and_then(|v| v.checked_add(b as u64)).ok_or("number overflows 64 bits")?;
            }
            return Ok(v);
        }
    }
    // Octal, padded with spaces or NULs on either side; an empty field is 0 (as Go reads it).
    let digits: &[u8] = {
        let start = field.iter().position(|&b| b != b' ' && b != 0).unwrap_or(field.len());
        let rest = &field[start..];
        let end = rest.iter().position(|&b| b == b' ' || b == 0).unwrap_or(rest.len());
        &rest[..end]
    };
    let mut v: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return Err(format!("{:?} is not an octal number", String::from_utf8_lossy(field)));
        }
        v = v.checked_mul(8).and_then(|v| v.checked_add((d - b'0') as u64)).ok_or("number overflows 64 bits")?;
    }
    Ok(v)
}

fn c_string(field: &[u8]) -> &[u8] {
    &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())]
}

/// A PAX time: decimal seconds with an optional fraction ("1700000000.5").
pub fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 9 {
            nsec += (c - b'0') as u32 * 10u32.pow(8 - i as u32);
        }
    }
    Some(if neg && nsec > 0 {
        Time { sec: -sec - 1, nsec: 1_000_000_000 - nsec }
    } else if neg {
        Time { sec: -sec, nsec: 0 }
    } else {
        Time { sec, nsec }
    })
}

/// PAX records "<len> <key>=<value>\n"; None if malformed.
fn pax_records(mut data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        // Some writers pad the payload with NULs.
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=')?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Some(out)
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

impl<R: BufRead> TarReader<R> {
    pub fn new(src: R) -> Self {
        Self { src, offset: 0, data_left: 0, pad_left: 0, ended: false }
    }

    pub fn into_inner(self) -> R {
        self.src
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), TarError> {
        let mut got = 0;
        while got < buf.len() {
            let avail = self.src.fill_buf()?;
            if avail.is_empty() {
                return Err(TarError::Truncated(format!(" in {what}")));
            }
            let n = avail.len().min(buf.len() - got);
            buf[got..got + n].copy_from_slice(&avail[..n]);
            self.src.consume(n);
            got += n;
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, mut n: u64, what: &str) -> Result<(), TarError> {
        while n > 0 {
            let avail = self.src.fill_buf()?;
            if avail.is_empty() {
                return Err(TarError::Truncated(format!(" in {what}")));
            }
            let k = (avail.len() as u64).min(n) as usize;
            self.src.consume(k);
            self.offset += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// Read one 512-byte block; None for an all-zero block or a clean EOF.
    fn header_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        if self.src.fill_buf()?.is_empty() {
            // EOF where a header would start: a tar without its end blocks.
            return Ok(None);
        }
        let mut block = [0u8; BLOCK];
        self.read_exact(&mut block, "a header")?;
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let at = self.offset - BLOCK as u64;
        let stored = parse_number(&block[148..156]).map_err(|_| TarError::Checksum(at))?;
        let unsigned: u64 = block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 }).sum();
        // Some old writers summed signed chars.
        let signed: i64 = block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i64 }).sum();
        if stored != unsigned && stored as i64 != signed {
            return Err(TarError::Checksum(at));
        }
        Ok(Some(block))
    }

    fn extension(&mut self, size: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::Header {
                offset: self.offset,
                reason: format!("{what} of {size} bytes is over the {MAX_EXTENSION}-byte limit"),
            });
        }
        let mut data = vec![0u8; size as usize];
        self.read_exact(&mut data, what)?;
        self.skip(pad(size), what)?;
        Ok(data)
    }

    /// The next entry, after finishing (skipping) the current one's data.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        self.skip_data()?;
        if self.ended {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            let Some(block) = self.header_block()? else {
                self.ended = true;
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(TarError::Truncated(": extension header without its entry".into()));
                }
                return Ok(None);
            };
            let at = self.offset - BLOCK as u64;
            let bad = |reason: String| TarError::Header { offset: at, reason };
            let typeflag = block[156];
            let header_size = parse_number(&block[124..136]).map_err(|e| bad(format!("size: {e}")))?;
            match typeflag {
                b'L' => {
                    long_name = Some(c_string(&self.extension(header_size, "GNU long name")?).to_vec());
                    continue;
                }
                b'K' => {
                    long_link = Some(c_string(&self.extension(header_size, "GNU long link name")?).to_vec());
                    continue;
                }
                b'x' | b'X' => {
                    pax = Some(self.extension(header_size, "PAX header")?);
                    continue;
                }
                b'g' => {
                    // Global PAX records: Go and Docker ignore them, so do we.
                    self.extension(header_size, "PAX global header")?;
                    continue;
                }
                _ => {}
            }
            return self.entry(block, at, header_size, long_name, long_link, pax).map(Some);
        }
    }

    fn entry(
        &mut self,
        block: [u8; BLOCK],
        at: u64,
        header_size: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<Vec<u8>>,
    ) -> Result<Entry, TarError> {
        let bad = |reason: String| TarError::Header { offset: at, reason };
        let num = |range: std::ops::Range<usize>, what: &str| parse_number(&block[range]).map_err(|e| bad(format!("{what}: {e}")));
        let ustar = &block[257..263] == b"ustar\0";
        let mut path = c_string(&block[0..100]).to_vec();
        if ustar {
            let prefix = c_string(&block[345..500]);
            if !prefix.is_empty() {
                path = [prefix, b"/", &path].concat();
            }
        }
        let typeflag = block[156];
        let mut entry = Entry {
            path,
            kind: match typeflag {
                b'0' | 0 | b'7' | b'S' => Kind::Regular,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' | b'D' => Kind::Directory,
                b'6' => Kind::Fifo,
                b'V' => Kind::Ignored,
                other => Kind::Unsupported(other),
            },
            mode: (num(100..108, "mode")? & 0o7777) as u32,
            uid: num(108..116, "uid")?,
            gid: num(116..124, "gid")?,
            mtime: Time { sec: num(136..148, "mtime")? as i64, nsec: 0 },
            atime: None,
            link: c_string(&block[157..257]).to_vec(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            size: header_size,
            sparse: None,
        };
        if matches!(entry.kind, Kind::Char | Kind::Block) {
            entry.dev_major = u32::try_from(num(329..337, "device major")?).map_err(|_| bad("device major too large".into()))?;
            entry.dev_minor = u32::try_from(num(337..345, "device minor")?).map_err(|_| bad("device minor too large".into()))?;
        }
        if let Some(name) = long_name {
            entry.path = name;
        }
        if let Some(link) = long_link {
            entry.link = link;
        }
        if let Some(data) = pax {
            let records = pax_records(&data).ok_or_else(|| bad("malformed PAX records".into()))?;
            let decimal = |v: &[u8], what: &str| {
                std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| bad(format!("PAX {what} {:?} is not a number", String::from_utf8_lossy(v))))
            };
            for (key, value) in records {
                match key {
                    b"path" => entry.path = value.to_vec(),
                    b"linkpath" => entry.link = value.to_vec(),
                    b"size" => entry.size = decimal(value, "size")?,
                    b"uid" => entry.uid = decimal(value, "uid")?,
                    b"gid" => entry.gid = decimal(value, "gid")?,
                    b"mtime" => entry.mtime = parse_pax_time(value).ok_or_else(|| bad("bad PAX mtime".into()))?,
                    b"atime" => entry.atime = parse_pax_time(value),
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        entry.xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()))
                    }
                    k if k.starts_with(b"GNU.sparse.") => {
                        // Its data is a packed map plus runs; read as plain it would be garbage.
                        return Err(bad("PAX sparse files (GNU.sparse.*) are not supported".into()));
                    }
                    _ => {}
                }
            }
        }
        if typeflag == b'S' {
            let sparse = self.gnu_sparse_map(&block, at)?;
            if sparse.runs.iter().map(|r| r.1).sum::<u64>() != entry.size {
                return Err(bad("sparse runs do not add up to the stored size".into()));
            }
            entry.sparse = Some(sparse);
        }
        // v7 tars mark directories only by a trailing slash.
        if (typeflag == 0 || typeflag == b'0') && entry.path.ends_with(b"/") {
            entry.kind = Kind::Directory;
        }
        // Only regular files carry data; a size on anything else is skipped.
        self.data_left = entry.size;
        self.pad_left = pad(entry.size);
        Ok(entry)
    }

    /// The old GNU sparse map: four runs in the header, more in extension blocks.
    fn gnu_sparse_map(&mut self, block: &[u8; BLOCK], at: u64) -> Result<Sparse, TarError> {
        let bad = |reason: String| TarError::Header { offset: at, reason };
        let mut runs = Vec::new();
        let mut add = |raw: &[u8]| -> Result<(), TarError> {
            let off = parse_number(&raw[..12]).map_err(|e| bad(format!("sparse offset: {e}")))?;
            let len = parse_number(&raw[12..24]).map_err(|e| bad(format!("sparse length: {e}")))?;
            if raw[..12].iter().any(|&b| b != 0) {
                runs.push((off, len));
            }
            Ok(())
        };
        for i in 0..4 {
            add(&block[386 + i * 24..386 + (i + 1) * 24])?;
        }
        let real_size = parse_number(&block[483..495]).map_err(|e| bad(format!("sparse real size: {e}")))?;
        let mut extended = block[482] != 0;
        while extended {
            let mut ext = [0u8; BLOCK];
            self.read_exact(&mut ext, "a sparse map")?;
            for i in 0..21 {
                add(&ext[i * 24..(i + 1) * 24])?;
            }
            extended = ext[504] != 0;
        }
        let mut end = 0;
        for &(off, len) in &runs {
            if off < end || off.checked_add(len).is_none_or(|e| e > real_size) {
                return Err(bad("sparse runs overlap or pass the file's end".into()));
            }
            end = off + len;
        }
        Ok(Sparse { runs, real_size })
    }

    /// Up to `max` bytes of the current entry's data, without copying; empty at
    /// the end of the entry. Call `consume_data` with what was used.
    pub fn data(&mut self, max: usize) -> Result<&[u8], TarError> {
        if self.data_left == 0 {
            return Ok(&[]);
        }
        let want = (self.data_left.min(max as u64)) as usize;
        let avail = self.src.fill_buf()?;
        if avail.is_empty() {
            return Err(TarError::Truncated(" in file data".into()));
        }
        let n = avail.len().min(want);
        Ok(&avail[..n])
    }

    pub fn consume_data(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.data_left);
        self.src.consume(n);
        self.offset += n as u64;
        self.data_left -= n as u64;
    }

    /// Skip whatever is left of the current entry's data and padding.
    pub fn skip_data(&mut self) -> Result<(), TarError> {
        let n = self.data_left;
        self.skip(n, "file data")?;
        self.data_left = 0;
        let p = self.pad_left;
        self.skip(p, "file data")?;
        self.pad_left = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(1);
        h.set_gid(2);
        h.set_mtime(3);
        h
    }

    fn all(data: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(data);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut body = Vec::new();
            loop {
                let d = r.data(7)?; // tiny reads cross every boundary
                if d.is_empty() {
                    break;
                }
                let n = d.len();
                body.extend_from_slice(d);
                r.consume_data(n);
            }
            out.push((e, body));
        }
        Ok(out)
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_number(b"   644 \0"), Ok(0o644));
        assert_eq!(parse_number(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]), Ok(2 << 16));
        assert!(parse_number(b"12a\0").is_err());
        assert!(parse_number(&[0xff; 12]).is_err());
    }

    #[test]
    fn long_names_links_and_data() {
        let long = "d/".repeat(80) + "file";
        let data = build(|b| {
            let mut h = header(tar::EntryType::Regular, 5);
            b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "s", &long).unwrap();
        });
        let entries = all(&data).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.path, long.as_bytes());
        assert_eq!(entries[0].1, b"hello");
        assert_eq!((entries[0].0.uid, entries[0].0.gid, entries[0].0.mtime.sec), (1, 2, 3));
        assert_eq!(entries[1].0.kind, Kind::Symlink);
        assert_eq!(entries[1].0.link, long.as_bytes());
    }

    #[test]
    fn pax_overrides_and_xattrs() {
        let data = build(|b| {
            b.append_pax_extensions([
                ("path", &b"pax/name"[..]),
                ("mtime", b"1700000000.5"),
                ("uid", b"4000000"),
                ("SCHILY.xattr.user.k", b"v\0bin"),
            ])
            .unwrap();
            let mut h = header(tar::EntryType::Regular, 3);
            b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        });
        let (e, body) = all(&data).unwrap().pop().unwrap();
        assert_eq!(e.path, b"pax/name");
        assert_eq!(e.mtime, Time { sec: 1_700_000_000, nsec: 500_000_000 });
        assert_eq!(e.uid, 4_000_000);
        assert_eq!(e.xattrs, vec![(b"user.k".to_vec(), b"v\0bin".to_vec())]);
        assert_eq!(body, b"abc");
    }

    #[test]
    fn pax_size_wins_over_a_zero_ustar_size() {
        // What Go writes for files of 8 GiB and more: ustar size 0, PAX size real.
        let data = build(|b| {
            b.append_pax_extensions([("size", &b"4"[..])]).unwrap();
            let mut h = header(tar::EntryType::Regular, 0);
            h.set_path("big").unwrap();
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
            b.get_mut().extend_from_slice(b"DATA");
            b.get_mut().extend_from_slice(&[0u8; 508]);
            let mut h = header(tar::EntryType::Regular, 1);
            b.append_data(&mut h, "next", &b"n"[..]).unwrap();
        });
        let entries = all(&data).unwrap();
        assert_eq!(entries[0].1, b"DATA");
        assert_eq!(entries[1].0.path, b"next");
    }

    #[test]
    fn oversized_extension_is_refused_before_reading_it() {
        let mut h = header(tar::EntryType::XHeader, MAX_EXTENSION + 1);
        h.set_path("x").unwrap();
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'a'; 1024]); // not even there: refused on the size alone
        let err = all(&data).unwrap_err();
        assert!(err.to_string().contains("over the 1048576-byte limit"), "{err}");
    }

    #[test]
    fn truncation_and_checksums() {
        let data = build(|b| {
            let mut h = header(tar::EntryType::Regular, 1000);
            b.append_data(&mut h, "f", &[7u8; 1000][..]).unwrap();
        });
        assert!(matches!(all(&data[..700]), Err(TarError::Truncated(_))));
        assert!(matches!(all(&data[..100]), Err(TarError::Truncated(_))));
        // A missing end-of-archive is accepted, as GNU tar and Go accept it.
        assert_eq!(all(&data[..1536]).unwrap().len(), 1);
        let mut bad = data.clone();
        bad[0] ^= 1;
        assert!(matches!(all(&bad), Err(TarError::Checksum(0))));
    }

    #[test]
    fn pax_records_parse() {
        assert_eq!(pax_records(b"9 path=a\n").unwrap(), vec![(&b"path"[..], &b"a"[..])]);
        assert!(pax_records(b"8 path=a\n").is_none());
        assert!(pax_records(b"99 path=a\n").is_none());
        assert_eq!(pax_records(b"9 path=a\n\0\0\0").unwrap().len(), 1);
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some(Time { sec: 1700000000, nsec: 0 }));
        assert_eq!(parse_pax_time(b"1.25"), Some(Time { sec: 1, nsec: 250_000_000 }));
        assert_eq!(parse_pax_time(b"-1.5"), Some(Time { sec: -2, nsec: 500_000_000 }));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some(Time { sec: 1, nsec: 123_456_789 }));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
