//! The node's side of a staged rollout (`[rollout]`, see keel_config::rollout): a verified config whose turn has not
//! come for this node is held, not applied; the node keeps running the generation it accepted before and reports
//! `waiting-rollout` with the time it will apply. The decision is pure ([`gate`]); the pipeline keeps the held
//! config and the config task wakes it at that time ([`wake_in`]).

use super::store::Signed;
use keel_config::rollout::{slot, Rollout};
use keel_config::Timestamp;
use std::time::Duration;

/// The longest the config task sleeps before looking at the wall clock again: a clock stepped by NTP moves the
/// apply time by at most this much, and a waiting node wakes once a minute, not more.
pub const RECHECK: Duration = Duration::from_secs(60);

/// A verified config whose turn has not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub source: String,
    pub signed: Signed,
    pub generation: u64,
    pub applies_at: Timestamp,
}

/// What status shows of a held config (`config.rollout` in `/v1/status`).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub generation: u64,
    pub applies_at: Timestamp,
    pub slot: f64,
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Apply it now.
    Now,
    /// Hold it until then.
    Wait(Timestamp),
}

/// Whether a node with `machine_id` applies a config with `rollout` at `now`.
pub fn gate(rollout: Option<&Rollout>, machine_id: &str, now: Timestamp) -> Gate {
    match rollout {
        None => Gate::Now,
        Some(r) => {
            let at = r.applies_at(slot(machine_id));
            if now >= at {
                Gate::Now
            } else {
                Gate::Wait(at)
            }
        }
    }
}

/// How long to sleep before looking again at a config held until `at`: never more than [`RECHECK`].
pub fn wake_in(at: Timestamp, now: Timestamp) -> Duration {
    let secs = u64::try_from(at.unix_seconds.saturating_sub(now.unix_seconds)).unwrap_or(0);
    Duration::from_secs(secs).min(RECHECK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(duration_s: u64) -> Rollout {
        Rollout { start: Timestamp { unix_seconds: 1_000_000 }, duration_s, steps: Vec::new() }
    }

    #[test]
    fn a_node_waits_until_its_slot_and_no_longer() {
        let id = "6b65656c000040008000000000000001";
        let r = rollout(10_000);
        let at = r.applies_at(slot(id));
        assert!(at.unix_seconds > 1_000_000 && at.unix_seconds < 1_010_000, "{at}");
        assert_eq!(gate(Some(&r), id, Timestamp { unix_seconds: at.unix_seconds - 1 }), Gate::Wait(at));
        assert_eq!(gate(Some(&r), id, at), Gate::Now);
        assert_eq!(gate(None, id, Timestamp { unix_seconds: 0 }), Gate::Now);
        // A rollout that is over, or has no duration, waits for nobody once it started.
        assert_eq!(gate(Some(&rollout(0)), id, Timestamp { unix_seconds: 1_000_000 }), Gate::Now);
    }

    #[test]
    fn the_wake_up_is_bounded() {
        let now = Timestamp { unix_seconds: 100 };
        assert_eq!(wake_in(Timestamp { unix_seconds: 130 }, now), Duration::from_secs(30));
        assert_eq!(wake_in(Timestamp { unix_seconds: 100_000 }, now), RECHECK);
        assert_eq!(wake_in(Timestamp { unix_seconds: 50 }, now), Duration::ZERO);
    }
}
