//! The status registry: every controller publishes its typed status on its own `watch` channel, and this is the
//! one place that holds them all and says what "converged to generation N" means for each kind. Dependencies
//! between kinds read it (a service waits for its volumes and the network; a volume is unmounted once the
//! services of its config stopped); the config task waits on it to report `config.converged`; the upgrade trial
//! waits for that.

use crate::controller::ControllerStatus;
use keel_config::status::{ConvergenceState, KindConvergence};
use std::fmt;
use tokio::sync::watch;

/// The kinds of resource the node converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Network,
    Sysctl,
    Files,
    Storage,
    Services,
    Logs,
    /// The image the config's `[upgrade]` names; not part of "converged" (a download never holds a config).
    Upgrade,
    /// The clock (SNTP servers); not part of "converged" (a config never waits for a time server).
    Time,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Network => "network",
            Kind::Sysctl => "sysctl",
            Kind::Files => "files",
            Kind::Storage => "storage",
            Kind::Services => "services",
            Kind::Logs => "logs",
            Kind::Upgrade => "upgrade",
            Kind::Time => "time",
        })
    }
}

/// Where one kind stands against a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Convergence {
    /// Not there yet (working on it, or an older generation).
    Pending,
    /// Every item of the generation is as desired.
    Converged,
    /// Done trying for now and not converged: the items that are not, with why (retried on resync or when
    /// what they wait for changes).
    Stuck(Vec<String>),
}

/// Any kind on the one runner (`controller::runner`): converged when its last pass for `generation` found
/// nothing to do and every item as desired; stuck when nothing is on its way any more and something failed.
pub fn controller(status: &ControllerStatus, generation: u64) -> Convergence {
    if status.generation != Some(generation) {
        Convergence::Pending
    } else if status.converged {
        Convergence::Converged
    } else if status.waiting() || status.runs == 0 {
        Convergence::Pending
    } else {
        Convergence::Stuck(status.problems())
    }
}

/// Every controller's status channel.
#[derive(Clone)]
pub struct Registry {
    /// None: no network controller (netlink unavailable); the network then never blocks convergence.
    pub net: Option<watch::Receiver<ControllerStatus>>,
    pub sysctl: watch::Receiver<ControllerStatus>,
    pub files: watch::Receiver<ControllerStatus>,
    pub storage: watch::Receiver<ControllerStatus>,
    pub services: watch::Receiver<ControllerStatus>,
    pub logs: watch::Receiver<ControllerStatus>,
}

impl Registry {
    /// Each kind against `generation`, now.
    pub fn convergence(&self, generation: u64) -> Vec<(Kind, Convergence)> {
        let mut all = Vec::with_capacity(6);
        if let Some(net) = &self.net {
            all.push((Kind::Network, controller(&net.borrow(), generation)));
        }
        all.push((Kind::Sysctl, controller(&self.sysctl.borrow(), generation)));
        all.push((Kind::Files, controller(&self.files.borrow(), generation)));
        all.push((Kind::Storage, controller(&self.storage.borrow(), generation)));
        all.push((Kind::Services, controller(&self.services.borrow(), generation)));
        all.push((Kind::Logs, controller(&self.logs.borrow(), generation)));
        all
    }

    /// Each kind against `generation` as the node's status shows it (the type keelctl reads).
    pub fn report(&self, generation: u64) -> Vec<KindConvergence> {
        self.convergence(generation)
            .into_iter()
            .map(|(kind, c)| {
                let (state, problems) = match c {
                    Convergence::Converged => (ConvergenceState::Converged, Vec::new()),
                    Convergence::Pending => (ConvergenceState::Pending, Vec::new()),
                    Convergence::Stuck(p) => (ConvergenceState::Stuck, p),
                };
                KindConvergence { kind: kind.to_string(), state, problems }
            })
            .collect()
    }

    /// Waits until every kind converged `generation`. Kinds that get stuck on the way are logged once each
    /// (`config.not_converged generation=… controller=… items=…`) and waited for further: they may recover.
    pub async fn converged(&self, generation: u64) {
        let mut me = self.clone();
        let mut reported: Vec<Kind> = Vec::new();
        loop {
            let now = me.convergence(generation);
            if now.iter().all(|(_, c)| *c == Convergence::Converged) {
                return;
            }
            for (kind, c) in &now {
                if let Convergence::Stuck(problems) = c {
                    if !reported.contains(kind) {
                        reported.push(*kind);
                        log::warn!(
                            "config.not_converged generation={generation} controller={kind} items={}",
                            crate::logging::q(&problems.join("; "))
                        );
                    }
                }
            }
            if !me.changed().await {
                // A controller is gone: its status will never move again.
                return std::future::pending().await;
            }
        }
    }

    /// Resolves when any status changed; false when a controller is gone.
    async fn changed(&mut self) -> bool {
        let net = async {
            match &mut self.net {
                Some(n) => n.changed().await,
                None => std::future::pending().await,
            }
        };
        let r = tokio::select! {
            r = net => r,
            r = self.sysctl.changed() => r,
            r = self.files.changed() => r,
            r = self.storage.changed() => r,
            r = self.services.changed() => r,
            r = self.logs.changed() => r,
        };
        r.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ItemState;
    use std::time::Duration;

    #[test]
    fn each_kind_says_converged_the_same_way() {
        let mut c = ControllerStatus { generation: Some(2), converged: true, runs: 1, ..Default::default() };
        assert_eq!(controller(&c, 3), Convergence::Pending, "an older generation");
        assert_eq!(controller(&c, 2), Convergence::Converged);
        c.converged = false;
        c.items = vec![
            ("net.x".into(), ItemState::Failed("no such key".into())),
            ("net.y".into(), ItemState::Waiting("a disk".into())),
        ];
        assert_eq!(controller(&c, 2), Convergence::Pending, "something is still on its way");
        c.items.pop();
        assert_eq!(controller(&c, 2), Convergence::Stuck(vec!["net.x: failed: no such key".into()]));
        c.items.clear();
        c.error = Some("netlink: closed".into());
        assert_eq!(controller(&c, 2), Convergence::Stuck(vec!["observe: netlink: closed".into()]));
    }

    #[tokio::test(start_paused = true)]
    async fn converged_waits_for_every_kind() {
        let done = ControllerStatus { generation: Some(1), converged: true, runs: 1, ..Default::default() };
        let (sysctl_tx, sysctl) = watch::channel(done.clone());
        let (_files_tx, files) = watch::channel(done.clone());
        let (_storage_tx, storage) = watch::channel(done.clone());
        let (services_tx, services) = watch::channel(done.clone());
        let (logs_tx, logs) = watch::channel(done);
        let registry = Registry { net: None, sysctl, files, storage, services, logs };
        let mut waiting = tokio::spawn({
            let r = registry.clone();
            async move { r.converged(1).await }
        });
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut waiting).await.is_ok(), "all converged already");
        // Generation 2: sysctl converges, the services not yet.
        let waiting = tokio::spawn({
            let r = registry.clone();
            async move { r.converged(2).await }
        });
        sysctl_tx.send_modify(|s| s.generation = Some(2));
        logs_tx.send_modify(|s| s.generation = Some(2));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());
        services_tx.send_modify(|s| s.generation = Some(2));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "files and storage are still at generation 1");
        assert_eq!(
            registry
                .convergence(2)
                .iter()
                .filter(|(_, c)| *c == Convergence::Pending)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>(),
            [Kind::Files, Kind::Storage]
        );
    }
}
