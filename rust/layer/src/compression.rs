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

/// A compressing writer; `finish` writes the trailer and returns the sink.
pub enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    /// `level`: gzip 0-9 (default 6, Go's DefaultCompression), zstd 1-22 (default 3).
    pub fn new(kind: Compression, sink: W, level: Option<i32>) -> Result<Self> {
        Ok(match kind {
            Compression::Gzip => {
                let level = level.unwrap_or(6);
                if !(0..=9).contains(&level) {
                    return Err(Error::InvalidArgument(format!(
                        "gzip level {level} out of range 0-9"
                    )));
                }
                // The gzip header carries no name and mtime 0: same bytes on every run.
                let enc = flate2::GzBuilder::new()
                    .operating_system(255)
                    .write(sink, flate2::Compression::new(level as u32));
                Encoder::Gzip(enc)
            }
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
                let enc = zstd::stream::write::Encoder::new(sink, level)
                    .map_err(|e| Error::io("starting zstd encoder", e))?;
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
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
            Encoder::Plain(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}
