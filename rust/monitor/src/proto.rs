//! The control protocol on `<bundle>/monitor.sock` (unix, SOCK_STREAM).
//!
//! Every message, both ways, is a frame: one kind byte, a big-endian u32 payload
//! length, the payload. Requests (client -> monitor):
//!
//! | kind | payload | answer |
//! |------|---------|--------|
//! | `S` state | - | `O` + state JSON |
//! | `G` start | - | `O` `{"pid"}` or `E` `{"message","exitCode"}` |
//! | `K` kill | `{"signal": n}` | `O` or `E` |
//! | `R` resize | `{"height": h, "width": w}` | `O` or `E` (no tty) |
//! | `W` wait | - | `X` + exit JSON once the process has exited |
//! | `A` attach | `{"stdin","stdout","stderr"}` (bools) | `O`, then `1`/`2` output frames (Docker's stream numbers: stdout, stderr; a tty is all `1`), then `X` + exit JSON and the monitor closes |
//! | `i` stdin | bytes | none (needs an attach with stdin) |
//! | `c` stdin ended | - | none; closes the process's stdin when the spec says `stdinOnce` (Docker's rule) |
//!
//! An attach sees output from the moment it is accepted; what came before is in
//! the log only. Several clients may attach at once.

pub const HEADER: usize = 5;
/// Frames above this are a protocol error (stdin chunks are far smaller).
pub const MAX_PAYLOAD: usize = 1 << 20;

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    push_frame(&mut f, kind, payload);
    f
}

pub fn push_frame(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// Take one complete frame off the front of `buf`; Err on an oversized frame.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(format!("frame of {len} bytes is over the {MAX_PAYLOAD}-byte limit"));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[HEADER..HEADER + len].to_vec();
    buf.drain(..HEADER + len);
    Ok(Some((kind, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_more_bytes() {
        let mut buf = frame(b'i', b"hello");
        buf.extend(frame(b'c', b""));
        let mut partial = buf[..7].to_vec();
        assert_eq!(take_frame(&mut partial).unwrap(), None);
        assert_eq!(take_frame(&mut buf).unwrap(), Some((b'i', b"hello".to_vec())));
        assert_eq!(take_frame(&mut buf).unwrap(), Some((b'c', vec![])));
        assert!(buf.is_empty());
        let mut huge = vec![b'i', 0xff, 0xff, 0xff, 0xff];
        assert!(take_frame(&mut huge).is_err());
    }
}
