//! Structured log lines (`keel: <event> key=value …`) to the console and to the kernel log.
//!
//! Each line goes to `/dev/kmsg` with its syslog priority. The kernel echoes kmsg lines whose level is below the
//! console log level to the console itself; for those we do not write the console too, so nothing prints twice.
//! Lines the kernel would not echo (e.g. info lines under `quiet`) are written to the console directly. Before
//! `/dev/kmsg` exists (devtmpfs not mounted yet) lines go to the console only. Every line also goes into the
//! in-memory ring ([`crate::logging_ring`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

struct Sinks {
    console: Option<File>,
    kmsg: Option<File>,
    /// The kernel prints kmsg lines whose priority is numerically below this on the console.
    console_loglevel: u8,
}

pub struct Logger {
    sinks: Mutex<Sinks>,
}

static LOGGER: Logger = Logger { sinks: Mutex::new(Sinks { console: None, kmsg: None, console_loglevel: 0 }) };

/// Installs the logger. Safe to call once; later calls only change the level.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// (Re)opens the console and kmsg sinks; called once devtmpfs and procfs are mounted.
pub fn open_sinks() {
    let console = OpenOptions::new().write(true).open("/dev/console").ok();
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    let console_loglevel = std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    if let Ok(mut sinks) = LOGGER.sinks.lock() {
        if console.is_some() {
            sinks.console = console;
        }
        sinks.kmsg = kmsg;
        sinks.console_loglevel = console_loglevel;
    }
}

/// syslog priority of a log level.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl Sinks {
    fn write_line(&mut self, prio: u8, line: &str) {
        let mut echoed_by_kernel = false;
        if let Some(kmsg) = self.kmsg.as_mut() {
            // One write(2) per record: that is how /dev/kmsg delimits them.
            let record = format!("<{prio}>keel: {line}\n");
            if kmsg.write_all(record.as_bytes()).is_ok() {
                echoed_by_kernel = prio < self.console_loglevel;
            }
        }
        if !echoed_by_kernel {
            let text = format!("keel: {line}\n");
            match self.console.as_mut() {
                Some(console) => {
                    let _ = console.write_all(text.as_bytes());
                }
                None => {
                    let _ = std::io::stderr().write_all(text.as_bytes());
                }
            }
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = record.args().to_string();
        crate::logging_ring::record(record.level(), crate::logging_ring::Source::Init, &line);
        crate::logfwd::keel_line(record.level(), &line);
        // A poisoned lock only means another thread panicked mid-write; the sinks are still usable.
        let mut sinks = match self.sinks.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sinks.write_line(priority(record.level()), &line);
    }

    fn flush(&self) {}
}

/// Writes a line to the console and kmsg only (not the ring): for a service's output, which its reader has put
/// into the ring under the service's name already.
pub fn console_line(level: log::Level, line: &str) {
    if level > log::max_level() {
        return;
    }
    let mut sinks = match LOGGER.sinks.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    sinks.write_line(priority(level), line);
}

/// For the panic path: never blocks on the logger's lock (the panic may have happened while holding it).
pub fn emergency(line: &str) {
    crate::logging_ring::try_record(log::Level::Error, crate::logging_ring::Source::Init, line);
    match LOGGER.sinks.try_lock() {
        Ok(mut sinks) => sinks.write_line(priority(log::Level::Error), line),
        Err(_) => {
            let _ = std::io::stderr().write_all(format!("keel: {line}\n").as_bytes());
        }
    }
}

/// Quotes a value for a `key=value` log field when it is empty or holds spaces, quotes or `=`.
pub fn q(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(q("abc"), "abc");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("a b"), "\"a b\"");
        assert_eq!(q("say \"hi\""), "\"say \\\"hi\\\"\"");
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
    }
}
