//! What the time sync task needs of a clock ([`Clock`]) and how a clock fails ([`ClockError`]): the real clock
//! (`system.rs`) implements it, the sync task (`sync.rs`) drives it, and neither imports the other.

use super::rtc::RtcError;
use nix::errno::Errno;
use std::time::SystemTime;

/// The clock the task disciplines. The real one is [`super::SystemClock`]; tests use a fake, so they never touch the
/// host's clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    /// Jump by `offset_ns` (positive: forward).
    fn step(&self, offset_ns: i64) -> Result<(), ClockError>;
    /// Correct by `offset_ns` gradually.
    fn slew(&self, offset_ns: i64) -> Result<(), ClockError>;
    /// Copy the current time to the hardware clock.
    fn write_rtc(&self) -> Result<(), ClockError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("clock_gettime(CLOCK_REALTIME): {0}")]
    Read(Errno),
    #[error("clock_settime(CLOCK_REALTIME): {0}")]
    Step(Errno),
    #[error("adjtimex(ADJ_OFFSET_SINGLESHOT): {0}")]
    Slew(Errno),
    #[error("offset {0} ns is out of range")]
    Range(i64),
    #[error(transparent)]
    Rtc(#[from] RtcError),
}
