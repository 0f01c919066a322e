//! Content digests: streaming sha256 (the `sha2` crate picks SHA-NI at run time
//! when the CPU has it) and xxh3 for cache keys. No Python here: the pyo3 crate
//! wraps these.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::Digest as _;

/// Streaming sha256.
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    pub fn new() -> Self {
        Self(sha2::Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest so far; the hasher stays usable (hashlib semantics).
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }

    pub fn hexdigest(&self) -> String {
        hex(&self.digest())
    }

    /// `sha256:<hex>`, the OCI form.
    pub fn oci_digest(&self) -> String {
        format!("sha256:{}", self.hexdigest())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Hex sha256 of everything `reader` yields.
pub fn sha256_reader<R: Read>(mut reader: R) -> io::Result<String> {
    // 1 MiB: large enough that syscalls vanish next to hashing, small enough for L2.
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.hexdigest()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Hex sha256 of a file's content.
pub fn sha256_file(path: impl AsRef<Path>) -> io::Result<String> {
    sha256_reader(File::open(path)?)
}

/// True if `s` is `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

pub fn xxh3_64(data: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(data, seed)
}

pub fn xxh3_128(data: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(data)
}

/// A reader that hashes and counts the bytes passing through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn hasher(&self) -> &Sha256 {
        &self.hasher
    }

    pub fn into_parts(self) -> (R, Sha256, u64) {
        (self.inner, self.hasher, self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts the bytes written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn into_parts(self) -> (W, Sha256, u64) {
        (self.inner, self.hasher, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Sha256::new().hexdigest(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Sha256::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(
            h.hexdigest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Digest does not consume the state.
        h.update(b"d");
        assert_eq!(h.hexdigest(), sha256_reader(&b"abcd"[..]).unwrap());
    }

    #[test]
    fn streaming_matches_one_shot_across_block_boundaries() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut one = Sha256::new();
        one.update(&data);
        for split in [1, 63, 64, 65, 4097] {
            let mut h = Sha256::new();
            for chunk in data.chunks(split) {
                h.update(chunk);
            }
            assert_eq!(h.hexdigest(), one.hexdigest(), "split {split}");
        }
    }

    #[test]
    fn digest_syntax() {
        assert!(is_sha256_digest(&Sha256::new().oci_digest()));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(&Sha256::new().oci_digest().to_uppercase()));
        assert!(!is_sha256_digest(&Sha256::new().hexdigest()));
    }

    #[test]
    fn xxh3_known_values() {
        assert_eq!(xxh3_64(b"", 0), 0x2D06800538D394C2);
        assert_ne!(xxh3_64(b"a", 0), xxh3_64(b"a", 1));
        assert_eq!(xxh3_128(b""), 0x99aa06d3014798d86001c324468d497f);
    }

    #[test]
    fn hashing_reader_and_writer_count() {
        let mut r = HashingReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        io::copy(&mut r, &mut out).unwrap();
        assert_eq!(r.count(), 5);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (buf, hasher, n) = w.into_parts();
        assert_eq!((buf.as_slice(), n), (&b"hello"[..], 5));
        assert_eq!(hasher.hexdigest(), r.hasher().hexdigest());
    }
}
