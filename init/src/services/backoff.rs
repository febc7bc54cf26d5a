//! When to restart: exponential backoff over consecutive short runs, capped, reset by a stable run.

use std::time::Duration;

/// The restart schedule. The defaults are the node's; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Delay after the first short run.
    pub base: Duration,
    /// The delay never grows past this.
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

impl Timing {
    /// The delay before the next start after `n` short runs in a row (n ≥ 1): base · 2^(n-1), at most `cap`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Consecutive short runs of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    short_runs: u32,
}

impl Backoff {
    /// Records a run that lasted `ran` (`None`: it never started) and returns the delay before the next start.
    pub fn after_run(&mut self, ran: Option<Duration>, timing: &Timing) -> Duration {
        if ran.is_some_and(|r| r >= timing.stable) {
            self.short_runs = 0;
        }
        self.short_runs = self.short_runs.saturating_add(1);
        timing.delay(self.short_runs)
    }

    pub fn crash_loop(&self, timing: &Timing) -> bool {
        self.short_runs >= timing.crash_loop_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_a_minute() {
        let t = Timing::default();
        let schedule: Vec<u64> = (1..=9).map(|n| t.delay(n).as_secs()).collect();
        assert_eq!(schedule, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(t.delay(1000), Duration::from_secs(60));
    }

    #[test]
    fn short_runs_grow_the_delay_and_a_stable_run_resets_it() {
        let t = Timing::default();
        let mut b = Backoff::default();
        let short = Some(Duration::from_millis(300));
        let delays: Vec<u64> = (0..6).map(|_| b.after_run(short, &t).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32]);
        assert!(b.crash_loop(&t));
        assert_eq!(b.after_run(None, &t), Duration::from_secs(60), "a failed start counts as a short run");
        assert_eq!(b.after_run(Some(Duration::from_secs(30)), &t), Duration::from_secs(1));
        assert!(!b.crash_loop(&t));
    }

    #[test]
    fn crash_loop_starts_at_the_threshold() {
        let t = Timing { crash_loop_after: 3, ..Timing::default() };
        let mut b = Backoff::default();
        b.after_run(None, &t);
        b.after_run(None, &t);
        assert!(!b.crash_loop(&t));
        b.after_run(None, &t);
        assert!(b.crash_loop(&t));
    }
}
