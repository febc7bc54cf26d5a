//! The services kind on the one runner (`controller::runner`): each accepted config's services are planned
//! against the supervisors that run ([`plan`]: stop removed and changed ones, dependents first; start new and
//! changed ones, dependencies first; leave the rest alone), and the plan is the pass's one operation. Every
//! service is an item: running or stopped as its policy allows is converged; blocked on its `after`, starting,
//! pulling, stopping or backing off is waiting; crash-looping or failed is failed. The supervisors' state changes
//! are the kind's events; at shutdown, StopAll stops everything in reverse dependency order and ends the runner.

use super::plan;
use super::status::{ServiceStatus, State};
use super::supervisor::{self, Ctx, Handle, StopReason};
use crate::controller::{self, ControllerStatus, ItemState, Target, Wake};
use keel_config::model::{Program, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub enum ServicesEvent {
    /// A supervisor's state changed.
    Changed,
    /// A process that outlived its stop (uninterruptible sleep) finally went: its name is free again.
    Finished(String),
    /// Stop every service (reverse dependency order) and start nothing any more; answers when done.
    StopAll(oneshot::Sender<()>),
}

/// What the services kind sees: the definitions its supervisors run, the names whose old process has not gone
/// yet, and each service's state.
#[derive(Debug, Clone, Default)]
pub struct ServicesObserved {
    pub running: BTreeMap<String, Arc<Service>>,
    pub lingering: BTreeSet<String>,
    pub states: BTreeMap<String, ServiceStatus>,
}

/// One pass's work: the plan against what runs (stops in layers, then starts).
#[derive(Debug)]
pub struct Converge {
    pub plan: plan::Plan,
    pub desired: Vec<Service>,
}

impl std::fmt::Display for Converge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.plan;
        write!(
            f,
            "op=converge start={} stop={} changed={}",
            list(&mut p.start.iter().filter(|n| !p.changed.contains(*n))),
            list(&mut p.removed.iter()),
            list(&mut p.changed.iter())
        )
    }
}

fn list(names: &mut dyn Iterator<Item = &String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

fn item_state(s: Option<&ServiceStatus>) -> ItemState {
    let why = |s: &ServiceStatus| s.reason.clone().unwrap_or_else(|| s.state.to_string());
    match s {
        None => ItemState::Waiting("starting".into()),
        Some(s) => match s.state {
            State::Running | State::Stopped => ItemState::Converged,
            State::CrashLoop | State::Failed => ItemState::Failed(format!("{}: {}", s.state, why(s))),
            _ => ItemState::Waiting(format!("{}: {}", s.state, why(s))),
        },
    }
}

/// Why a service's process is still there after its stop.
const LINGERING: &str = "its process did not exit after SIGKILL (uninterruptible sleep?)";

/// Pure: the config's services against what runs. A service whose previous process is still exiting waits for
/// it (nothing of that name starts before it is gone).
pub fn plan(desired: &[Service], o: &ServicesObserved) -> controller::Plan<Converge> {
    let mut out = controller::Plan::default();
    let mut p = plan::plan(desired, &o.running);
    let deferred: Vec<String> = p.start.iter().filter(|n| o.lingering.contains(*n)).cloned().collect();
    p.start.retain(|n| !o.lingering.contains(n));
    for s in desired {
        if deferred.contains(&s.name) {
            out.item(s.name.clone(), ItemState::Waiting("its previous instance is still exiting".into()));
        } else if !p.start.contains(&s.name) {
            out.item(s.name.clone(), item_state(o.states.get(&s.name)));
        }
    }
    // A dropped service whose process outlived SIGKILL still runs where the config says nothing should: the kind is
    // not converged until the kernel lets it go (the other kinds and services converge meanwhile).
    for name in o.lingering.iter().filter(|n| !desired.iter().any(|s| &s.name == *n)) {
        out.item(name.clone(), ItemState::Waiting(format!("dropped, but {LINGERING}")));
    }
    if !p.stop.is_empty() || !p.start.is_empty() {
        let names: Vec<String> = p.start.clone();
        out.op(names.join(","), Converge { plan: p, desired: desired.to_vec() });
    }
    out
}

pub struct Manager {
    ctx: Arc<Ctx>,
    running: BTreeMap<String, Handle>,
    /// Services asked to stop whose process outlived its stop timeout and SIGKILL's grace (uninterruptible
    /// sleep): their supervisors keep waiting; nothing of that name starts until they are done.
    lingering: BTreeSet<String>,
    events: mpsc::Sender<ServicesEvent>,
    /// The images the last applied config named (`None` before the first): when one is no longer named, or at
    /// the first config (an earlier boot may have pulled images no config names now), the store is collected.
    images: Option<BTreeSet<String>>,
    /// When the current config reached the services: each new definition's first start reports its time from here.
    applied: (Option<u64>, tokio::time::Instant),
}

impl Manager {
    pub fn new(ctx: Arc<Ctx>, events: mpsc::Sender<ServicesEvent>) -> Manager {
        Manager {
            ctx,
            running: BTreeMap::new(),
            lingering: BTreeSet::new(),
            events,
            images: None,
            applied: (None, tokio::time::Instant::now()),
        }
    }

    async fn converge(&mut self, generation: u64, c: Converge) {
        let Converge { plan, desired } = c;
        log::info!(
            "services.plan generation={generation} start={} stop={} changed={} unchanged={}",
            list(&mut plan.start.iter().filter(|n| !plan.changed.contains(*n))),
            list(&mut plan.removed.iter()),
            list(&mut plan.changed.iter()),
            list(&mut plan.unchanged.iter()),
        );
        for layer in &plan.stop {
            let reason =
                |name: &str| if plan.changed.contains(name) { StopReason::Changed } else { StopReason::Removed };
            self.stop_layer(layer, reason).await;
        }
        // Every service the config no longer has leaves the status, unless its process is still going.
        let lingering = self.lingering.clone();
        self.ctx.status.send_modify(|s| {
            s.services.retain(|name, _| desired.iter().any(|d| &d.name == name) || lingering.contains(name));
        });
        for name in &plan.start {
            let Some(def) = desired.iter().find(|s| &s.name == name) else { continue };
            let first = if def.after.is_empty() { State::Starting } else { State::Blocked };
            self.ctx.status.send_modify(|s| {
                s.services.insert(name.clone(), ServiceStatus::new(first));
            });
            let handle = supervisor::start(self.ctx.clone(), Arc::new(def.clone()), self.applied.1);
            self.running.insert(name.clone(), handle);
        }
    }

    /// After a config that no longer names an image some earlier one did (its services are stopped by now):
    /// removes from the store what the images still named do not need.
    fn collect_images(&mut self, services: &[Service]) {
        let named: BTreeSet<String> = services
            .iter()
            .filter_map(|s| match &s.program {
                Program::Image(i) => Some(i.reference.clone()),
                _ => None,
            })
            .collect();
        let dropped = self.images.as_ref().map(|before| before.difference(&named).count());
        let keep: Vec<keel_oci::Reference> = named.iter().filter_map(|r| keel_oci::Reference::parse(r).ok()).collect();
        self.images = Some(named);
        if dropped == Some(0) {
            return;
        }
        let dropped = dropped.map_or("first-config".to_string(), |n| n.to_string());
        log::info!("services.image_gc dropped={dropped} kept={}", keep.len());
        tokio::spawn(async move { crate::oci::gc(&keep).await });
    }

    /// Stops the services of one layer together and waits for each at most its stop bound; one that outlives
    /// it is reported and left to its supervisor, and the manager goes on.
    async fn stop_layer(&mut self, layer: &[String], reason: impl Fn(&str) -> StopReason) {
        let handles: Vec<Handle> = layer.iter().filter_map(|name| self.running.remove(name)).collect();
        for h in &handles {
            h.request_stop(reason(&h.def.name));
        }
        let started = tokio::time::Instant::now();
        for h in handles {
            let name = h.def.name.clone();
            let limit = h.stop_bound().saturating_sub(started.elapsed());
            if let Err(task) = h.join_within(limit).await {
                log::error!(
                    "services.stop_unfinished name={name} after_s={} (its supervisor keeps waiting)",
                    started.elapsed().as_secs()
                );
                self.lingering.insert(name.clone());
                let finished = self.events.clone();
                tokio::spawn(async move {
                    let _ = task.await;
                    let _ = finished.send(ServicesEvent::Finished(name)).await;
                });
            }
        }
    }

    async fn stop_all(&mut self) {
        let defs: Vec<Arc<Service>> = self.running.values().map(|h| h.def.clone()).collect();
        let refs: Vec<&Service> = defs.iter().map(|d| &**d).collect();
        let layers = plan::stop_layers(&refs);
        log::info!("services.stop_all services={} layers={}", refs.len(), layers.len());
        for layer in &layers {
            self.stop_layer(layer, |_| StopReason::Shutdown).await;
        }
    }
}

impl controller::Controller for Manager {
    const KIND: crate::registry::Kind = crate::registry::Kind::Services;
    const AREA: &'static str = "services";
    /// The supervisors report every change as an event; the resync is a safety net.
    const RESYNC: Duration = Duration::from_secs(60);
    const POLL: Duration = Duration::from_secs(5);

    type Desired = Vec<Service>;
    type Observed = ServicesObserved;
    type Op = Converge;
    type Event = ServicesEvent;

    async fn observe(&mut self, target: &Target<Vec<Service>>) -> Result<ServicesObserved, String> {
        if self.applied.0 != target.generation {
            self.applied = (target.generation, tokio::time::Instant::now());
        }
        Ok(ServicesObserved {
            running: self.running.iter().map(|(name, h)| (name.clone(), h.def.clone())).collect(),
            lingering: self.lingering.clone(),
            states: self.ctx.status.borrow().services.clone(),
        })
    }

    fn plan(desired: &Vec<Service>, observed: &ServicesObserved) -> controller::Plan<Converge> {
        plan(desired, observed)
    }

    async fn apply(&mut self, op: Converge, generation: Option<u64>) -> Result<(), String> {
        self.converge(generation.unwrap_or(0), op).await;
        Ok(())
    }

    async fn event(&mut self, event: ServicesEvent) -> Wake {
        match event {
            ServicesEvent::Changed => Wake::Now,
            ServicesEvent::Finished(name) => {
                log::info!("services.unstuck name={name}");
                self.lingering.remove(&name);
                Wake::Now
            }
            ServicesEvent::StopAll(done) => {
                self.stop_all().await;
                let _ = done.send(());
                Wake::Stop
            }
        }
    }

    /// Starting and stopping supervisors follows the config (their restarts are the supervisors' own).
    fn repairs(_op: &Converge) -> bool {
        false
    }

    fn passed(&mut self, target: &Target<Vec<Service>>, _status: &ControllerStatus) {
        // The generation whose stops and starts are done (storage unmounts a dropped volume after it).
        let lingering = self.lingering.clone();
        self.ctx.status.send_if_modified(|s| {
            let before = (s.generation, s.converged, s.services.len());
            s.services.retain(|name, _| target.desired.iter().any(|d| &d.name == name) || lingering.contains(name));
            s.generation = target.generation;
            s.settle();
            before != (s.generation, s.converged, s.services.len())
        });
        self.collect_images(&target.desired);
    }
}

/// Starts the services kind on the runner: returns where its desired services go, its status, and the sender of
/// its events (StopAll).
pub fn start(
    ctx: Arc<Ctx>,
) -> (controller::DesiredTx<Vec<Service>>, watch::Receiver<ControllerStatus>, mpsc::Sender<ServicesEvent>) {
    let (events, inbox) = mpsc::channel(64);
    let mut changes = ctx.status.subscribe();
    let changed = events.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            // A full inbox already holds a wake-up.
            let _ = changed.try_send(ServicesEvent::Changed);
        }
    });
    let (desired, status) = controller::runner::start_with(Manager::new(ctx, events.clone()), inbox);
    (desired, status, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_service::service;

    fn observed(running: &[Service], states: &[(&str, State)]) -> ServicesObserved {
        ServicesObserved {
            running: running.iter().map(|s| (s.name.clone(), Arc::new(s.clone()))).collect(),
            lingering: BTreeSet::new(),
            states: states.iter().map(|(n, st)| (n.to_string(), ServiceStatus::new(*st))).collect(),
        }
    }

    #[test]
    fn a_new_config_is_one_converge_and_states_are_items() {
        let (a, b) = (service("a", "/bin/a", &[]), service("b", "/bin/b", &[]));
        let p = plan(&[a.clone(), b.clone()], &observed(std::slice::from_ref(&a), &[("a", State::Running)]));
        assert_eq!(p.ops.len(), 1);
        assert_eq!(p.ops[0].1.to_string(), "op=converge start=b stop=- changed=-");
        assert_eq!(p.items, [("a".to_string(), ItemState::Converged)]);
        // Everything runs: nothing to do; a starting one waits, a crash-looping one has failed.
        let all = observed(&[a.clone(), b.clone()], &[("a", State::Running), ("b", State::Starting)]);
        let p = plan(&[a.clone(), b.clone()], &all);
        assert!(p.ops.is_empty());
        assert!(matches!(p.items[1].1, ItemState::Waiting(_)), "{:?}", p.items);
        let looping = observed(std::slice::from_ref(&a), &[("a", State::CrashLoop)]);
        assert!(matches!(plan(std::slice::from_ref(&a), &looping).items[0].1, ItemState::Failed(_)));
    }

    #[test]
    fn a_service_whose_old_process_lingers_waits_without_an_operation() {
        let a = service("a", "/bin/a", &[]);
        let mut o = observed(&[], &[]);
        o.lingering.insert("a".into());
        let p = plan(std::slice::from_ref(&a), &o);
        assert!(p.ops.is_empty(), "no converge that could not start it");
        assert!(matches!(p.items[0].1, ItemState::Waiting(_)));
    }

    #[test]
    fn a_dropped_service_whose_process_lingers_keeps_the_kind_unconverged() {
        let a = service("a", "/bin/a", &[]);
        let mut o = observed(std::slice::from_ref(&a), &[("a", State::Running)]);
        o.lingering.insert("gone".into());
        let p = plan(std::slice::from_ref(&a), &o);
        assert!(p.ops.is_empty(), "nothing to start or stop");
        assert_eq!(p.items[0], ("a".to_string(), ItemState::Converged), "the config's own services converge");
        assert!(
            matches!(&p.items[1], (n, ItemState::Waiting(r)) if n == "gone" && r.contains("SIGKILL")),
            "{:?}",
            p.items
        );
    }
}
