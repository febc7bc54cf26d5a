//! The one retry policy of the init and its one random source: after `n` failures in a row wait `first · 2^(n-1)`,
//! capped, with ±20% jitter so nodes that failed together do not retry together. The random numbers only spread
//! retries and make identifiers that are not secrets: they never wait for the kernel's entropy pool.

use std::time::Duration;

/// 64 bits from the kernel without ever blocking: `GRND_INSECURE` (Linux 5.6+), else `GRND_NONBLOCK`, else the
/// clock. Only for what need not be secret (jitter, transaction ids); keys use the blocking pool.
pub fn insecure_u64() -> u64 {
    let mut buf = [0u8; 8];
    for flags in [libc::GRND_INSECURE, libc::GRND_NONBLOCK] {
        // SAFETY: `buf` is a valid, writable buffer of buf.len() bytes.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n == buf.len() as isize {
            return u64::from_ne_bytes(buf);
        }
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id())
}

/// A small fast generator (xorshift64) seeded once from [`insecure_u64`].
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng::seeded(insecure_u64())
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}

/// The policy's delay after `failures` failures in a row (at least 1), with jitter drawn from `random`.
pub fn delay(first: Duration, cap: Duration, failures: u32, random: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = first.saturating_mul(1u32 << doublings.min(31)).min(cap);
    let jitter = (random % 41) as f64 / 100.0 - 0.2; // -0.20 ..= +0.20
    base.mul_f64(1.0 + jitter)
}

/// Consecutive failures of one thing and when to try it again.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { first, cap, failures: 0, rng: Rng::new() }
    }

    /// The same with a fixed seed, for tests.
    #[cfg(test)]
    pub fn seeded(first: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff { first, cap, failures: 0, rng: Rng::seeded(seed) }
    }

    /// Records a failure; returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        delay(self.first, self.cap, self.failures, self.rng.next_u64())
    }

    /// Records a success: the next failure waits `first` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap_with_bounded_jitter() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(300));
        for seed in 0..200 {
            let d = delay(first, cap, 1, seed).as_secs_f64();
            assert!((0.8..=1.2).contains(&d), "{d}");
            let d = delay(first, cap, 2, seed).as_secs_f64();
            assert!((1.6..=2.4).contains(&d), "{d}");
            let d = delay(first, cap, 40, seed).as_secs_f64();
            assert!((240.0..=360.0).contains(&d), "{d}");
        }
        let mut b = Backoff::seeded(first, cap, 7);
        let waits: Vec<f64> = (0..4).map(|_| b.failed().as_secs_f64()).collect();
        assert!(waits[3] > waits[1] * 2.0, "{waits:?}");
        b.succeeded();
        assert!(b.failed() <= Duration::from_millis(1200), "a success starts over");
    }

    #[test]
    fn jitter_spreads_nodes_that_failed_together() {
        let mut a = Backoff::seeded(Duration::from_secs(10), Duration::from_secs(60), 1);
        let mut b = Backoff::seeded(Duration::from_secs(10), Duration::from_secs(60), 2);
        let differ = (0..5).filter(|_| a.failed() != b.failed()).count();
        assert!(differ >= 4, "two nodes back off in lockstep");
        assert_ne!(insecure_u64(), insecure_u64());
    }
}
