//! What the node can see of its services: one [`ServiceStatus`] per service of the applied config, published on
//! a `watch` channel as [`ServicesStatus`].

use crate::reaper::Exit;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for what it starts `after` (see `reason`).
    Blocked,
    /// Fetching its artifact, preparing its cgroup, spawning.
    Starting,
    /// Pulling its OCI image (`pull_percent` says how far).
    Pulling,
    Running,
    /// Sent its stop signal; SIGKILL follows after its stop timeout.
    Stopping,
    /// Ended and not restarted: stopped on purpose, or exited as its restart policy allows.
    Stopped,
    /// Waiting to restart after an exit or a failed start.
    Backoff,
    /// Like backoff, after too many short runs in a row: the delay is at its cap.
    CrashLoop,
    /// Ended and will not be restarted (restart = "never" after a failure).
    Failed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Blocked => "blocked",
            State::Starting => "starting",
            State::Pulling => "pulling",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Backoff => "backoff",
            State::CrashLoop => "crash-loop",
            State::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub state: State,
    pub pid: Option<i32>,
    /// Starts after the first one, for this definition of the service.
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// Time since boot when it entered `state`.
    pub since: Duration,
    /// SHA-256 of the program it runs, when that is an artifact.
    pub artifact: Option<String>,
    /// Why it is blocked, backing off or failed.
    pub reason: Option<String>,
    /// `sha256:<hex>` of the image manifest it runs, when it is an image service that was pulled.
    pub image: Option<String>,
    /// While pulling: the share of the image's bytes in the store, 0..=100.
    pub pull_percent: Option<u8>,
}

impl ServiceStatus {
    pub fn new(state: State) -> ServiceStatus {
        ServiceStatus {
            state,
            pid: None,
            restarts: 0,
            last_exit: None,
            since: crate::clock::uptime(),
            artifact: None,
            reason: None,
            image: None,
            pull_percent: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesStatus {
    /// The config generation whose services these are.
    pub generation: Option<u64>,
    /// Every service of `generation` is running, or ended as its restart policy allows.
    pub converged: bool,
    pub services: BTreeMap<String, ServiceStatus>,
}

impl ServicesStatus {
    /// Recomputes `converged` after a change.
    pub fn settle(&mut self) {
        self.converged = self.generation.is_some()
            && self.services.values().all(|s| matches!(s.state, State::Running | State::Stopped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converged_means_every_service_settled() {
        let mut s = ServicesStatus::default();
        s.settle();
        assert!(!s.converged, "no config yet");
        s.generation = Some(3);
        s.settle();
        assert!(s.converged, "a config without services is converged");
        s.services.insert("a".into(), ServiceStatus::new(State::Running));
        s.services.insert("b".into(), ServiceStatus::new(State::Blocked));
        s.settle();
        assert!(!s.converged);
        s.services.insert("b".into(), ServiceStatus::new(State::Stopped));
        s.settle();
        assert!(s.converged);
        assert_eq!(State::CrashLoop.to_string(), "crash-loop");
    }
}
