//! Monotonic time since the kernel started: the clock every boot-phase line is stamped with.

use std::time::Duration;

/// Time since boot on `CLOCK_MONOTONIC` (what the kernel's printk timestamps also count).
pub fn uptime() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
        Err(_) => Duration::ZERO,
    }
}

/// Milliseconds with microsecond precision, for log lines (`uptime_ms=912.345`).
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}
