//! When to poll next: the poll interval while synced, backoff with jitter while not, kiss-o'-death hold-offs and
//! the RTC write interval. Pure: the sync task feeds it outcomes and sleeps for what it returns.

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
    pub first_backoff: Duration,
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
            first_backoff: Duration::from_secs(20),
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
    failures: u32,
    rng: u64,
}

impl Schedule {
    pub fn new(tuning: &Tuning, seed: u64) -> Schedule {
        Schedule { tuning: tuning.clone(), poll: tuning.min_poll, failures: 0, rng: seed }
    }

    /// Back to the start: shortest poll, no failures.
    pub fn reset(&mut self) {
        self.poll = self.tuning.min_poll;
        self.failures = 0;
    }

    pub fn after_sync(&mut self, offset_ns: i64, stepped: bool) -> Duration {
        self.failures = 0;
        self.poll = if stepped || offset_ns.unsigned_abs() > STABLE_NS.unsigned_abs() {
            self.tuning.min_poll
        } else {
            (self.poll * 2).min(self.tuning.max_poll)
        };
        self.poll
    }

    /// Exponential backoff, up to a quarter shorter at random so nodes that failed together retry apart.
    pub fn after_failure(&mut self) -> Duration {
        self.poll = self.tuning.min_poll;
        let doublings = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let base = self.tuning.first_backoff.saturating_mul(1u32 << doublings).min(self.tuning.max_backoff);
        let jitter = base.mul_f64((self.next_random() % 1024) as f64 / 4096.0);
        base - jitter
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
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
        let mut s = Schedule::new(&Tuning::default(), 1);
        let secs = |d: Duration| d.as_secs();
        let grown: Vec<u64> = (0..6).map(|_| secs(s.after_sync(1_000_000, false))).collect();
        assert_eq!(grown, [128, 256, 512, 1024, 1024, 1024]);
        assert_eq!(secs(s.after_sync(-60_000_000, false)), 64, "a large offset brings polling back to 64 s");
        assert_eq!(secs(s.after_sync(0, false)), 128);
        assert_eq!(secs(s.after_sync(0, true)), 64, "so does a step");
        s.after_sync(0, false);
        s.after_failure();
        assert_eq!(secs(s.after_sync(0, false)), 128, "after a failure polling starts over");
    }

    #[test]
    fn backoff_is_exponential_jittered_and_capped() {
        for seed in 0..50 {
            let mut s = Schedule::new(&Tuning::default(), seed);
            let waits: Vec<Duration> = (0..10).map(|_| s.after_failure()).collect();
            for (i, wait) in waits.iter().enumerate() {
                let base = Duration::from_secs((20u64 << i).min(300));
                assert!(*wait <= base && *wait >= base.mul_f64(0.75), "seed {seed} try {i}: {wait:?}");
            }
            assert!(waits.iter().all(|w| *w <= Duration::from_secs(300) && *w >= Duration::from_secs(15)));
            s.reset();
            assert!(s.after_failure() <= Duration::from_secs(20));
        }
        let mut a = Schedule::new(&Tuning::default(), 1);
        let mut b = Schedule::new(&Tuning::default(), 2);
        assert_ne!(a.after_failure(), b.after_failure(), "different nodes retry at different times");
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
