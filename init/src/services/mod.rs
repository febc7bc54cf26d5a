//! Services: the node's workloads, supervised by PID 1 with least privilege and converged from config.
//!
//! - Each `[[service]]` runs in its own cgroup (`/sys/fs/cgroup/keel.services/<name>`, with its memory, cpu and
//!   pids limits), as its uid/gid with no supplementary groups, with only the capabilities it lists (in all five
//!   sets; everything else dropped), its rlimits, and no_new_privs. All of it is computed before the fork; the child
//!   only makes raw system calls ([`caps::Privileges::enter`]). Children start only through the init's [`Reaper`].
//! - Restarts follow the service's policy with exponential backoff (1 s … 60 s), a crash-loop state after five short
//!   runs in a row, and a reset after a 30 s run. stdout/stderr go line by line to the log ring and the console.
//! - A new config is planned against what runs ([`plan`]): a changed definition restarts that service only, a
//!   removed one is stopped (stop signal, stop timeout, SIGKILL), unchanged ones are not touched; starts wait for
//!   `after` (network, volumes, other services). [`ServicesHandle::stop_all`] stops everything in reverse
//!   dependency order at shutdown.
//! - Isolated by default: each service gets its own mount namespace without Keel's records, block devices or
//!   writable kernel knobs ([`sandbox`]), the default seccomp filter ([`seccomp`]), runs as nobody unless the
//!   config names a uid, and cannot signal PID 1 ([`init_uid`]). Devices and writable paths are granted by name.
//! - Artifacts are fetched by URL into a content-addressed store and run only after their SHA-256 matched.
//! - Image services: the image is pulled by digest first (status `pulling N%`; a failure's code is the reason,
//!   retried with the same backoff), then runs in new mount, PID, IPC and UTS namespaces on the image's
//!   read-only root ([`namespaced`], [`container`]) with the same privileges, limits and logs as any service.
//!   Images no config names any more are garbage-collected.

pub mod artifact;
pub mod backoff;
pub mod caps;
pub mod cgroup;
pub mod container;
pub mod deps;
pub mod image;
pub mod init_uid;
mod manager;
pub mod namespaced;
pub mod output;
pub mod plan;
pub mod sandbox;
pub mod seccomp;
pub mod spawn;
pub mod status;
mod supervisor;

#[cfg(test)]
mod root_container_tests;
#[cfg(test)]
mod root_harness;
#[cfg(test)]
mod root_isolation_tests;
#[cfg(test)]
mod root_stuck_tests;
#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod test_service;

pub use backoff::Timing;
pub use status::ServicesStatus;
#[allow(unused_imports)] // read by the node API
pub use status::{ServiceStatus, State};

use crate::controller::{ControllerStatus, DesiredTx};
use crate::reaper::Reaper;
use keel_config::model::Service;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Where services live on the node; tests point these at throwaway places.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cgroup2 mount.
    pub cgroup_root: PathBuf,
    /// The services' parent group under it.
    pub cgroup_group: PathBuf,
    /// The artifact store.
    pub artifacts: PathBuf,
    /// Where image services' per-start stage directories are made.
    pub containers: PathBuf,
    pub timing: Timing,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cgroup_root: "/sys/fs/cgroup".into(),
            cgroup_group: "keel.services".into(),
            artifacts: artifact::STORE.into(),
            containers: container::STAGE_BASE.into(),
            timing: Timing::default(),
        }
    }
}

/// What the rest of the init holds to reach the services kind.
#[derive(Clone)]
pub struct ServicesHandle {
    events: mpsc::Sender<manager::ServicesEvent>,
    /// Where the config task sends each accepted config's services.
    pub desired: DesiredTx<Vec<Service>>,
    /// The kind's status on the runner (what the registry reads).
    pub controller: watch::Receiver<ControllerStatus>,
}

impl ServicesHandle {
    /// Stops every service, dependents before what they start after, each with its stop signal and then SIGKILL
    /// after its stop timeout; nothing is started or restarted afterwards. Returns when all are stopped.
    pub async fn stop_all(&self) {
        let (done, wait) = oneshot::channel();
        if self.events.send(manager::ServicesEvent::StopAll(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Starts the services kind with the node's defaults.
/// `deps`: the status `after` is read from (the network's readiness, the volumes).
pub fn start(reaper: Reaper, deps: deps::Deps) -> (ServicesHandle, watch::Receiver<ServicesStatus>) {
    start_with(Options::default(), reaper, deps)
}

pub fn start_with(
    options: Options,
    reaper: Reaper,
    deps: deps::Deps,
) -> (ServicesHandle, watch::Receiver<ServicesStatus>) {
    let (status, status_rx) = watch::channel(ServicesStatus::default());
    let ctx = Arc::new(supervisor::Ctx {
        reaper,
        cgroups: cgroup::Cgroups::new(options.cgroup_root, options.cgroup_group),
        artifacts: artifact::Store::new(options.artifacts),
        containers: options.containers,
        timing: options.timing,
        last_cap: caps::last_cap(),
        status,
        deps,
    });
    let (desired, controller, events) = manager::start(ctx);
    (ServicesHandle { events, desired, controller }, status_rx)
}

/// A `bool` that follows `source` through `test` (e.g. "the network is ready" from the network's status).
pub fn flag<T: Send + Sync + 'static>(mut source: watch::Receiver<T>, test: fn(&T) -> bool) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(test(&source.borrow_and_update()));
    crate::spawn_apart(move || async move {
        while source.changed().await.is_ok() {
            let now = test(&source.borrow_and_update());
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
        }
    });
    rx
}
