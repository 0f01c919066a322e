//! berth-layer: layer tar unpack and pack, with every path confined to its root.
//!
//! - [`unpack_layer`]: gzip/zstd/plain tar -> snapshot directory (OCI whiteouts
//!   stored the overlayfs way), diffID and digest checked in the same pass.
//! - [`pack_layer`]: directory or overlay upper dir -> reproducible compressed tar,
//!   diffID and digest computed in the same pass.
//! - [`unpack_layers`]: independent layers on a pool of threads.

mod compression;
mod error;
mod pack;
mod pgzip;
mod pipe;
mod root;
mod tarstream;
mod unpack;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use compression::Compression;
pub use error::{Error, Result};
pub use pack::{pack_layer, pack_to, PackOptions, PackStats};
pub use unpack::{unpack_layer, unpack_layer_path, UnpackOptions, UnpackStats};

/// Where a layer comes from.
pub enum Source {
    Path(PathBuf),
    File(File),
}

impl Source {
    /// Bytes to read, when known (a pipe says 0).
    fn size_hint(&self) -> u64 {
        match self {
            Source::File(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            Source::Path(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
    }

    fn open(self) -> Result<File> {
        match self {
            Source::File(f) => Ok(f),
            Source::Path(p) => {
                File::open(&p).map_err(|e| Error::io(format!("opening layer {}", p.display()), e))
            }
        }
    }
}

/// Unpack one layer from a path or an open file.
pub fn unpack(source: Source, target: &std::path::Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    unpack_layer(source.open()?, target, opts)
}

/// Unpack independent layers on up to `threads` threads (0: one per CPU);
/// results come back in job order.
pub fn unpack_layers(jobs: Vec<(Source, PathBuf, UnpackOptions)>, threads: usize) -> Vec<Result<UnpackStats>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .min(jobs.len().max(1));
    let n = jobs.len();
    // Largest first, so that the longest layer does not start last.
    let mut order: Vec<usize> = (0..n).collect();
    let sizes: Vec<u64> = jobs.iter().map(|(s, _, _)| s.size_hint()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let jobs: Vec<Mutex<Option<(Source, PathBuf, UnpackOptions)>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Option<Result<UnpackStats>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let i = order[k];
                let (source, target, opts) = jobs[i].lock().unwrap().take().expect("job taken twice");
                *results[i].lock().unwrap() = Some(unpack(source, &target, &opts));
            });
        }
    });
    results.into_iter().map(|r| r.into_inner().unwrap().expect("job not run")).collect()
}

#[cfg(test)]
mod tests;
