//! The time task: polls the configured SNTP servers for as long as the node runs and keeps the clock on the best
//! answer.
//!
//! - An offset beyond [`STEP_THRESHOLD_NS`] (128 ms) is stepped (`time.step`); a smaller one is slewed.
//! - Polls every 64 s at first and after any large offset, doubling up to 1024 s while the clock stays within
//!   50 ms (see [`Schedule`]). When no server answers: exponential backoff from 20 s with jitter, capped at 5 minutes.
//! - A kiss-o'-death (RFC 4330 §8) silences that server for a while: `RATE` for the longest poll interval, `DENY`
//!   and `RSTR` for an hour.
//! - After a good sync the RTC is written, at most every 11 minutes.
//! - No servers: the status says so and the task waits for the list to change. Any new list is queried at once.

pub use super::clock::Clock;
use super::schedule::{kiss_holdoff, rtc_due, Schedule, Tuning};
use super::sntp::{self, Measurement, SntpError};
use super::{Source, TimeStatus};
use crate::controller::{runner, ControllerStatus, Target};
use crate::logging::q;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Offsets beyond this are stepped; smaller ones slewed.
pub const STEP_THRESHOLD_NS: i64 = 128_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    Step,
    Slew,
}

impl std::fmt::Display for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Adjustment::Step => "step",
            Adjustment::Slew => "slew",
        })
    }
}

pub fn choose(offset_ns: i64) -> Adjustment {
    if offset_ns.unsigned_abs() > STEP_THRESHOLD_NS.unsigned_abs() {
        Adjustment::Step
    } else {
        Adjustment::Slew
    }
}

/// Trimmed, without blanks or repeats, in the configured order.
fn clean(servers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in servers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// Steps beyond this (either way) need at least [`QUORUM`] servers that agree.
pub const MAX_SINGLE_STEP_S: i64 = 24 * 3600;
pub const QUORUM: usize = 2;

/// Whether a measured offset may be applied: never below the rollback floor (the image's build time or the latest
/// time the node trusted), and a step beyond [`MAX_SINGLE_STEP_S`] only when [`QUORUM`] servers agree on it, so
/// one lying server (they may come from DHCP) cannot move the clock a year either way.
pub fn judge(now_s: u64, offset_ns: i64, floor_s: u64, agreeing: usize) -> Result<(), &'static str> {
    let target = i128::from(now_s) + i128::from(offset_ns / 1_000_000_000);
    if target < i128::from(floor_s) {
        return Err("below-floor");
    }
    if (offset_ns / 1_000_000_000).abs() > MAX_SINGLE_STEP_S && agreeing < QUORUM {
        return Err("large-step-needs-agreement");
    }
    Ok(())
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// What one look at the time sources found.
#[derive(Debug, Clone)]
pub enum Round {
    /// No servers configured: nothing to do until the list changes.
    NoServers,
    /// Every server sent a kiss-o'-death: silent for this long.
    Silenced(Duration),
    /// The clock was adjusted on this pass already (no second query in the same pass).
    Adjusted,
    /// One bounded SNTP round: the best answer, how many agree with it within a second, the clock now and the
    /// rollback floor; else the first error.
    Answers { best: Option<Measurement>, agreeing: usize, now_s: u64, floor_s: u64, error: Option<String> },
}

/// Bring the clock to a server's answer.
#[derive(Debug)]
pub struct Adjust {
    pub how: Adjustment,
    pub m: Measurement,
}

impl std::fmt::Display for Adjust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op={} server={} offset_ms={:.3}", self.how, q(&self.m.server), ms(self.m.offset_ns))
    }
}

/// The one item of the kind: the clock.
const CLOCK: &str = "clock";

/// Pure: from one round to what to do (the existing rules: [`judge`], then [`choose`]).
pub fn plan(_servers: &[String], round: &Round) -> crate::controller::Plan<Adjust> {
    use crate::controller::ItemState;
    let mut p = crate::controller::Plan::default();
    match round {
        Round::NoServers => {}
        Round::Silenced(_) => p.item(CLOCK, ItemState::Waiting("every server sent kiss-o'-death".into())),
        Round::Adjusted => p.item(CLOCK, ItemState::Converged),
        Round::Answers { best: Some(best), agreeing, now_s, floor_s, .. } => {
            match judge(*now_s, best.offset_ns, *floor_s, *agreeing) {
                Ok(()) => p.op(CLOCK, Adjust { how: choose(best.offset_ns), m: best.clone() }),
                Err(why) => p.item(
                    CLOCK,
                    ItemState::Failed(format!(
                        "{why}: {} offers a step of {:.0} s (agreeing={agreeing})",
                        best.server,
                        best.offset_ns / 1_000_000_000
                    )),
                ),
            }
        }
        Round::Answers { best: None, error, .. } => {
            p.item(CLOCK, ItemState::Failed(error.clone().unwrap_or_else(|| "no server answered".into())))
        }
    }
    p
}

/// The time controller on the one runner: desired = the SNTP servers, observe = one bounded SNTP round, the
/// pure [`plan`], apply = step or slew. Its resync is the adaptive poll interval ([`Schedule`]); failures are
/// retried with the runner's backoff (20 s doubling to 5 minutes, jittered).
struct TimeSync<C: Clock> {
    clock: C,
    tuning: Tuning,
    schedule: Schedule,
    status: watch::Sender<TimeStatus>,
    /// The list the schedule was computed for: a new one is queried at once and starts polling over.
    servers: Option<Vec<String>>,
    /// The last round, for the log lines of a refusal.
    last: Option<Round>,
    /// The wait before the next round once synced.
    next: Duration,
    /// How long every server stays silenced (the wait while the clock item waits).
    silenced: Duration,
    adjusted: bool,
    last_good: Option<Instant>,
    last_rtc_write: Option<Instant>,
    /// Servers silenced by a kiss-o'-death, until when.
    holdoff: HashMap<String, Instant>,
}

/// Runs for as long as the node does, with the default [`Tuning`].
pub async fn run(servers: watch::Receiver<Vec<String>>, status: watch::Sender<TimeStatus>, clock: impl Clock) -> ! {
    run_with(servers, status, clock, Tuning::default()).await
}

/// Runs the time controller on the one runner; every new server list is a new desired state.
pub async fn run_with(
    mut servers: watch::Receiver<Vec<String>>,
    status: watch::Sender<TimeStatus>,
    clock: impl Clock,
    tuning: Tuning,
) -> ! {
    let first = Target { generation: None, desired: servers.borrow_and_update().clone() };
    let (desired_tx, desired) = watch::channel(Some(first));
    tokio::spawn(async move {
        while servers.changed().await.is_ok() {
            let list = servers.borrow_and_update().clone();
            desired_tx.send_replace(Some(Target { generation: None, desired: list }));
        }
        log::debug!("time.servers_closed");
        // Keep the runner's desired state open: the clock is still kept on the last list.
        std::future::pending::<()>().await;
    });
    let next = tuning.min_poll;
    let c = TimeSync {
        schedule: Schedule::new(&tuning),
        clock,
        tuning,
        status,
        servers: None,
        last: None,
        next,
        silenced: Duration::ZERO,
        adjusted: false,
        last_good: None,
        last_rtc_write: None,
        holdoff: HashMap::new(),
    };
    // No events of its own: the channel's sender is dropped at once.
    let (_, events) = tokio::sync::mpsc::channel::<()>(1);
    let (status_tx, _status) = watch::channel(ControllerStatus::default());
    runner::run(c, desired, events, status_tx).await;
    std::future::pending().await
}

impl<C: Clock> TimeSync<C> {
    fn synced_recently(&self) -> bool {
        self.last_good.is_some_and(|at| at.elapsed() < self.tuning.stale_after)
    }

    /// One SNTP round over the servers not silenced (each query bounded by the tuning's timeout).
    async fn round(&mut self, list: &[String]) -> Round {
        let now = Instant::now();
        self.holdoff.retain(|server, until| *until > now && list.contains(server));
        let active: Vec<String> = list.iter().filter(|s| !self.holdoff.contains_key(*s)).cloned().collect();
        if active.is_empty() {
            let until = self.holdoff.values().min().copied().unwrap_or(now + self.tuning.max_backoff);
            return Round::Silenced(until.saturating_duration_since(now));
        }
        let clock = &self.clock;
        let results = sntp::query_all(&active, self.tuning.query_timeout, &|| clock.now()).await;
        for (server, result) in &results {
            match result {
                Ok(_) => {}
                Err(SntpError::Reply(sntp::ReplyError::Kiss(code))) => {
                    let hold = kiss_holdoff(code, &self.tuning);
                    log::warn!("time.kiss server={} code={code} holdoff_s={}", q(server), hold.as_secs());
                    self.holdoff.insert(server.clone(), Instant::now() + hold);
                }
                Err(e) => log::warn!("time.unreachable server={} error={}", q(server), q(&e.to_string())),
            }
        }
        let best = sntp::best(&results).cloned();
        // Servers whose answers agree with the best within a second: a large step needs more than one.
        let agreeing = best.as_ref().map_or(0, |b| {
            results
                .iter()
                .filter(|(_, r)| r.as_ref().is_ok_and(|m| (m.offset_ns - b.offset_ns).abs() < 1_000_000_000))
                .count()
        });
        let error = results.iter().find_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}")));
        let now_s = self.clock.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Round::Answers { best, agreeing, now_s, floor_s: crate::trust::floor::current().time, error }
    }

    fn adjusted(&mut self, m: &Measurement, how: Adjustment) {
        if how == Adjustment::Step {
            log::info!("time.step offset_ms={:.3} server={}", ms(m.offset_ns), q(&m.server));
        }
        log::info!(
            "time.sync server={} offset_ms={:.3} delay_ms={:.3} stratum={} adjust={how}",
            q(&m.server),
            ms(m.offset_ns),
            ms(m.delay_ns),
            m.stratum,
        );
        let now = Instant::now();
        self.last_good = Some(now);
        self.status.send_replace(TimeStatus {
            synced: true,
            server: Some(m.server.clone()),
            offset_ms: Some(ms(m.offset_ns)),
            delay_ms: Some(ms(m.delay_ns)),
            last_sync: Some(self.clock.now()),
            source: Source::Sntp,
            error: None,
        });
        if rtc_due(self.last_rtc_write, now, self.tuning.rtc_interval) {
            // Counted even when it fails, so a missing RTC is not retried (and logged) on every poll.
            self.last_rtc_write = Some(now);
            match self.clock.write_rtc() {
                Ok(()) => log::info!("time.rtc_write"),
                Err(e) => log::warn!("time.rtc_write_failed error={}", q(&e.to_string())),
            }
        }
        self.next = self.schedule.after_sync(m.offset_ns, how == Adjustment::Step);
    }
}

impl<C: Clock> crate::controller::Controller for TimeSync<C> {
    const KIND: crate::registry::Kind = crate::registry::Kind::Time;
    const AREA: &'static str = "time";
    /// Replaced by the adaptive poll interval ([`Controller::resync`]).
    const RESYNC: Duration = Duration::from_secs(64);
    const BACKOFF_FIRST: Duration = Duration::from_secs(20);
    const BACKOFF_CAP: Duration = Duration::from_secs(300);

    type Desired = Vec<String>;
    type Observed = Round;
    type Op = Adjust;
    type Event = ();

    async fn observe(&mut self, target: &Target<Vec<String>>) -> Result<Round, String> {
        let list = clean(&target.desired);
        if self.servers.as_ref() != Some(&list) {
            if list.is_empty() {
                log::info!("time.no_servers");
            }
            self.servers = Some(list.clone());
            self.schedule.reset();
        }
        if std::mem::take(&mut self.adjusted) {
            return Ok(Round::Adjusted);
        }
        if list.is_empty() {
            return Ok(Round::NoServers);
        }
        let round = self.round(&list).await;
        if let Round::Silenced(d) = &round {
            self.silenced = *d;
        }
        self.last = Some(round.clone());
        Ok(round)
    }

    fn plan(servers: &Vec<String>, round: &Round) -> crate::controller::Plan<Adjust> {
        plan(servers, round)
    }

    async fn apply(&mut self, op: Adjust, _generation: Option<u64>) -> Result<(), String> {
        let applied = match op.how {
            Adjustment::Step => self.clock.step(op.m.offset_ns),
            Adjustment::Slew => self.clock.slew(op.m.offset_ns),
        };
        if let Err(e) = applied {
            log::error!(
                "time.adjust_failed how={} offset_ms={:.3} error={}",
                op.how,
                ms(op.m.offset_ns),
                q(&e.to_string())
            );
            return Err(e.to_string());
        }
        self.adjusted(&op.m, op.how);
        self.adjusted = true;
        Ok(())
    }

    fn poll(&self) -> Duration {
        self.silenced.max(Duration::from_secs(1))
    }

    fn resync(&self) -> Duration {
        self.next
    }

    /// Disciplining the clock follows the servers; it is not drift of a setting.
    fn repairs(_op: &Adjust) -> bool {
        false
    }

    /// Publishes why the clock is not synced (the adjustments publish the good news themselves).
    fn passed(&mut self, target: &Target<Vec<String>>, status: &ControllerStatus) {
        let error = if clean(&target.desired).is_empty() {
            Some("no servers configured".to_string())
        } else {
            status.items.iter().find_map(|(_, s)| match s {
                crate::controller::ItemState::Converged => None,
                crate::controller::ItemState::Waiting(why) | crate::controller::ItemState::Failed(why) => {
                    Some(why.clone())
                }
            })
        };
        let Some(error) = error else { return };
        if status.failures > 0 {
            // A failed round starts polling over once the servers answer again.
            self.schedule.reset();
            match self.last.take() {
                Some(Round::Answers { best: Some(best), agreeing, now_s, floor_s, .. }) => {
                    if let Err(why) = judge(now_s, best.offset_ns, floor_s, agreeing) {
                        log::warn!(
                            "time.refused reason={why} offset_ms={:.3} server={} agreeing={agreeing}",
                            ms(best.offset_ns),
                            q(&best.server)
                        );
                    }
                }
                _ => log::warn!("time.unsynced error={}", q(&error)),
            }
        }
        let synced = self.synced_recently() && !clean(&target.desired).is_empty();
        self.status.send_modify(|s| {
            s.synced = synced;
            s.error = Some(error);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_never_go_below_the_floor_and_large_ones_need_two_servers() {
        let now = 1_800_000_000;
        let year = 365 * 24 * 3600 * 1_000_000_000i64;
        assert_eq!(judge(now, -year, now - 3600, 3), Err("below-floor"));
        assert_eq!(judge(now, -1_000_000_000, now, 1), Err("below-floor"));
        assert_eq!(judge(now, year, now, 1), Err("large-step-needs-agreement"));
        assert_eq!(judge(now, year, now, 2), Ok(()));
        assert_eq!(judge(now, -year, 0, 1), Err("large-step-needs-agreement"));
        assert_eq!(judge(now, 5_000_000_000, now, 1), Ok(()));
        assert_eq!(judge(now, -3_600_000_000_000, 0, 1), Ok(()));
    }

    #[test]
    fn threshold_chooses_step_or_slew() {
        assert_eq!(choose(0), Adjustment::Slew);
        assert_eq!(choose(STEP_THRESHOLD_NS), Adjustment::Slew);
        assert_eq!(choose(-STEP_THRESHOLD_NS), Adjustment::Slew);
        assert_eq!(choose(STEP_THRESHOLD_NS + 1), Adjustment::Step);
        assert_eq!(choose(-STEP_THRESHOLD_NS - 1), Adjustment::Step);
        assert_eq!(choose(i64::MIN), Adjustment::Step);
    }

    fn answer(offset_ns: i64, agreeing: usize) -> Round {
        let m = Measurement {
            server: "10.0.2.2".into(),
            addr: "10.0.2.2:123".parse().unwrap(),
            stratum: 2,
            offset_ns,
            delay_ns: 1_000_000,
        };
        Round::Answers { best: Some(m), agreeing, now_s: 1_800_000_000, floor_s: 1_700_000_000, error: None }
    }

    #[test]
    fn the_plan_adjusts_once_per_round_and_refuses_what_judge_refuses() {
        use crate::controller::ItemState;
        let servers = vec!["10.0.2.2".to_string()];
        let ops = |r: &Round| plan(&servers, r).ops.into_iter().map(|(_, op)| op.to_string()).collect::<Vec<_>>();
        assert_eq!(ops(&answer(5_000_000_000, 1)), ["op=step server=10.0.2.2 offset_ms=5000.000"]);
        assert_eq!(ops(&answer(1_000_000, 1)), ["op=slew server=10.0.2.2 offset_ms=1.000"]);
        let year = 365 * 24 * 3600 * 1_000_000_000i64;
        let refused = plan(&servers, &answer(year, 1));
        assert!(refused.ops.is_empty(), "one server cannot move the clock a year");
        assert!(matches!(&refused.items[0].1, ItemState::Failed(why) if why.starts_with("large-step-needs-agreement")));
        assert_eq!(ops(&answer(year, 2)).len(), 1, "two agreeing servers can");
        let none = Round::Answers { best: None, agreeing: 0, now_s: 0, floor_s: 0, error: Some("a: timeout".into()) };
        assert_eq!(plan(&servers, &none).items, [(CLOCK.to_string(), ItemState::Failed("a: timeout".into()))]);
        // After an adjustment the same pass does not query again: converged.
        assert_eq!(plan(&servers, &Round::Adjusted).items, [(CLOCK.to_string(), ItemState::Converged)]);
        let silenced = plan(&servers, &Round::Silenced(Duration::from_secs(60)));
        assert!(silenced.ops.is_empty() && matches!(silenced.items[0].1, ItemState::Waiting(_)));
        assert!(plan(&[], &Round::NoServers).items.is_empty(), "no servers: nothing to converge");
    }

    #[test]
    fn server_lists_are_cleaned() {
        let list = ["  a ", "", "b", "a", " "].map(String::from);
        assert_eq!(clean(&list), ["a", "b"]);
    }
}
