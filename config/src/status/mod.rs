//! The status document `GET /v1/status` serves, as one set of types on both sides: the node builds and serializes
//! a [`NodeStatus`], keelctl deserializes the same type. Every struct takes `#[serde(default)]` so a newer keelctl
//! reads an older node that lacks a field, and none denies unknown fields so an older keelctl reads a newer node.
//! `Option` fields serialize as `null` (the document has always carried them so). `GET /v1/config`
//! ([`RunningConfig`]) and the API's short replies ([`ConfigAccepted`], [`Refused`], [`ApiError`], ...) are typed
//! the same way.

mod config;
mod convergence;
mod network;
mod node;
mod reply;
mod running;
mod services;
mod storage;

pub use config::{ConfigStatus, PullStatus, RejectionStatus, RolloutWaiting};
pub use convergence::{ConvergenceState, KindConvergence};
pub use network::{AddressStatus, FailedOp, LeaseStatus, LinkStatus, NetworkStatus, PendingItem, RouteStatus};
pub use node::{
    ApiFree, ApiStatus, BootStatus, ControllerItem, ControllerStatus, InstallStatus, LastUpgrade, RollbackStatus,
    TimeStatus, UpgradesSupport,
};
pub use reply::{ApiError, CommandAccepted, ConfigAccepted, Refused, UpgradeAccepted};
pub use running::{
    program_text, RunningBody, RunningConfig, RunningFile, RunningForward, RunningLink, RunningLog, RunningNetwork,
    RunningNode, RunningRoute, RunningService, RunningStorage, RunningVolume, REDACTED,
};
pub use services::{LogDestination, LogsStatus, ServiceStatus, ServicesStatus};
pub use storage::{DiskStatus, StateVolumeStatus, StorageStatus, VolumeStatus};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole of `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    pub version: String,
    pub machine_id: String,
    pub hostname: Option<String>,
    pub uptime_s: f64,
    pub boot: BootStatus,
    pub api: ApiStatus,
    pub config: ConfigStatus,
    /// Per area (`sysctl`, `files`, `logs`, `upgrade`, `network` when the node runs one).
    pub controllers: BTreeMap<String, ControllerStatus>,
    /// None when the node does not manage the network.
    pub network: Option<NetworkStatus>,
    pub time: TimeStatus,
    pub services: ServicesStatus,
    pub storage: StorageStatus,
    /// None when the config names no install disk.
    pub install: Option<InstallStatus>,
    pub logs: LogsStatus,
    pub rollback: RollbackStatus,
    pub rss_kib: u64,
}

#[cfg(test)]
mod tests;
