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
use crate::logging::q;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
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

fn seed(now: SystemTime) -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes) ^ sntp::unix_nanos(now) as u64 ^ crate::clock::uptime().as_nanos() as u64
}

/// The task's memory between polls.
struct Task<C: Clock> {
    clock: C,
    tuning: Tuning,
    schedule: Schedule,
    status: watch::Sender<TimeStatus>,
    last_good: Option<Instant>,
    last_rtc_write: Option<Instant>,
    /// Servers silenced by a kiss-o'-death, until when.
    holdoff: HashMap<String, Instant>,
}

/// Runs for as long as the node does, with the default [`Tuning`].
pub async fn run(servers: watch::Receiver<Vec<String>>, status: watch::Sender<TimeStatus>, clock: impl Clock) -> ! {
    run_with(servers, status, clock, Tuning::default()).await
}

pub async fn run_with(
    mut servers: watch::Receiver<Vec<String>>,
    status: watch::Sender<TimeStatus>,
    clock: impl Clock,
    tuning: Tuning,
) -> ! {
    let schedule = Schedule::new(&tuning, seed(clock.now()));
    let mut task =
        Task { clock, tuning, schedule, status, last_good: None, last_rtc_write: None, holdoff: HashMap::new() };
    let mut watch_open = true;
    loop {
        let list = clean(&servers.borrow_and_update());
        let wait = if list.is_empty() {
            log::info!("time.no_servers");
            task.status.send_modify(|s| {
                s.synced = false;
                s.error = Some("no servers configured".into());
            });
            None
        } else {
            Some(task.poll(&list).await)
        };
        if wait_or_change(wait, &mut servers, &mut watch_open).await {
            task.schedule.reset();
        }
    }
}

/// Sleeps for `wait` (forever if `None`) or until the server list changes; true if it changed.
async fn wait_or_change(wait: Option<Duration>, servers: &mut watch::Receiver<Vec<String>>, open: &mut bool) -> bool {
    let sleep = async {
        match wait {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    while *open {
        tokio::select! {
            () = &mut sleep => return false,
            changed = servers.changed() => match changed {
                Ok(()) => return true,
                Err(_) => {
                    log::debug!("time.servers_closed");
                    *open = false;
                }
            },
        }
    }
    sleep.await;
    false
}

impl<C: Clock> Task<C> {
    fn synced_recently(&self) -> bool {
        self.last_good.is_some_and(|at| at.elapsed() < self.tuning.stale_after)
    }

    fn failed(&mut self, error: String) -> Duration {
        let synced = self.synced_recently();
        self.status.send_modify(|s| {
            s.synced = synced;
            s.error = Some(error);
        });
        self.schedule.after_failure()
    }

    /// One round: query every server not silenced, apply the best answer; returns the wait before the next.
    async fn poll(&mut self, list: &[String]) -> Duration {
        let now = Instant::now();
        self.holdoff.retain(|server, until| *until > now && list.contains(server));
        let active: Vec<String> = list.iter().filter(|s| !self.holdoff.contains_key(*s)).cloned().collect();
        if active.is_empty() {
            let until = self.holdoff.values().min().copied().unwrap_or(now + self.tuning.max_backoff);
            let synced = self.synced_recently();
            self.status.send_modify(|s| {
                s.synced = synced;
                s.error = Some("every server sent kiss-o'-death".into());
            });
            return until.saturating_duration_since(now);
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
        match sntp::best(&results).cloned() {
            Some(best) => {
                // Servers whose answers agree with the best within a second: a large step needs more than one.
                let agree = results
                    .iter()
                    .filter(|(_, r)| r.as_ref().is_ok_and(|m| (m.offset_ns - best.offset_ns).abs() < 1_000_000_000))
                    .count();
                let now = self.clock.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                match judge(now, best.offset_ns, crate::trust::floor::current().time, agree) {
                    Ok(()) => self.apply(best),
                    Err(why) => {
                        log::warn!(
                            "time.refused reason={why} offset_ms={:.3} server={} agreeing={agree}",
                            ms(best.offset_ns),
                            q(&best.server)
                        );
                        self.failed(format!(
                            "{why}: {} offers a step of {:.0} s",
                            best.server,
                            best.offset_ns / 1_000_000_000
                        ))
                    }
                }
            }
            None => {
                let first = results.iter().find_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}")));
                self.failed(first.unwrap_or_else(|| "no server answered".into()))
            }
        }
    }

    fn apply(&mut self, m: Measurement) -> Duration {
        let how = choose(m.offset_ns);
        let applied = match how {
            Adjustment::Step => self.clock.step(m.offset_ns),
            Adjustment::Slew => self.clock.slew(m.offset_ns),
        };
        if let Err(e) = applied {
            log::error!("time.adjust_failed how={how} offset_ms={:.3} error={}", ms(m.offset_ns), q(&e.to_string()));
            return self.failed(e.to_string());
        }
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
        self.schedule.after_sync(m.offset_ns, how == Adjustment::Step)
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

    #[test]
    fn server_lists_are_cleaned() {
        let list = ["  a ", "", "b", "a", " "].map(String::from);
        assert_eq!(clean(&list), ["a", "b"]);
    }
}
