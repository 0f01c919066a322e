//! Stream formats: detection by magic bytes and the matching decoders/encoders.

use std::io::{self, BufRead, Read, Write};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// What the first bytes of a stream say it is; anything else is a plain tar.
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The format of the stream decoders report errors in ("tar" for a plain one).
    pub fn stream_name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            other => other.name(),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            "none" | "" => Ok(Compression::None),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression {other:?} (expected \"gzip\", \"zstd\" or \"none\")"
            ))),
        }
    }
}

/// A decompressing reader over a buffered source; gives the source back so the
/// caller can drain and hash whatever follows the compressed data.
// One per layer, so the size of the gzip state inline does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Decoder<R: BufRead> {
    // Multi-member, like Go's gzip reader that Docker uses.
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Plain(R),
}

impl<R: BufRead> Decoder<R> {
    pub fn new(kind: Compression, source: R) -> io::Result<Self> {
        Ok(match kind {
            Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(source)),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(source)?;
                // Accept the long-distance windows `zstd --long` writes (up to 2 GiB).
                d.window_log_max(31)?;
                Decoder::Zstd(d)
            }
            Compression::None => Decoder::Plain(source),
        })
    }

    pub fn into_inner(self) -> R {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Plain(r) => r,
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(r) => r.read(buf),
        }
    }
}

/// The gzip level to use: 0-9, default 6 (Go's DefaultCompression, as Docker).
pub fn gzip_level(level: Option<i32>) -> Result<u32> {
    let level = level.unwrap_or(6);
    if !(0..=9).contains(&level) {
        return Err(Error::InvalidArgument(format!("gzip level {level} out of range 0-9")));
    }
    Ok(level as u32)
}

/// A compressing writer for zstd or none (gzip goes through `pgzip`, in
/// parallel); `finish` writes the trailer and returns the sink.
pub enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    /// `level`: zstd 1-22 (default 3). `workers`: zstd threads; the frame is
    /// the same for any count >= 1, so packing stays reproducible.
    pub fn new(kind: Compression, sink: W, level: Option<i32>, workers: u32) -> Result<Self> {
        Ok(match kind {
            Compression::Zstd => {
                let level = level.unwrap_or(3);
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    return Err(Error::InvalidArgument(format!(
                        "zstd level {level} out of range {}-{}",
                        range.start(),
                        range.end()
                    )));
                }
                let mut enc = zstd::stream::write::Encoder::new(sink, level)
                    .map_err(|e| Error::io("starting zstd encoder", e))?;
                enc.multithread(workers.max(1)).map_err(|e| Error::io("starting zstd workers", e))?;
                Encoder::Zstd(enc)
            }
            Compression::None => {
                if let Some(level) = level {
                    return Err(Error::InvalidArgument(format!(
                        "compression level {level} given for an uncompressed layer"
                    )));
                }
                Encoder::Plain(sink)
            }
            Compression::Gzip => unreachable!("gzip is compressed by pgzip"),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.write_all(buf),
            Encoder::Plain(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_frames_do_not_depend_on_worker_count() {
        // Large enough for zstd to cut several jobs.
        let data: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 27) as u8 ^ (i / 4096) as u8).collect();
        let frame = |workers| {
            let mut e = Encoder::new(Compression::Zstd, Vec::new(), None, workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let one = frame(1);
        assert_eq!(one, frame(2));
        assert_eq!(one, frame(4));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn detection_and_names() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        assert!("lz4".parse::<Compression>().is_err());
        assert!(gzip_level(Some(10)).is_err() && gzip_level(None).unwrap() == 6);
    }
}
