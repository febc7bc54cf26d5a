//! Keeping the node's clock right.
//!
//! - [`rtc`]: at boot, the system clock is set from the hardware clock (forward only); after good SNTP syncs
//!   the hardware clock is written back, at most every 11 minutes.
//! - [`sntp`]: the SNTPv4 client: packets, checks, offset and delay.
//! - [`sync`]: the time controller (on the one runner) that polls the configured servers, steps or slews the
//!   clock through a [`Clock`] and publishes a [`TimeStatus`].
//!
//! Integration: call [`rtc::set_system_clock_from_rtc`] early in boot, seed the status watch with
//! [`TimeStatus::after_rtc`], then spawn [`sync::run`] with [`SystemClock`]. Sending a new server list (for example
//! once the network is up) makes the task query at once.

mod clock;
pub mod rtc;
pub mod schedule;
pub mod sntp;
pub mod sync;
pub mod system;

#[cfg(test)]
mod tests;

pub use sync::run;
pub use system::SystemClock;

use crate::logging::q;
use std::fmt;
use std::time::SystemTime;

/// Where the clock's current time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Nothing has set the clock: it counts from whatever the kernel started with.
    #[default]
    None,
    /// Set from (or confirmed by) the hardware clock at boot.
    Rtc,
    /// Disciplined by an SNTP server.
    Sntp,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::None => "none",
            Source::Rtc => "rtc",
            Source::Sntp => "sntp",
        })
    }
}

/// What the time service knows, for the API and log lines.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeStatus {
    /// A server answered recently and the clock has been brought to it.
    pub synced: bool,
    /// The server of the last sync, as configured.
    pub server: Option<String>,
    /// Our clock's offset from that server before the correction (positive: we were behind).
    pub offset_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    pub last_sync: Option<SystemTime>,
    pub source: Source,
    /// Why the last attempt failed, or why none is made.
    pub error: Option<String>,
}

impl TimeStatus {
    /// The status after the boot-time RTC read.
    pub fn after_rtc(result: &Result<rtc::Boot, rtc::RtcError>) -> TimeStatus {
        match result {
            Ok(_) => TimeStatus { source: Source::Rtc, ..TimeStatus::default() },
            Err(e) => TimeStatus { error: Some(e.to_string()), ..TimeStatus::default() },
        }
    }
}

impl fmt::Display for TimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "synced={} source={}", self.synced, self.source)?;
        if let Some(server) = &self.server {
            write!(f, " server={}", q(server))?;
        }
        if let Some(offset) = self.offset_ms {
            write!(f, " offset_ms={offset:.3}")?;
        }
        if let Some(delay) = self.delay_ms {
            write!(f, " delay_ms={delay:.3}")?;
        }
        if let Some(at) = self.last_sync {
            write!(f, " last_sync={}", rtc::format_utc(rtc::unix_secs(at)))?;
        }
        if let Some(error) = &self.error {
            write!(f, " error={}", q(error))?;
        }
        Ok(())
    }
}
