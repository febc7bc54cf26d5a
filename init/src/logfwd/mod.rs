//! Log forwarding: every `keel:` line, kernel message and service output line goes to the collectors the config
//! names (`[[log.forward]]`), as RFC 5424 syslog over TCP or TLS, or as JSON lines over TCP.
//!
//! The logger and the service readers hand lines over with [`offer`], which never blocks: a bounded channel
//! (`try_send`; a full channel drops the line and counts it). One task fans lines out to each collector's own
//! bounded queue ([`dest`]); the [`controller`] starts and stops collectors as the config changes.

pub mod controller;
mod dest;
pub mod format;
mod kmsg;

pub use controller::LogFwdStatus;
use format::{Record, DAEMON};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Lines in flight between the loggers and the fan-out task.
const INTAKE_LINES: usize = 4096;

static INTAKE: OnceLock<mpsc::Sender<Record>> = OnceLock::new();
static INTAKE_RX: Mutex<Option<mpsc::Receiver<Record>>> = Mutex::new(None);
/// Lines lost because the fan-out task was behind (the channel was full).
pub static INTAKE_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Opens the intake; called once, first thing in the boot, so the collectors get the boot's lines too (the
/// fan-out keeps the recent ones for a collector configured later).
pub fn install() {
    let (tx, rx) = mpsc::channel(INTAKE_LINES);
    if INTAKE.set(tx).is_ok() {
        *INTAKE_RX.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
    }
}

/// Starts reading the kernel log (once /dev is mounted).
pub fn start_kernel_reader() {
    if INTAKE.get().is_some() {
        kmsg::start();
    }
}

/// The intake's receiving end, once (the fan-out task takes it).
fn take_intake() -> Option<mpsc::Receiver<Record>> {
    INTAKE_RX.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Hands a line to the forwarder without ever waiting.
pub fn offer(r: Record) {
    if let Some(tx) = INTAKE.get() {
        if tx.try_send(r).is_err() {
            INTAKE_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A `keel:` line of PID 1.
pub fn keel_line(level: log::Level, text: &str) {
    if INTAKE.get().is_none() {
        return;
    }
    offer(Record {
        at: SystemTime::now(),
        app: "keel".into(),
        facility: DAEMON,
        severity: format::severity(level),
        stream: None,
        text: text.to_string(),
    });
}

/// A line a service printed.
pub fn service_line(name: &Arc<str>, stream: crate::logging_ring::Stream, level: log::Level, text: &str) {
    if INTAKE.get().is_none() {
        return;
    }
    offer(Record {
        at: SystemTime::now(),
        app: name.clone(),
        facility: DAEMON,
        severity: format::severity(level),
        stream: Some(stream.as_str()),
        text: text.to_string(),
    });
}
