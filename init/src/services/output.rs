//! A service's stdout and stderr, read line by line from pipes: every line goes into the node's log ring under the
//! service's name, and to the console at the service's log level as
//! `keel: service.log name=web stream=stdout line="…"`. The console is slow (a serial line) and PID 1 writes it
//! synchronously, so a chatty service is limited there (the ring still gets every line).

use crate::logging_ring::{self, Source, Stream};
use keel_config::model::LogLevel;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Console lines per service: a burst of this many, refilled at this many per second.
const CONSOLE_BURST: f64 = 200.0;
const CONSOLE_PER_SECOND: f64 = 50.0;

/// The `log` level for a service's lines; `None` keeps them off the console.
pub fn console_level(level: LogLevel) -> Option<log::Level> {
    match level {
        LogLevel::Off => None,
        LogLevel::Error => Some(log::Level::Error),
        LogLevel::Warn => Some(log::Level::Warn),
        LogLevel::Info => Some(log::Level::Info),
        LogLevel::Debug => Some(log::Level::Debug),
        LogLevel::Trace => Some(log::Level::Trace),
    }
}

/// Splits a byte stream into lines of at most `max` bytes (a longer line is cut into pieces); a trailing `\r`
/// is dropped, and bytes that are not UTF-8 are replaced.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
    /// The last piece was cut at `max`: a newline right after it ends that line, not an empty one.
    cut: bool,
}

impl Lines {
    pub fn push(&mut self, data: &[u8], max: usize, out: &mut Vec<String>) {
        for &b in data {
            if b == b'\n' {
                if !(self.cut && self.pending.is_empty()) {
                    out.push(self.take());
                }
                self.cut = false;
            } else {
                self.pending.push(b);
                self.cut = self.pending.len() >= max;
                if self.cut {
                    out.push(self.take());
                }
            }
        }
    }

    /// What is left at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// A token bucket for console lines.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    at: Instant,
    pub suppressed: u64,
}

impl Budget {
    pub fn new(now: Instant) -> Budget {
        Budget { tokens: CONSOLE_BURST, at: now, suppressed: 0 }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * CONSOLE_PER_SECOND).min(CONSOLE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Reads one of a service's pipes to its end.
pub async fn pump(name: Arc<str>, stream: Stream, level: LogLevel, pipe: tokio::net::unix::pipe::Receiver) {
    let mut pipe = pipe;
    let console = console_level(level);
    let ring_level = console.unwrap_or(log::Level::Info);
    let mut lines = Lines::default();
    let mut budget = Budget::new(Instant::now());
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    let mut last_note = Instant::now();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            out.extend(lines.finish());
        } else {
            lines.push(&buf[..n], logging_ring::MAX_LINE, &mut out);
        }
        for line in out.drain(..) {
            logging_ring::record(ring_level, Source::Service { name: name.clone(), stream }, &line);
            crate::logfwd::service_line(&name, stream, ring_level, &line);
            if let Some(level) = console {
                if budget.allow(Instant::now()) {
                    let text = format!("service.log name={name} stream={} line={line:?}", stream.as_str());
                    crate::logging::console_line(level, &text);
                }
            }
        }
        if budget.suppressed > 0 && (n == 0 || last_note.elapsed() >= Duration::from_secs(10)) {
            log::warn!("service.log_suppressed name={name} stream={} lines={}", stream.as_str(), budget.suppressed);
            budget.suppressed = 0;
            last_note = Instant::now();
        }
        if n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_bounds_them() {
        let mut l = Lines::default();
        let mut out = Vec::new();
        l.push(b"one\ntw", 100, &mut out);
        l.push(b"o\r\nthree", 100, &mut out);
        assert_eq!(out, ["one", "two"]);
        assert_eq!(l.finish().as_deref(), Some("three"));
        assert_eq!(l.finish(), None);
        out.clear();
        l.push(b"abcdefgh\n", 3, &mut out);
        assert_eq!(out, ["abc", "def", "gh"]);
        out.clear();
        l.push(b"abcdef\n\n", 3, &mut out);
        assert_eq!(out, ["abc", "def", ""]);
        out.clear();
        l.push(b"\xff\xfeok\n", 100, &mut out);
        assert_eq!(out, ["\u{fffd}\u{fffd}ok"]);
    }

    #[test]
    fn the_console_budget_allows_a_burst_then_a_steady_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let burst = (0..1000).filter(|_| b.allow(t0)).count();
        assert_eq!(burst, CONSOLE_BURST as usize);
        assert_eq!(b.suppressed, 1000 - burst as u64);
        let later = t0 + Duration::from_secs(1);
        let refill = (0..1000).filter(|_| b.allow(later)).count();
        assert_eq!(refill, CONSOLE_PER_SECOND as usize);
    }

    #[test]
    fn levels_map_to_the_console() {
        assert_eq!(console_level(LogLevel::Off), None);
        assert_eq!(console_level(LogLevel::Warn), Some(log::Level::Warn));
        assert_eq!(console_level(LogLevel::default()), Some(log::Level::Info));
    }
}
