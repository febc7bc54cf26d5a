//! Kernel messages from /dev/kmsg, read on a thread of their own (a read blocks until the kernel logs). PID 1's
//! own `keel:` lines are in /dev/kmsg too (the logger writes them there) but are forwarded from the logger
//! itself: they are skipped here by their facility (a line written to /dev/kmsg by user space gets LOG_USER
//! unless it names another) and by their `keel: ` prefix, so nothing is sent twice.

use super::format::{Record, KERN};
use std::io::Read;
use std::time::{Duration, SystemTime};

/// One /dev/kmsg record: `PRI,SEQ,USEC,FLAGS;TEXT` then continuation lines (` KEY=VALUE`) that are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgLine {
    pub facility: u8,
    pub severity: u8,
    /// Microseconds since boot (CLOCK_MONOTONIC).
    pub usec: u64,
    pub text: String,
}

/// Parses one record as read(2) returns it from /dev/kmsg; `None` for anything not shaped like one.
pub fn parse(record: &[u8]) -> Option<KmsgLine> {
    let record = String::from_utf8_lossy(record);
    let (header, rest) = record.split_once(';')?;
    let mut fields = header.split(',');
    let pri: u32 = fields.next()?.parse().ok()?;
    let _seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    let text = rest.split('\n').next().unwrap_or("").to_string();
    Some(KmsgLine { facility: u8::try_from(pri >> 3).ok()?, severity: (pri & 7) as u8, usec, text })
}

/// A kernel line to forward, or `None` for a line user space wrote (PID 1's own, forwarded by the logger).
pub fn to_record(line: KmsgLine, now: SystemTime, uptime: Duration) -> Option<Record> {
    if line.facility != KERN || line.text.starts_with("keel: ") {
        return None;
    }
    let age = uptime.saturating_sub(Duration::from_micros(line.usec));
    Some(Record {
        at: now.checked_sub(age).unwrap_or(now),
        app: "kernel".into(),
        facility: KERN,
        severity: line.severity,
        stream: None,
        text: line.text,
    })
}

/// Starts the reader thread: every kernel line from the start of the kernel's buffer on goes to the intake.
pub fn start() {
    let spawned = std::thread::Builder::new().name("kmsg".into()).spawn(|| {
        let mut file = match std::fs::File::open("/dev/kmsg") {
            Ok(f) => f,
            Err(e) => return log::warn!("logfwd.kmsg_unavailable error={}", crate::logging::q(&e.to_string())),
        };
        // One read returns one record; records are at most 8 KiB (PRINTK_MESSAGE_MAX).
        let mut buf = vec![0u8; 8192];
        let mut failures = 0u32;
        loop {
            match file.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_secs(1)),
                Ok(n) => {
                    failures = 0;
                    let line = parse(&buf[..n]);
                    if let Some(r) = line.and_then(|l| to_record(l, SystemTime::now(), crate::clock::uptime())) {
                        super::offer(r);
                    }
                }
                // EPIPE: records were overwritten before we read them; the next read goes on from the oldest kept.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        log::warn!("logfwd.kmsg_read_failed error={}", crate::logging::q(&e.to_string()));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("logfwd.kmsg_thread_failed error={}", crate::logging::q(&e.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_drops_continuation_lines() {
        let l = parse(b"4,1234,5678901,-;virtio_net virtio0 eth0: link up\n SUBSYSTEM=net\n DEVICE=n2\n").unwrap();
        assert_eq!(
            l,
            KmsgLine { facility: 0, severity: 4, usec: 5_678_901, text: "virtio_net virtio0 eth0: link up".into() }
        );
        let user = parse(b"14,9,10,-;keel: ready uptime_ms=1").unwrap();
        assert_eq!((user.facility, user.severity), (1, 6));
        for bad in [&b""[..], b"no semicolon", b"x,1,2,-;t", b"6,1;t"] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn skips_what_pid1_wrote_and_dates_kernel_lines_by_their_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let up = Duration::from_secs(10);
        let mine = KmsgLine { facility: 1, severity: 6, usec: 1, text: "keel: boot.start".into() };
        assert_eq!(to_record(mine, now, up), None);
        let forged = KmsgLine { facility: 0, severity: 6, usec: 1, text: "keel: x".into() };
        assert_eq!(to_record(forged, now, up), None);
        let k = KmsgLine { facility: 0, severity: 3, usec: 4_000_000, text: "EXT4-fs error".into() };
        let r = to_record(k, now, up).unwrap();
        assert_eq!(r.at, SystemTime::UNIX_EPOCH + Duration::from_secs(994));
        assert_eq!((&*r.app, r.facility, r.severity), ("kernel", 0, 3));
    }
}
