//! The real [`Clock`]: the kernel's `CLOCK_REALTIME` and the RTC. Only PID 1 on a node uses it; tests use fakes.

use super::clock::Clock;
pub use super::clock::ClockError;
use super::rtc;
use nix::errno::Errno;
use nix::libc;
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_settime, ClockId};
use std::path::PathBuf;
use std::time::SystemTime;

const NANOS: i128 = 1_000_000_000;

/// The system clock, with the RTC at `rtc` (normally [`rtc::DEVICE`]).
#[derive(Debug, Clone)]
pub struct SystemClock {
    rtc: PathBuf,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock { rtc: PathBuf::from(rtc::DEVICE) }
    }
}

impl SystemClock {}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Jumps `CLOCK_REALTIME` by `offset_ns` (either way).
    fn step(&self, offset_ns: i64) -> Result<(), ClockError> {
        let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(ClockError::Read)?;
        let target = i128::from(now.tv_sec()) * NANOS + i128::from(now.tv_nsec()) + i128::from(offset_ns);
        let secs = i64::try_from(target.div_euclid(NANOS)).map_err(|_| ClockError::Range(offset_ns))?;
        let nanos = target.rem_euclid(NANOS) as libc::c_long;
        clock_settime(ClockId::CLOCK_REALTIME, TimeSpec::new(secs, nanos)).map_err(ClockError::Step)
    }

    /// Hands the kernel `offset_ns` to slew in gradually (at 500 µs per second, adjtime-style); a new slew replaces
    /// whatever is left of the previous one, so each measurement corrects the last.
    fn slew(&self, offset_ns: i64) -> Result<(), ClockError> {
        let micros = libc::c_long::try_from(offset_ns / 1000).map_err(|_| ClockError::Range(offset_ns))?;
        // SAFETY: `timex` is plain integers, for which all zeros is a valid value.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = libc::ADJ_OFFSET_SINGLESHOT;
        tx.offset = micros;
        // SAFETY: `tx` is a valid, exclusively borrowed `struct timex` for the whole call.
        let rc = unsafe { libc::adjtimex(&mut tx) };
        Errno::result(rc).map(drop).map_err(ClockError::Slew)
    }

    fn write_rtc(&self) -> Result<(), ClockError> {
        Ok(rtc::write_rtc(&self.rtc, SystemTime::now())?)
    }
}
