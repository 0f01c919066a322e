//! A one-way pipe of large byte chunks between two threads, so that
//! decompressing+hashing and parsing+writing (or tar building and compressing)
//! overlap. Buffers travel back to the producer to be reused.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};

use berth_digest::Sha256;

pub const CHUNK: usize = 1 << 20;
const DEPTH: usize = 16;

/// The producer's end: fill chunks and `send` them.
pub struct ChunkSender {
    tx: SyncSender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
}

/// The consumer's end, readable as a byte stream; EOF once the sender is dropped.
pub struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    give_back: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// Hashes every chunk as it arrives, on the consumer's thread.
    hasher: Option<Sha256>,
}

pub fn chunk_pipe() -> (ChunkSender, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let (give_back, spare) = sync_channel(DEPTH + 2);
    (ChunkSender { tx, spare }, ChunkReader { rx, give_back, current: Vec::new(), pos: 0, hasher: None })
}

/// The consumer hung up (it failed and stopped reading).
#[derive(Debug)]
pub struct Disconnected;

impl ChunkSender {
    /// A buffer with CHUNK capacity, reused when one came back. Its length
    /// and content are whatever they were (so refilling needs no memset).
    pub fn buffer(&self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        }
    }

    pub fn send(&self, chunk: Vec<u8>) -> Result<(), Disconnected> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(chunk).map_err(|_| Disconnected)
    }
}

impl ChunkReader {
    /// Hash every byte that arrives (whether or not it is read).
    pub fn hash_chunks(&mut self) {
        self.hasher = Some(Sha256::new());
    }

    /// The hash of all chunks received so far.
    pub fn hasher(&self) -> Option<&Sha256> {
        self.hasher.as_ref()
    }

    fn refill(&mut self) -> bool {
        let used = std::mem::take(&mut self.current);
        if used.capacity() >= CHUNK {
            let _ = self.give_back.try_send(used);
        }
        match self.rx.recv() {
            Ok(chunk) => {
                if let Some(h) = &mut self.hasher {
                    h.update(&chunk);
                }
                self.current = chunk;
                self.pos = 0;
                true
            }
            Err(_) => false,
        }
    }

    /// The unread rest of the current chunk, refilling when it is empty; empty at EOF.
    pub fn peek(&mut self) -> &[u8] {
        while self.pos >= self.current.len() {
            if !self.refill() {
                return &[];
            }
        }
        &self.current[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// The rest of the current chunk, or the next one, as an owned buffer; None at EOF.
    pub fn take_chunk(&mut self) -> Option<Vec<u8>> {
        if self.peek().is_empty() {
            return None;
        }
        let mut chunk = std::mem::take(&mut self.current);
        if self.pos > 0 {
            chunk.drain(..self.pos);
        }
        self.pos = 0;
        Some(chunk)
    }
}

impl io::BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(self.peek())
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.peek();
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A writer that batches bytes into chunks for a ChunkSender.
pub struct ChunkWriter {
    sender: ChunkSender,
    buf: Vec<u8>,
}

impl ChunkWriter {
    pub fn new(sender: ChunkSender) -> Self {
        let mut buf = sender.buffer();
        buf.clear();
        Self { sender, buf }
    }

    fn ship(&mut self) -> io::Result<()> {
        let mut next = self.sender.buffer();
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.sender
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "compressor thread stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.ship()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_eof_follows_drop() {
        let (tx, mut rx) = chunk_pipe();
        let producer = std::thread::spawn(move || {
            let mut w = ChunkWriter::new(tx);
            for i in 0..3 * CHUNK / 1000 {
                w.write_all(&[(i % 256) as u8; 1000]).unwrap();
            }
            w.flush().unwrap();
        });
        let mut all = Vec::new();
        rx.read_to_end(&mut all).unwrap();
        producer.join().unwrap();
        assert_eq!(all.len(), 3 * CHUNK / 1000 * 1000);
        assert!(all.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|&b| b == (i % 256) as u8)));
    }

    #[test]
    fn sender_sees_a_dropped_reader() {
        let (tx, rx) = chunk_pipe();
        drop(rx);
        assert!(tx.send(vec![1]).is_err());
    }
}
