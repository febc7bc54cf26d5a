//! When to restart: the init's one retry policy (`crate::retry`: exponential, capped, ±20% jitter) over consecutive
//! short runs, reset by a stable run, plus the crash-loop threshold shown in status.

use crate::retry;
use std::time::Duration;

/// The restart schedule. The defaults are the node's; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Delay after the first short run (±20% jitter).
    pub base: Duration,
    /// The delay never grows past this (+20% jitter).
    pub cap: Duration,
    /// A run at least this long resets the schedule.
    pub stable: Duration,
    /// This many short runs in a row is a crash loop (shown in status; the delay keeps growing to the cap).
    pub crash_loop_after: u32,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable: Duration::from_secs(30),
            crash_loop_after: 5,
        }
    }
}

/// Consecutive short runs of one service.
#[derive(Debug, Clone)]
pub struct Backoff {
    runs: retry::Backoff,
}

impl Backoff {
    pub fn new(timing: &Timing) -> Backoff {
        Backoff { runs: retry::Backoff::new(timing.base, timing.cap) }
    }

    #[cfg(test)]
    fn seeded(timing: &Timing, seed: u64) -> Backoff {
        Backoff { runs: retry::Backoff::seeded(timing.base, timing.cap, seed) }
    }

    /// Records a run that lasted `ran` (`None`: it never started) and returns the delay before the next start.
    pub fn after_run(&mut self, ran: Option<Duration>, timing: &Timing) -> Duration {
        if ran.is_some_and(|r| r >= timing.stable) {
            self.runs.succeeded();
        }
        self.runs.failed()
    }

    pub fn crash_loop(&self, timing: &Timing) -> bool {
        self.runs.failures() >= timing.crash_loop_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn short_runs_double_the_delay_to_a_minute_and_a_stable_run_resets_it() {
        let t = Timing::default();
        for seed in 0..50 {
            let mut b = Backoff::seeded(&t, seed);
            let short = Some(Duration::from_millis(300));
            let delays: Vec<f64> = (0..9).map(|_| secs(b.after_run(short, &t))).collect();
            for (d, want) in delays.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]) {
                assert!((want * 0.8..=want * 1.2).contains(d), "{delays:?}");
            }
            assert!(b.crash_loop(&t));
            let failed_start = secs(b.after_run(None, &t));
            assert!(failed_start >= 48.0, "a failed start counts as a short run: {failed_start}");
            let after_stable = secs(b.after_run(Some(Duration::from_secs(30)), &t));
            assert!(after_stable <= 1.2, "a stable run starts over: {after_stable}");
            assert!(!b.crash_loop(&t));
        }
    }

    #[test]
    fn services_that_crashed_together_do_not_restart_together() {
        let t = Timing::default();
        let (mut a, mut b) = (Backoff::seeded(&t, 1), Backoff::seeded(&t, 2));
        let differ = (0..5).filter(|_| a.after_run(None, &t) != b.after_run(None, &t)).count();
        assert!(differ >= 4, "jitter spreads restarts: {differ} of 5 differ");
    }

    #[test]
    fn crash_loop_starts_at_the_threshold() {
        let t = Timing { crash_loop_after: 3, ..Timing::default() };
        let mut b = Backoff::new(&t);
        b.after_run(None, &t);
        b.after_run(None, &t);
        assert!(!b.crash_loop(&t));
        b.after_run(None, &t);
        assert!(b.crash_loop(&t));
    }
}
