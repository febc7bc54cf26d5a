//! The config tasks: one owns the pipeline (boot-time last-known-good or embedded default, then every submitted
//! config), one turns each accepted config into desired states for the controllers and reports when the node has
//! converged to it (network, sysctls, files, services and the storage volumes), and the sysctl, files and storage
//! controllers themselves.

use super::pipeline::{Applied, Mode, Pipeline, Rejection};
use super::store::{Signed, Store};
pub use super::submit::Submit;
use super::{apply, pull};
use crate::cmdline::Settings;
use crate::controller::{files::Files, runner, sysctl::Sysctl, ControllerStatus, Target};
use crate::net::controller::{NetHandle, NetStatus};
use crate::net::model::Desired;
use crate::reaper::Reaper;
use crate::registry::Registry;
use crate::services::{self, ServicesHandle, ServicesStatus};
use crate::storage::controller::StorageStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Where the image keeps its default config.
pub const DEFAULT_CONFIG: &str = "/etc/keel/default.toml";
/// The last-known-good config and the highest generation (on the state volume once there is one).
pub const STATE_DIR: &str = "/var/lib/keel/config";
const FILES_MANIFEST: &str = "/var/lib/keel/files.manifest";
/// The generation the node runs, for services to read (the demo shows it).
pub const GENERATION_FILE: &str = "/run/keel/generation";

/// What the rest of the init (status, API) can see of config.
#[derive(Clone)]
pub struct ConfigHandle {
    pub submit: mpsc::Sender<Submit>,
    pub applied: watch::Receiver<Option<Arc<Applied>>>,
    pub rejection: watch::Receiver<Option<Rejection>>,
    /// A verified config held until this node's rollout turn (`waiting-rollout`).
    pub waiting: super::pipeline::WaitingRx,
    /// The newest generation every controller converged to.
    pub converged: watch::Receiver<Option<u64>>,
    pub sysctl: watch::Receiver<ControllerStatus>,
    pub files: watch::Receiver<ControllerStatus>,
    pub services: ServicesHandle,
    pub services_status: watch::Receiver<ServicesStatus>,
    /// The `keel.config` pull: URL, consecutive failures and the last failure's reason.
    pub pull: watch::Receiver<pull::PullStatus>,
    /// The config's volumes (`[[storage.volume]]`).
    pub storage: watch::Receiver<StorageStatus>,
    /// Every controller's status, and what converged means for each.
    pub registry: Registry,
    /// The log collectors (`[[log.forward]]`).
    pub logs: watch::Receiver<crate::logfwd::LogFwdStatus>,
    /// The upgrade source (`[upgrade]`): not part of convergence, shown in the status.
    pub upgrade: watch::Receiver<ControllerStatus>,
}

fn read_embedded() -> Option<Signed> {
    let text = std::fs::read(DEFAULT_CONFIG).ok()?;
    let sig = std::fs::read(format!("{DEFAULT_CONFIG}.sig")).unwrap_or_default();
    Some(Signed { text, sig })
}

pub fn start(
    settings: &Settings,
    machine_id: String,
    boot_network: Desired,
    net: Option<NetHandle>,
    reaper: Reaper,
    power: mpsc::Sender<crate::power::Request>,
) -> ConfigHandle {
    let trust = super::trust::read();
    let (mut pipeline, applied, rejection) = Pipeline::new(trust, machine_id.clone(), Store::new(STATE_DIR));
    let (submit, mut inbox) = mpsc::channel::<Submit>(8);

    // The boot path: the last-known-good config at once, else the image's default.
    let store = Store::new(STATE_DIR);
    let booted = match store.last_good() {
        Some(signed) => pipeline.submit("state", &signed, Mode::Boot).is_ok(),
        None => false,
    };
    if !booted {
        match read_embedded() {
            Some(signed) => {
                let _ = pipeline.submit("image", &signed, Mode::Boot);
            }
            None => log::info!("config.none reason=\"no last-known-good and no default in the image\""),
        }
    }
    let waiting = pipeline.waiting();
    crate::spawn_apart(move || async move {
        loop {
            // A config held for its rollout turn wakes the task at its time (re-checked at least once a minute
            // against the wall clock); otherwise it sleeps until something is submitted.
            let job = match pipeline.next_wake() {
                Some(wait) => tokio::select! {
                    s = inbox.recv() => s.map(Job::Submit),
                    _ = tokio::time::sleep(wait) => Some(Job::Due),
                },
                None => inbox.recv().await.map(Job::Submit),
            };
            let Some(job) = job else { return };
            // Signature checks and the durable store (three fsyncs) run on a blocking thread, never on PID 1's
            // event loop; submissions stay in order, one at a time.
            let done = crate::fsutil::off_loop("config pipeline", move || {
                let (reply, result) = match job {
                    Job::Submit(s) => (s.reply, Some(pipeline.submit(&s.source, &s.signed, Mode::New))),
                    Job::Due => (None, pipeline.apply_due()),
                };
                (pipeline, reply, result)
            })
            .await;
            match done {
                Ok((p, reply, result)) => {
                    pipeline = p;
                    if let (Some(reply), Some(result)) = (reply, result) {
                        let _ = reply.send(result);
                    }
                }
                // Only a panic gets here, and the panic hook has taken the node down already.
                Err(e) => return log::error!("config.pipeline_stopped error={}", crate::logging::q(&e)),
            }
        }
    });

    let (sysctl_tx, _, sysctl_status) = runner::start(Sysctl::new("/proc/sys"));
    let (files_tx, _, files_status) = runner::start(Files::new(FILES_MANIFEST));

    let (converged_tx, converged) = watch::channel(None);
    let net_desired = net.as_ref().map(|n| n.desired.clone());
    let net_status = net.as_ref().map(|n| n.status.clone());
    let network_ready = match &net_status {
        Some(status) => services::flag(status.clone(), |s: &NetStatus| s.ready),
        None => watch::channel(false).1,
    };
    // The services read the volumes (`after = ["volume:…"]`); the storage controller reads the services (it
    // unmounts a dropped volume only after the services of that config stopped).
    let (storage_tx, storage) = watch::channel(StorageStatus::default());
    let deps = services::deps::Deps { network: network_ready.clone(), volumes: storage.clone() };
    let (services, services_status) = services::start(reaper.clone(), deps);
    let services_tx = services.desired.clone();
    let (volumes_tx, volumes) = crate::storage::controller::start(reaper, services_status.clone(), storage_tx);
    let logs = crate::logfwd::controller::start(machine_id.clone());
    let (upgrade_tx, upgrade) = crate::upgrade::source::start(network_ready.clone(), power);
    let registry = Registry {
        logs: logs.controller.clone(),
        net: net.as_ref().map(|n| n.controller.clone()),
        sysctl: sysctl_status.clone(),
        files: files_status.clone(),
        storage: volumes,
        services: services.controller.clone(),
    };
    let logs_desired = logs.desired.clone();
    let mut applied_rx = applied.clone();
    let handle_registry = registry.clone();
    crate::spawn_apart(move || async move {
        loop {
            let current = applied_rx.borrow_and_update().clone();
            if let Some(a) = current {
                let started = Instant::now();
                let generation = a.generation;
                if let Some(desired) = &net_desired {
                    desired.send_replace(Some(Target::new(generation, apply::network(&a.config, &boot_network))));
                }
                sysctl_tx.send_replace(Some(Target::new(generation, apply::sysctls(&a.config))));
                files_tx.send_replace(Some(Target::new(generation, apply::files(&a.config))));
                volumes_tx.send_replace(Some(Target::new(generation, apply::volumes(&a.config))));
                logs_desired.send_replace(Some(Target::new(generation, apply::log_forward(&a.config))));
                upgrade_tx.send_replace(Some(Target::new(generation, apply::upgrade(&a.config))));
                let shown = format!("{generation}\n");
                if let Err(e) =
                    crate::fsutil::write_atomic_off_loop(GENERATION_FILE.into(), shown.into_bytes(), 0o644).await
                {
                    log::warn!("config.generation_file_failed error={}", crate::logging::q(&e));
                }
                services_tx.send_replace(Some(Target::new(generation, a.config.services.clone())));
                if report_convergence(generation, started, &registry, applied_rx.clone()).await {
                    converged_tx.send_replace(Some(generation));
                }
            }
            if applied_rx.changed().await.is_err() {
                return;
            }
        }
    });

    let (pull_tx, pull) = watch::channel(pull::PullStatus::default());
    if let (Some(url), Some(n)) = (&settings.config_url, &net) {
        let interval = settings.config_interval;
        let (url, status, submit) = (url.clone(), n.status.clone(), submit.clone());
        crate::spawn_apart(move || pull::run(url, interval, machine_id, status, submit, pull_tx));
    }
    let (sysctl, files) = (sysctl_status, files_status);
    ConfigHandle {
        submit,
        applied,
        rejection,
        waiting,
        converged,
        sysctl,
        files,
        services,
        services_status,
        storage,
        pull,
        registry: handle_registry,
        logs: logs.status,
        upgrade,
    }
}

/// What the config task does next: run a submitted config, or look at the one held for its rollout turn.
enum Job {
    Submit(Submit),
    Due,
}

/// Waits until every controller has converged `generation` (or a newer config arrives) and logs it once.
async fn report_convergence(
    generation: u64,
    started: Instant,
    registry: &Registry,
    mut applied: watch::Receiver<Option<Arc<Applied>>>,
) -> bool {
    tokio::select! {
        _ = registry.converged(generation) => {
            let took = started.elapsed();
            log::info!(
                "config.converged generation={generation} ms={} rss_kib={}",
                crate::clock::ms(took),
                crate::procfs::self_rss_kib()
            );
            // Once a boot: where PID 1's memory is once it runs what its config asks (`make bench` prints it).
            static MEMORY: std::sync::Once = std::sync::Once::new();
            MEMORY.call_once(|| crate::procfs::log_memory("converged", log::Level::Info));
            crate::metrics::bump(&crate::metrics::CONFIG_CONVERGED);
            crate::metrics::CONFIG_CONVERGE_US.store(took.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
            true
        }
        _ = applied.changed() => false,
        _ = tokio::time::sleep(Duration::from_secs(120)) => {
            log::warn!("config.not_converged generation={generation} after_s=120 (see status for the items)");
            false
        }
    }
}
