//! Placeholder for part 1's `init::oci` (branch `oci`), with its interface, until it is merged: a pull here
//! always fails with a clear reason. Removed when the real module lands.

use keel_oci::{ImageConfig, Reference};
use std::path::PathBuf;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    pub reference: Reference,
    pub plain_http: bool,
    pub token: Option<String>,
    pub ca_pem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub manifest_digest: String,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub done: u64,
    pub total: u64,
}

impl PullProgress {
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        ((self.done.min(self.total) as u128 * 100) / self.total as u128) as u8
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    #[error("network: {0}")]
    Network(String),
}

impl PullError {
    pub fn code(&self) -> &'static str {
        "network"
    }
}

pub async fn ensure(spec: &PullSpec, _progress: &watch::Sender<PullProgress>) -> Result<Pulled, PullError> {
    Err(PullError::Network(format!("{}: this build has no OCI pull (branch oci not merged)", spec.reference)))
}

pub async fn gc(_keep: &[Reference]) {}
