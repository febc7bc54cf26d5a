//! `config` of `/v1/status`: the applied generation, its convergence, the last rejection, rollout and pull.

use super::KindConvergence;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigStatus {
    /// The applied generation (None: none applied yet).
    pub generation: Option<u64>,
    pub source: Option<String>,
    pub signer: Option<String>,
    pub fingerprint: Option<String>,
    /// Unix seconds.
    pub accepted_at: Option<u64>,
    pub converged_generation: Option<u64>,
    /// Each kind against the applied generation.
    pub convergence: Option<Vec<KindConvergence>>,
    pub last_rejection: Option<RejectionStatus>,
    /// A verified newer generation held until this node's rollout turn; the node keeps running `generation`.
    pub rollout: Option<RolloutWaiting>,
    /// None when the node pulls no config.
    pub pull: Option<PullStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RejectionStatus {
    /// The refusal code (docs/api.md).
    pub reason: String,
    pub detail: String,
    pub source: String,
}

/// `config.rollout` and the PUT reply's `waiting_rollout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RolloutWaiting {
    /// Always `waiting-rollout`.
    pub state: String,
    pub generation: u64,
    /// RFC 3339.
    pub applies_at: String,
    pub applies_at_unix: i64,
    /// This node's place in the rollout window, 0..1.
    pub slot: f64,
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullStatus {
    pub url: String,
    pub polls: u64,
    /// Failures in a row (0: the last poll worked).
    pub failures: u32,
    pub last_error: Option<String>,
}
