//! Parallel gzip compression, pigz-style: the input is cut into fixed 1 MiB
//! blocks, each deflated on its own thread with the previous block's last
//! 32 KiB as its dictionary and ended by a sync flush (so it stops on a byte
//! boundary); the pieces are joined in order and closed with an empty final
//! block and the gzip trailer.
//!
//! The bytes depend only on the input and the level, never on the number of
//! threads, so a layer packs to the same digest on every machine. Any gzip
//! reader (one member, one deflate stream) decodes it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use flate2::{Compress, FlushCompress};

const WINDOW: usize = 32 << 10;

/// An empty deflate block with BFINAL set (fixed Huffman, just end-of-block).
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

pub fn gzip_header(level: u32) -> [u8; 10] {
    // XFL says how hard we tried, as gzip(1) and flate2 do; OS 255 = unknown,
    // and mtime 0: nothing about the packing machine or time leaks in.
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

fn deflate_block(level: u32, dict: &[u8], block: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(block.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(block.len() / 4 + 4096);
        }
        let consumed = c.total_in() as usize;
        c.compress_vec(&block[consumed..], &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
        // zlib's rule: a flush is complete once deflate leaves output space unused.
        if c.total_in() as usize == block.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// Compress the blocks `next_block` yields into `sink` with `workers` threads;
/// returns the sink.
pub fn compress<W: Write + Send>(
    mut next_block: impl FnMut() -> Option<Vec<u8>>,
    mut sink: W,
    level: u32,
    workers: usize,
) -> io::Result<W> {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<(u64, Vec<u8>, Vec<u8>)>(workers * 2);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = sync_channel::<(u64, io::Result<Vec<u8>>)>(workers * 2);

    let mut crc = 0u32;
    let mut total = 0u64;
    let written = std::thread::scope(|s| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || loop {
                let job = job_rx.lock().unwrap().recv();
                let Ok((i, dict, block)) = job else { break };
                if done_tx.send((i, deflate_block(level, &dict, &block))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let writer = s.spawn(move || write_in_order(done_rx, sink, level));

        let mut dict = Vec::new();
        let mut i = 0u64;
        while let Some(block) = next_block() {
            if block.is_empty() {
                continue;
            }
            crc = zlib_rs::crc32::crc32(crc, &block);
            total += block.len() as u64;
            let next_dict = block[block.len().saturating_sub(WINDOW)..].to_vec();
            // A worker or the writer failed: stop feeding, the writer reports why.
            if job_tx.send((i, std::mem::replace(&mut dict, next_dict), block)).is_err() {
                break;
            }
            i += 1;
        }
        drop(job_tx);
        writer.join().expect("gzip writer thread panicked")
    });
    sink = written?;
    sink.write_all(&FINAL_EMPTY_BLOCK)?;
    sink.write_all(&crc.to_le_bytes())?;
    sink.write_all(&(total as u32).to_le_bytes())?; // ISIZE is the size mod 2^32
    Ok(sink)
}

fn write_in_order<W: Write>(done: Receiver<(u64, io::Result<Vec<u8>>)>, mut sink: W, level: u32) -> io::Result<W> {
    sink.write_all(&gzip_header(level))?;
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for (i, piece) in done {
        pending.insert(i, piece?);
        while let Some(piece) = pending.remove(&next) {
            sink.write_all(&piece)?;
            next += 1;
        }
    }
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a drifting pattern.
        (0..n).map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44] ^ ((i / 7919) as u8 & 3)).collect()
    }

    fn pgzip(data: &[u8], level: u32, workers: usize) -> Vec<u8> {
        let mut blocks = data.chunks(1 << 20).map(|c| c.to_vec());
        compress(|| blocks.next(), Vec::new(), level, workers).unwrap()
    }

    #[test]
    fn any_gzip_reader_decodes_it() {
        for n in [0, 1, 100, (1 << 20) - 1, 1 << 20, (3 << 20) + 12345] {
            let data = sample(n);
            let gz = pgzip(&data, 6, 3);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "size {n}");
        }
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let data = sample(5 << 20);
        let one = pgzip(&data, 6, 1);
        assert_eq!(one, pgzip(&data, 6, 2));
        assert_eq!(one, pgzip(&data, 6, 5));
        assert!(one.len() < data.len() / 4);
        assert_ne!(one, pgzip(&data, 1, 2));
    }
}
