//! Staged rollouts without a control plane: `[rollout]` says how fast a generation reaches the fleet, and each
//! node works out alone when its turn comes, from its machine id.
//!
//! - [`slot`]: a node's place in every rollout, in `[0, 1)`: the first 53 bits of
//!   SHA-256(`"keel-rollout-slot\n"` + machine id). It depends on the machine id only, never on the generation:
//!   the same nodes go first every time (the canaries an operator watches), and a halted rollout that is
//!   re-published as a newer generation reaches the nodes in the same order, so the set of nodes that ran the new
//!   content only ever grows. The machine id is the SMBIOS UUID or the persisted one (`machine_id.rs`), so the
//!   slot is stable across reboots.
//! - [`Rollout::applies_at`]: `start + slot × duration`, or, with `steps = [1, 10, 50, 100]`, the time the first
//!   step whose percentage exceeds the slot opens (step `i` of `n` opens at `start + duration × i / (n − 1)`).

use serde::Deserialize;
use toml::value::Datetime;

use crate::diag::Sink;
use crate::raw::At;
use crate::time::Timestamp;

/// `[rollout]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RawRollout {
    /// When the first nodes apply this generation: a TOML offset date-time, e.g. 2026-12-02T16:00:00Z.
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub start: At<Datetime>,
    /// How long until every node applies it: a number and a unit (s, m, h, d), or several, e.g. "6h", "1h30m".
    /// Without `steps` the nodes apply evenly over it; "0s" means all at `start`.
    pub duration: At<String>,
    /// Optional percentages of the fleet, strictly increasing, 1..100, ending at 100, e.g. [1, 10, 50, 100]:
    /// step i of n opens at start + duration × i / (n − 1), for the nodes whose slot is below its percentage.
    pub steps: Option<At<Vec<At<i64>>>>,
}

/// A validated `[rollout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub start: Timestamp,
    /// Seconds from `start` until the last node applies it.
    pub duration_s: u64,
    /// Percentages, strictly increasing, the last 100; empty for an even spread.
    pub steps: Vec<u8>,
}

/// A node's place in every rollout, in `[0, 1)`, from its machine id (32 lowercase hex digits, as
/// `net::normalize_machine_id` makes it; other spellings are lowercased first).
pub fn slot(machine_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keel-rollout-slot\n");
    h.update(machine_id.to_ascii_lowercase().as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: every value is exact in an f64 and strictly below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

impl Rollout {
    /// Seconds after `start` at which a node with `slot` applies the generation.
    pub fn offset_s(&self, slot: f64) -> u64 {
        let slot = slot.clamp(0.0, 1.0);
        if self.steps.is_empty() {
            return (self.duration_s as f64 * slot).floor() as u64;
        }
        let n = self.steps.len();
        let step = self.steps.iter().position(|&p| slot * 100.0 < f64::from(p)).unwrap_or(n - 1);
        if n == 1 {
            0
        } else {
            (u128::from(self.duration_s) * step as u128 / (n as u128 - 1)) as u64
        }
    }

    /// When a node with `slot` applies the generation.
    pub fn applies_at(&self, slot: f64) -> Timestamp {
        let offset = i64::try_from(self.offset_s(slot)).unwrap_or(i64::MAX);
        Timestamp { unix_seconds: self.start.unix_seconds.saturating_add(offset) }
    }

    /// The share of the fleet (0..=1) whose turn has come at `now`.
    pub fn share_at(&self, now: Timestamp) -> f64 {
        let elapsed = now.unix_seconds - self.start.unix_seconds;
        if elapsed < 0 {
            return 0.0;
        }
        let elapsed = elapsed as u64;
        if self.steps.is_empty() {
            return if self.duration_s == 0 { 1.0 } else { (elapsed as f64 / self.duration_s as f64).min(1.0) };
        }
        let n = self.steps.len();
        let open = if n == 1 || self.duration_s == 0 {
            n - 1
        } else {
            ((u128::from(elapsed) * (n as u128 - 1) / u128::from(self.duration_s)) as usize).min(n - 1)
        };
        f64::from(self.steps[open]) / 100.0
    }
}

/// `"6h"`, `"90s"`, `"1h30m"`, `"2d"`: seconds. Units s, m, h, d; at most 366 days.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: give numbers with units s, m, h or d, e.g. \"6h\" or \"1h30m\"");
    let mut total: u64 = 0;
    let mut digits = String::new();
    if text.is_empty() {
        return Err(bad());
    }
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    if total > 366 * 86_400 {
        return Err(format!("{text:?} is longer than a year (366d)"));
    }
    Ok(total)
}

/// Checks `[rollout]`; None (with the errors in `sink`) when it is wrong.
pub(crate) fn validate(raw: &RawRollout, sink: &mut Sink) -> Option<Rollout> {
    let start = Timestamp::from_toml(raw.start.get());
    if start.is_none() {
        let msg = format!(
            "{} names no single instant; give a date, a time and an offset, e.g. 2026-12-02T16:00:00Z",
            raw.start.get()
        );
        sink.error(raw.start.span(), "rollout.start", msg);
    }
    let duration =
        parse_duration(raw.duration.get()).map_err(|e| sink.error(raw.duration.span(), "rollout.duration", e));
    let mut steps = Vec::new();
    let mut steps_ok = true;
    if let Some(list) = &raw.steps {
        if list.get().is_empty() {
            sink.error(list.span(), "rollout.steps", "must list at least one percentage, the last 100");
            steps_ok = false;
        }
        for (i, p) in list.get().iter().enumerate() {
            let path = format!("rollout.steps[{i}]");
            let n = *p.get();
            let previous = steps.last().copied().map_or(0, i64::from);
            if !(1..=100).contains(&n) {
                sink.error(p.span(), &path, "must be a percentage 1..100");
                steps_ok = false;
            } else if n <= previous {
                sink.error(p.span(), &path, format!("must be larger than the step before it ({previous})"));
                steps_ok = false;
            } else {
                steps.push(n as u8);
            }
        }
        if steps_ok && steps.last() != Some(&100) {
            sink.error(list.span(), "rollout.steps", "the last step must be 100, or some nodes never apply it");
            steps_ok = false;
        }
    }
    match (start, duration, steps_ok) {
        (Some(start), Ok(duration_s), true) => Some(Rollout { start, duration_s, steps }),
        _ => None,
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
