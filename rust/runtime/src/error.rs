//! The runtime's error type. `Exec` carries Docker's exit code for a command that
//! cannot be run (127 not found, 126 cannot be invoked); every other variant is an
//! engine error (125 at the CLI).

use std::io;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `context` says what berth was doing.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("invalid spec: {0}")]
    Spec(String),
    /// The command itself cannot be executed; the message is Docker's wording.
    #[error("{message}")]
    Exec { message: String, code: i32 },
    #[error("{0}")]
    Setup(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// The exit code `docker run` shows for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { code, .. } => *code,
            _ => 125,
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `.ctx("mount /proc")` on an io::Result.
pub trait Context<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T>;
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::io(context, e))
    }
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
