//! The node-wide sections of `/v1/status`: boot (slots, Secure Boot, timings), API, controllers, time, install
//! and the rollback floor.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootStatus {
    pub ready_uptime_ms: f64,
    pub init_ms: f64,
    /// The running slot (`A`, `B`), None when the image is not on A/B slots.
    pub slot: Option<String>,
    /// The slot that waits for its trial boot.
    pub pending_slot: Option<String>,
    pub last_upgrade: Option<LastUpgrade>,
    pub upgrades: UpgradesSupport,
    pub secure_boot: bool,
    pub uefi: bool,
    pub setup_mode: bool,
    pub signer: Option<String>,
    pub signer_sha256: Option<String>,
    pub signer_enrolled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastUpgrade {
    /// `committed` or `rolled-back`.
    pub result: String,
    pub slot: String,
    pub sha256: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradesSupport {
    pub supported: bool,
    /// Why not (present only when unsupported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Default for UpgradesSupport {
    fn default() -> Self {
        UpgradesSupport { supported: true, reason: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiStatus {
    pub fingerprint: String,
    pub port: u16,
    pub free: ApiFree,
}

/// Free places of the API's admission gates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFree {
    pub unauthenticated: usize,
    pub readers: usize,
    pub writers: usize,
    pub log_followers: usize,
}

/// One controller (`controllers.<area>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerStatus {
    pub converged: bool,
    pub generation: Option<u64>,
    pub items: Vec<ControllerItem>,
    pub error: Option<String>,
    pub writes: u64,
    pub repairs: u64,
    pub runs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerItem {
    pub name: String,
    /// `converged`, `waiting`, `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeStatus {
    pub synced: bool,
    /// Where the clock came from (`rtc`, `ntp`, …).
    pub source: String,
    pub server: Option<String>,
    pub offset_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstallStatus {
    pub generation: Option<u64>,
    /// waiting, refused, installing, failed, installed, rebooting.
    pub phase: String,
    pub disk: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub failures: u32,
}

/// The rollback floor (`rollback`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackStatus {
    pub generation: Option<u64>,
    pub image: Option<String>,
    pub time: u64,
    pub build_time: u64,
    pub nonces: usize,
    pub kept_in: Vec<String>,
    /// `volume`, `none`, `unavailable`.
    pub state: String,
    pub errors: Vec<String>,
}
