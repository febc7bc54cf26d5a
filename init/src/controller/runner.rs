//! The one runner every controller runs on. It waits for a reason to pass (a new desired state, the kind's own
//! events, a waiting item's poll, a failure's backoff, the resync period), then passes: observe, plan, apply,
//! and again while the last round applied something (an operation can make the next possible: a link before its
//! addresses), at most [`MAX_ROUNDS`] rounds. A pass that finds nothing to do costs one observation and zero
//! writes. One failing item does not stop the others. After each pass it publishes the kind's
//! [`ControllerStatus`].

use super::{Controller, ControllerStatus, ItemState, Reason, Target, Wake};
use crate::logging::q;
use crate::retry::Backoff;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Rounds of observe → plan → apply in one pass before the runner stops to let time (and events) pass.
pub const MAX_ROUNDS: usize = 8;

/// What one pass found.
struct Outcome {
    items: Vec<(String, ItemState)>,
    error: Option<String>,
    writes: u64,
    repairs: u64,
    /// The last round planned nothing.
    settled: bool,
    /// An operation failed or the host could not be observed (logged `AREA.retry`). Items the plan reports as
    /// failed are retried with the same backoff, without that line.
    errored: bool,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.error.is_some() || self.items.iter().any(|(_, s)| matches!(s, ItemState::Failed(_)))
    }
}

/// One pass for `target`.
async fn pass<C: Controller>(c: &mut C, target: &Target<C::Desired>, reason: Reason) -> Outcome {
    let mut out = Outcome { items: Vec::new(), error: None, writes: 0, repairs: 0, settled: false, errored: false };
    let generation = target.generation.map_or("none".to_string(), |g| g.to_string());
    for _ in 0..MAX_ROUNDS {
        let observed = match c.observe(target).await {
            Ok(o) => o,
            Err(e) => {
                log::warn!("{}.observe_failed error={}", C::AREA, q(&e));
                out.error = Some(e);
                out.errored = true;
                return out;
            }
        };
        let plan = C::plan(&target.desired, &observed);
        drop(observed);
        out.items = plan.items;
        if plan.ops.is_empty() {
            out.settled = true;
            break;
        }
        let mut progress = false;
        let (names, ops): (Vec<String>, Vec<C::Op>) = plan.ops.into_iter().unzip();
        let shown: Vec<(String, bool)> = ops
            .iter()
            .map(|op| (op.to_string(), !matches!(reason, Reason::Desired | Reason::Input) && C::repairs(op)))
            .collect();
        let mut results = c.apply_all(ops, target.generation).await.into_iter();
        for (item, (shown, repair)) in names.into_iter().zip(shown) {
            match results.next().unwrap_or_else(|| Err("not applied".to_string())) {
                Ok(()) => {
                    out.writes += 1;
                    progress = true;
                    if repair {
                        out.repairs += 1;
                        log::info!("{}.repair {shown} reason={reason} generation={generation}", C::AREA);
                    } else {
                        log::info!("{}.apply {shown} reason={reason} generation={generation}", C::AREA);
                    }
                    // Converged only if the next round finds nothing left to do for it.
                    out.items.push((item, ItemState::Converged));
                }
                Err(e) => {
                    out.errored = true;
                    log::warn!("{}.apply_failed {shown} error={}", C::AREA, q(&e));
                    out.items.push((item, ItemState::Failed(e)));
                }
            }
        }
        if !progress || out.failed() {
            break;
        }
    }
    if !out.settled && !out.failed() {
        // Still finding work after MAX_ROUNDS: something undoes what is applied (another agent fighting over the
        // same setting). Reported, retried with backoff.
        for (_, s) in out.items.iter_mut().filter(|(_, s)| *s == ItemState::Converged) {
            *s = ItemState::Failed(format!("still differs after {MAX_ROUNDS} rounds"));
        }
    }
    by_item(&mut out.items);
    out
}

/// Sorts a pass's items by name and drops repeats. Not generic: `pass` is compiled once per kind, and a sort
/// inside it would be too (8 copies, 28 KiB of the init); from here one copy serves them all.
fn by_item(items: &mut Vec<(String, ItemState)>) {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);
}

/// Runs `c` for ever: on every new desired state from `desired`, on every event from `events`, and on its
/// timers. Returns when the controller asks to stop (an event's [`Wake::Stop`]) or when neither the desired
/// state nor the events can change any more and the kind does not resync.
pub async fn run<C: Controller>(
    mut c: C,
    mut desired: super::DesiredRx<C::Desired>,
    mut events: mpsc::Receiver<C::Event>,
    status: watch::Sender<ControllerStatus>,
) {
    let mut backoff = Backoff::new(C::BACKOFF_FIRST, C::BACKOFF_CAP);
    let (mut desired_open, mut events_open) = (true, true);
    let mut reason = Reason::Desired;
    status.send_modify(|s| s.area = C::AREA);
    loop {
        let target = desired.borrow_and_update().clone();
        let mut next = None;
        if let Some(target) = &target {
            // Boxed: a pass's future (up to 13 KiB: the upgrade source's) lives on the heap only while it runs,
            // not in every controller's task for good.
            let out = Box::pin(pass(&mut c, target, reason)).await;
            let (wait, why) = if out.failed() {
                let wait = backoff.failed();
                // Only a failed operation or observation is news; an item the plan reports failed (a crash-looping
                // service, a refused time answer) has its own log lines and would repeat on every event.
                if out.errored {
                    log::warn!(
                        "{}.retry generation={} failures={} retry_in_s={:.1}",
                        C::AREA,
                        target.generation.map_or("none".to_string(), |g| g.to_string()),
                        backoff.failures(),
                        wait.as_secs_f64()
                    );
                }
                (wait, Reason::Retry)
            } else {
                backoff.succeeded();
                if out.items.iter().any(|(_, s)| matches!(s, ItemState::Waiting(_))) {
                    (c.poll(), Reason::Retry)
                } else {
                    (c.resync(), Reason::Resync)
                }
            };
            next = Some((Instant::now() + wait, why));
            let converged =
                out.settled && out.error.is_none() && out.items.iter().all(|(_, s)| *s == ItemState::Converged);
            let failures = if out.failed() { status.borrow().failures.saturating_add(1) } else { 0 };
            status.send_modify(|s| {
                s.generation = target.generation;
                s.converged = converged;
                s.items = out.items;
                s.error = out.error;
                s.failures = failures;
                s.writes += out.writes;
                s.repairs += out.repairs;
                s.runs += 1;
            });
            c.passed(target, &status.borrow());
        }
        // Wait for the next reason to pass.
        reason = loop {
            if !desired_open && !events_open && next.is_none() {
                return;
            }
            let timer = async {
                match next {
                    Some((at, why)) => {
                        tokio::time::sleep_until(at).await;
                        why
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = desired.changed(), if desired_open => match changed {
                    Ok(()) => break Reason::Desired,
                    Err(_) => desired_open = false,
                },
                event = events.recv(), if events_open => match event {
                    None => events_open = false,
                    Some(event) => {
                        let mut wake = c.event(event).await;
                        // Only host changes settle: they come in bursts. An input (a lease) is one event that
                        // ends a wait, and the network's readiness is on its path: a boot measured the 5 ms sleep
                        // last 216 ms on one vCPU while every other kind ran its first pass on this thread.
                        if wake == Wake::Now && !C::SETTLE.is_zero() {
                            tokio::time::sleep(C::SETTLE).await;
                        }
                        // Coalesce what is already queued: one pass covers all of it.
                        while let Ok(event) = events.try_recv() {
                            wake = wake.max(c.event(event).await);
                        }
                        match wake {
                            Wake::Stop => return,
                            Wake::Now => break Reason::Event,
                            Wake::Input => break Reason::Input,
                            Wake::Later => {}
                        }
                    }
                },
                why = timer => break why,
            }
        };
    }
}

/// Starts `c` on its own task: returns where to send its desired state and its events, and its status.
pub fn start<C: Controller>(
    c: C,
) -> (super::DesiredTx<C::Desired>, mpsc::Sender<C::Event>, watch::Receiver<ControllerStatus>) {
    let (events_tx, events) = mpsc::channel(256);
    let (desired_tx, status) = start_with(c, events);
    (desired_tx, events_tx, status)
}

/// [`start`] for a kind that made its event channel itself (it hands the sender to its own event sources, such
/// as the DHCP clients it starts).
pub fn start_with<C: Controller>(
    c: C,
    events: mpsc::Receiver<C::Event>,
) -> (super::DesiredTx<C::Desired>, watch::Receiver<ControllerStatus>) {
    log::debug!("controller.start kind={} area={}", C::KIND, C::AREA);
    let (desired_tx, desired) = watch::channel(None);
    let (status_tx, status) = watch::channel(ControllerStatus { area: C::AREA, ..Default::default() });
    crate::spawn_apart(move || run(c, desired, events, status_tx));
    (desired_tx, status)
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
