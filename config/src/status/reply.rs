//! The API's short replies, one type each, shared by the node (which serializes them) and keelctl (which reads
//! them). Fields are in alphabetical order: the bytes the node sent when these were built with `json!`.

use super::RolloutWaiting;
use serde::{Deserialize, Serialize};

/// A request the node could not take: bad JSON, no such endpoint, no credential, busy, no answer in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiError {
    pub detail: String,
    /// A short code: `bad-request`, `not-found`, `unauthenticated`, `forbidden`, `busy`, `deadline`, ...
    pub error: String,
}

/// A signed write (config, command, upgrade) refused by the node's rules; `reason` is a row of docs/api.md's
/// refusal table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Refused {
    /// Always false.
    pub accepted: bool,
    pub detail: String,
    pub reason: String,
}

/// `PUT /v1/config` accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigAccepted {
    /// Always true.
    pub accepted: bool,
    /// Whether the node converged on it before answering (it waits 30 s at most).
    pub converged: bool,
    pub generation: u64,
    /// Held for this node's rollout turn: nothing converges before `applies_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_rollout: Option<RolloutWaiting>,
}

/// `POST /v1/reboot` or `/v1/poweroff` accepted (202): the node acts once the reply is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandAccepted {
    /// Always true.
    pub accepted: bool,
    /// `reboot` or `poweroff`.
    pub action: String,
}

/// `PUT /v1/upgrade` accepted: the image is in the inactive slot, verified; the node reboots into its trial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradeAccepted {
    /// Always true.
    pub accepted: bool,
    pub bytes: u64,
    pub rebooting: bool,
    pub sha256: String,
    pub signer: String,
    pub slot: String,
}
