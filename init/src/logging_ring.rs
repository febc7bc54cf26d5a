//! The node's recent log lines in memory: the init's own lines and every line its services print, each tagged
//! with where it came from, in one bounded ring (oldest lines go first). The console and /dev/kmsg stay the
//! durable record; this is what the node API serves (`since` a sequence number, so a reader can follow it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Lines kept at most, and bytes of text kept at most (whichever bound is hit first evicts the oldest).
pub const MAX_LINES: usize = 2048;
pub const MAX_BYTES: usize = 512 * 1024;
/// Longer lines are cut here (on a character boundary).
pub const MAX_LINE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `keel: …` line of PID 1 itself.
    Init,
    Service {
        name: Arc<str>,
        stream: Stream,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Increases by one per line for the life of the boot; a gap means lines were evicted before being read.
    pub seq: u64,
    /// Milliseconds since the kernel started.
    pub uptime_ms: u64,
    pub level: log::Level,
    pub source: Source,
    pub text: String,
}

#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
    next_seq: u64,
    max_lines: usize,
    max_bytes: usize,
}

impl Ring {
    pub const fn new(max_lines: usize, max_bytes: usize) -> Ring {
        Ring { entries: VecDeque::new(), bytes: 0, next_seq: 0, max_lines, max_bytes }
    }

    /// Appends a line and returns its sequence number.
    pub fn push(&mut self, uptime_ms: u64, level: log::Level, source: Source, text: &str) -> u64 {
        let text = truncate(text, MAX_LINE.min(self.max_bytes)).to_string();
        self.bytes += text.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry { seq, uptime_ms, level, source, text });
        while self.entries.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
        seq
    }

    /// Every line kept with a sequence number of at least `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<Entry> {
        let first = self.entries.front().map_or(0, |e| e.seq);
        let skip = usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip).cloned().collect()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

static RING: Mutex<Ring> = Mutex::new(Ring::new(MAX_LINES, MAX_BYTES));

fn ring() -> std::sync::MutexGuard<'static, Ring> {
    // A poisoned lock only means a panic mid-push; the ring is still consistent enough to read and append.
    RING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a line in the node's ring.
pub fn record(level: log::Level, source: Source, text: &str) -> u64 {
    let uptime_ms = u64::try_from(crate::clock::uptime().as_millis()).unwrap_or(u64::MAX);
    ring().push(uptime_ms, level, source, text)
}

/// For the panic path: never waits for the lock.
pub fn try_record(level: log::Level, source: Source, text: &str) {
    if let Ok(mut r) = RING.try_lock() {
        let uptime_ms = u64::try_from(crate::clock::uptime().as_millis()).unwrap_or(u64::MAX);
        r.push(uptime_ms, level, source, text);
    }
}

/// The lines kept from `seq` on (the node API serves these).
pub fn since(seq: u64) -> Vec<Entry> {
    ring().since(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> Source {
        Source::Service { name: name.into(), stream: Stream::Stdout }
    }

    #[test]
    fn keeps_the_newest_lines_within_both_bounds() {
        let mut r = Ring::new(3, 1000);
        for i in 0..5 {
            r.push(i, log::Level::Info, Source::Init, &format!("line {i}"));
        }
        let kept: Vec<_> = r.since(0).into_iter().map(|e| (e.seq, e.text)).collect();
        assert_eq!(kept, [(2, "line 2".to_string()), (3, "line 3".into()), (4, "line 4".into())]);
        assert_eq!(r.next_seq, 5);
        assert_eq!(r.since(4).len(), 1);
        assert!(r.since(9).is_empty());

        let mut r = Ring::new(100, 10);
        r.push(0, log::Level::Info, svc("a"), "12345");
        r.push(0, log::Level::Info, svc("b"), "67890");
        r.push(0, log::Level::Warn, svc("c"), "xy");
        let kept: Vec<_> = r.since(0).into_iter().map(|e| e.text).collect();
        assert_eq!(kept, ["67890", "xy"]);
        assert_eq!(r.bytes, 7);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut r = Ring::new(10, 1 << 20);
        let long = "é".repeat(MAX_LINE);
        r.push(0, log::Level::Info, svc("a"), &long);
        let text = &r.since(0)[0].text;
        assert!(text.len() <= MAX_LINE && text.len() >= MAX_LINE - 1, "{}", text.len());
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn entries_name_their_source() {
        let mut r = Ring::new(10, 1000);
        r.push(7, log::Level::Error, Source::Service { name: "web".into(), stream: Stream::Stderr }, "boom");
        let e = &r.since(0)[0];
        assert_eq!((e.uptime_ms, e.level), (7, log::Level::Error));
        assert_eq!(e.source, Source::Service { name: "web".into(), stream: Stream::Stderr });
        assert_eq!(Stream::Stderr.as_str(), "stderr");
    }
}
