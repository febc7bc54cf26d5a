//! When to poll next: the poll interval while synced, kiss-o'-death hold-offs and the RTC write interval. Pure:
//! the time controller feeds it outcomes and the runner sleeps for what it returns. Failures are retried with the
//! runner's backoff (`retry::Backoff`, from `first_backoff` up to `max_backoff`, with jitter).

use super::rtc;
use std::time::Duration;
use tokio::time::Instant;

/// While offsets stay within this, the poll interval grows.
pub const STABLE_NS: i64 = 50_000_000;

/// Intervals and limits; [`Tuning::default`] is what the node runs with.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub query_timeout: Duration,
    pub min_poll: Duration,
    pub max_poll: Duration,
    pub max_backoff: Duration,
    pub rtc_interval: Duration,
    /// Without a good answer for this long, the status stops saying synced.
    pub stale_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            query_timeout: Duration::from_secs(2),
            min_poll: Duration::from_secs(64),
            max_poll: Duration::from_secs(1024),
            max_backoff: Duration::from_secs(300),
            rtc_interval: rtc::WRITE_INTERVAL,
            stale_after: Duration::from_secs(2 * 1024 + 300),
        }
    }
}

/// When to poll next.
#[derive(Debug, Clone)]
pub struct Schedule {
    tuning: Tuning,
    poll: Duration,
}

impl Schedule {
    pub fn new(tuning: &Tuning) -> Schedule {
        Schedule { tuning: tuning.clone(), poll: tuning.min_poll }
    }

    /// Back to the start (a new server list, or a failed round): the shortest poll.
    pub fn reset(&mut self) {
        self.poll = self.tuning.min_poll;
    }

    pub fn after_sync(&mut self, offset_ns: i64, stepped: bool) -> Duration {
        self.poll = if stepped || offset_ns.unsigned_abs() > STABLE_NS.unsigned_abs() {
            self.tuning.min_poll
        } else {
            (self.poll * 2).min(self.tuning.max_poll)
        };
        self.poll
    }
}

/// How long a kiss-o'-death silences a server.
pub fn kiss_holdoff(code: &str, tuning: &Tuning) -> Duration {
    match code {
        "DENY" | "RSTR" => Duration::from_secs(3600),
        "RATE" => tuning.max_poll,
        _ => tuning.max_backoff,
    }
}

/// Is an RTC write due, given the last one?
pub fn rtc_due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_grows_while_stable_and_resets_on_trouble() {
        let mut s = Schedule::new(&Tuning::default());
        let secs = |d: Duration| d.as_secs();
        let grown: Vec<u64> = (0..6).map(|_| secs(s.after_sync(1_000_000, false))).collect();
        assert_eq!(grown, [128, 256, 512, 1024, 1024, 1024]);
        assert_eq!(secs(s.after_sync(-60_000_000, false)), 64, "a large offset brings polling back to 64 s");
        assert_eq!(secs(s.after_sync(0, false)), 128);
        assert_eq!(secs(s.after_sync(0, true)), 64, "so does a step");
        s.after_sync(0, false);
        s.reset();
        assert_eq!(secs(s.after_sync(0, false)), 128, "after a failure polling starts over");
    }

    #[test]
    fn rtc_writes_at_most_every_eleven_minutes() {
        let t0 = Instant::now();
        let every = rtc::WRITE_INTERVAL;
        assert!(rtc_due(None, t0, every));
        assert!(!rtc_due(Some(t0), t0 + Duration::from_secs(10 * 60), every));
        assert!(rtc_due(Some(t0), t0 + every, every));
    }

    #[test]
    fn kisses_hold_servers_off() {
        let t = Tuning::default();
        assert_eq!(kiss_holdoff("DENY", &t), Duration::from_secs(3600));
        assert_eq!(kiss_holdoff("RSTR", &t), Duration::from_secs(3600));
        assert_eq!(kiss_holdoff("RATE", &t), Duration::from_secs(1024));
        assert_eq!(kiss_holdoff("XYZZ", &t), Duration::from_secs(300));
    }
}
