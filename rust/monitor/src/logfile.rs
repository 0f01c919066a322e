//! Docker's json-file log format: one `{"log":"...","stream":"stdout","time":"..."}`
//! object per line of output, `time` in RFC 3339 with nanoseconds (UTC, trailing
//! zeros trimmed, as Go prints it). A line longer than 16 KiB is split into partial
//! records without the trailing newline, like Docker's.

use std::fs::File;
use std::io::Write;

use serde::Serialize;

const MAX_LINE: usize = 16 * 1024;

pub fn now() -> (i64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// RFC 3339 with nanoseconds, like Go's time.RFC3339Nano in UTC.
pub fn rfc3339_nano(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

pub fn timestamp() -> String {
    let (s, n) = now();
    rfc3339_nano(s, n)
}

#[derive(Serialize)]
struct Record<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

pub struct JsonLog {
    file: File,
    pending: [Vec<u8>; 2],
}

pub const STREAMS: [&str; 2] = ["stdout", "stderr"];

impl JsonLog {
    pub fn open(path: &str) -> std::io::Result<JsonLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(libc::O_CLOEXEC).open(path)?;
        Ok(JsonLog { file, pending: [Vec::new(), Vec::new()] })
    }

    /// Add output of `stream` (0 stdout, 1 stderr); complete lines are written.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        self.pending[stream].extend_from_slice(data);
        let time = timestamp();
        let mut out = Vec::new();
        let buf = std::mem::take(&mut self.pending[stream]);
        let mut rest: &[u8] = &buf;
        loop {
            let cut = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i < MAX_LINE => i + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            encode(&mut out, &rest[..cut], STREAMS[stream], &time);
            rest = &rest[cut..];
        }
        self.pending[stream] = rest.to_vec();
        self.emit(&out);
    }

    /// Write what is left of unterminated lines (at exit).
    pub fn flush(&mut self) {
        let time = timestamp();
        let mut out = Vec::new();
        for (pending, name) in self.pending.iter_mut().zip(STREAMS) {
            let buf = std::mem::take(pending);
            if !buf.is_empty() {
                encode(&mut out, &buf, name, &time);
            }
        }
        self.emit(&out);
    }

    fn emit(&mut self, out: &[u8]) {
        if !out.is_empty() {
            if let Err(e) = self.file.write_all(out) {
                eprintln!("berth-monitor: writing the container log: {e}");
            }
        }
    }
}

fn encode(out: &mut Vec<u8>, line: &[u8], stream: &str, time: &str) {
    let text = String::from_utf8_lossy(line);
    let rec = Record { log: &text, stream, time };
    serde_json::to_writer(&mut *out, &rec).expect("serialize log record");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_go_rfc3339nano() {
        assert_eq!(rfc3339_nano(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_700_000_000, 123_456_000), "2023-11-14T22:13:20.123456Z");
        assert_eq!(rfc3339_nano(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
    }

    #[test]
    fn lines_are_split_and_partials_kept() {
        let dir = std::env::temp_dir().join(format!("berth-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.log");
        let mut log = JsonLog::open(path.to_str().unwrap()).unwrap();
        log.write(0, b"a\nb");
        log.write(1, b"err\n");
        log.write(0, b"c\n");
        log.write(0, b"tail");
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let got: Vec<(&str, &str)> = recs.iter().map(|r| (r["log"].as_str().unwrap(), r["stream"].as_str().unwrap())).collect();
        assert_eq!(got, vec![("a\n", "stdout"), ("err\n", "stderr"), ("bc\n", "stdout"), ("tail", "stdout")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
