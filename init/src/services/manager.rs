//! The services task: applies each accepted config's services by the plan (stop removed and changed ones,
//! dependents first; start new and changed ones, dependencies first; leave the rest alone), and at shutdown stops
//! everything in reverse dependency order.

use super::plan;
use super::status::{ServiceStatus, State};
use super::supervisor::{self, Ctx, Handle, StopReason};
use keel_config::model::{Program, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

pub enum Command {
    /// Stop every service (reverse dependency order) and start nothing any more; answers when done.
    StopAll(oneshot::Sender<()>),
}

pub struct Manager {
    ctx: Arc<Ctx>,
    running: BTreeMap<String, Handle>,
    /// Services asked to stop whose process outlived its stop timeout and SIGKILL's grace (uninterruptible
    /// sleep): their supervisors keep waiting; nothing of that name starts until they are done.
    lingering: BTreeSet<String>,
    finished_tx: mpsc::UnboundedSender<String>,
    finished: mpsc::UnboundedReceiver<String>,
    shutting_down: bool,
    /// The images the last applied config named (`None` before the first): when one is no longer named, or at
    /// the first config (an earlier boot may have pulled images no config names now), the store is collected.
    images: Option<BTreeSet<String>>,
}

impl Manager {
    pub fn new(ctx: Arc<Ctx>) -> Manager {
        let (finished_tx, finished) = mpsc::unbounded_channel();
        Manager {
            ctx,
            running: BTreeMap::new(),
            lingering: BTreeSet::new(),
            finished_tx,
            finished,
            shutting_down: false,
            images: None,
        }
    }

    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Option<(u64, Vec<Service>)>>,
        mut inbox: mpsc::Receiver<Command>,
    ) {
        let (mut desired_open, mut inbox_open) = (true, true);
        loop {
            if desired_open && !self.shutting_down {
                let current = desired.borrow_and_update().clone();
                if let Some((generation, services)) = current {
                    self.converge(generation, &services).await;
                }
            }
            tokio::select! {
                changed = desired.changed(), if desired_open => desired_open = changed.is_ok(),
                command = inbox.recv(), if inbox_open => match command {
                    Some(Command::StopAll(done)) => {
                        self.shutting_down = true;
                        self.stop_all().await;
                        let _ = done.send(());
                    }
                    None => inbox_open = false,
                },
                // A stuck process finally went: its name is free again (converged on the next pass).
                Some(name) = self.finished.recv() => {
                    log::info!("services.unstuck name={name}");
                    self.lingering.remove(&name);
                }
                // Nothing can reach this task any more; the services keep running under their supervisors.
                _ = std::future::pending::<()>(), if !desired_open && !inbox_open => {}
            }
        }
    }

    async fn converge(&mut self, generation: u64, services: &[Service]) {
        // When this config reached the services: each new definition's first start reports its time from here.
        let applied = tokio::time::Instant::now();
        let running: BTreeMap<String, Arc<Service>> =
            self.running.iter().map(|(name, h)| (name.clone(), h.def.clone())).collect();
        let plan = plan::plan(services, &running);
        if !plan.is_empty() {
            let list = |names: &mut dyn Iterator<Item = &String>| {
                let v: Vec<&str> = names.map(String::as_str).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(",")
                }
            };
            log::info!(
                "services.plan generation={generation} start={} stop={} changed={} unchanged={}",
                list(&mut plan.start.iter().filter(|n| !plan.changed.contains(*n))),
                list(&mut plan.removed.iter()),
                list(&mut plan.changed.iter()),
                list(&mut plan.unchanged.iter()),
            );
        }
        for layer in &plan.stop {
            let reason =
                |name: &str| if plan.changed.contains(name) { StopReason::Changed } else { StopReason::Removed };
            self.stop_layer(layer, reason).await;
        }
        // Every service the config no longer has leaves the status, unless its process is still going.
        let lingering = self.lingering.clone();
        self.ctx.status.send_modify(|s| {
            s.services.retain(|name, _| services.iter().any(|d| &d.name == name) || lingering.contains(name));
        });
        for name in &plan.start {
            let Some(def) = services.iter().find(|s| &s.name == name) else { continue };
            if self.lingering.contains(name) {
                // Its old process is still there (its status says so): start the new one once it is gone.
                log::warn!("services.start_deferred name={name} reason=previous-instance-still-exiting");
                continue;
            }
            let first = if def.after.is_empty() { State::Starting } else { State::Blocked };
            self.ctx.status.send_modify(|s| {
                s.services.insert(name.clone(), ServiceStatus::new(first));
            });
            self.running.insert(name.clone(), supervisor::start(self.ctx.clone(), Arc::new(def.clone()), applied));
        }
        self.ctx.status.send_modify(|s| {
            s.generation = Some(generation);
            s.settle();
        });
        self.collect_images(services);
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
                let finished = self.finished_tx.clone();
                tokio::spawn(async move {
                    let _ = task.await;
                    let _ = finished.send(name);
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
