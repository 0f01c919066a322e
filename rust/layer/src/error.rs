//! The one error type of berth-layer. Every message names the layer entry or the
//! stream at fault, because the daemon passes it to the user unchanged.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed something unusable (bad digest syntax, unknown compression...).
    #[error("{0}")]
    InvalidArgument(String),

    /// I/O on the layer source, the output file or the target root itself.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The compressed or tar stream is corrupt or truncated.
    #[error("corrupt {format} stream: {reason}")]
    Stream { format: &'static str, reason: String },

    /// One tar entry could not be applied (hostile, malformed or failing on disk).
    #[error("tar entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },

    /// A file of the source tree could not be packed.
    #[error("{path:?}: {reason}")]
    Pack { path: String, reason: String },

    /// The content does not hash to what the caller expected.
    #[error("{what} mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: &'static str, expected: String, actual: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn entry(entry: &[u8], reason: impl Into<String>) -> Self {
        Error::Entry { entry: String::from_utf8_lossy(entry).into_owned(), reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
