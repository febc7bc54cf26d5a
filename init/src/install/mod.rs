//! Install to disk from a network boot (README, "Install to disk"). A signed config's `[install]` names a disk
//! (a storage selector) and the signed slot image to put on it. The controller: desired = that section;
//! observed = how this node booted and what the disk holds ([`run`]); a pure [`plan::decide`]; apply =
//! partition as `make disk` does, write the image to slot A ([`disk`]), format the state partition and carry
//! the node's identity, config and rollback floor onto it ([`carry`]), make "Keel A" first in `BootOrder`,
//! mark the install complete and reboot. Every step is logged `install.*`; its status is `/v1/status` `install`.

pub mod carry;
pub mod disk;
pub mod plan;
pub mod run;

use std::sync::Mutex;

pub use run::run;

/// Where the install stands, for the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The config generation whose `[install]` this is; None when the config has none.
    pub generation: Option<u64>,
    /// waiting, refused, installing, failed, installed, rebooting.
    pub phase: &'static str,
    pub disk: Option<String>,
    /// The refusal's code (refused) or the step that failed (failed).
    pub code: Option<String>,
    pub reason: Option<String>,
    /// Failed tries since the last success (retried with the backoff).
    pub failures: u32,
}

static STATUS: Mutex<Status> =
    Mutex::new(Status { generation: None, phase: "", disk: None, code: None, reason: None, failures: 0 });

pub fn status() -> Status {
    STATUS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn set(s: Status) {
    *STATUS.lock().unwrap_or_else(|p| p.into_inner()) = s;
}

/// The `install` field of `/v1/status`: None (null) when the config names no install disk.
pub fn install_status() -> Option<keel_config::status::InstallStatus> {
    let s = status();
    s.generation?;
    Some(keel_config::status::InstallStatus {
        generation: s.generation,
        phase: s.phase.into(),
        disk: s.disk,
        code: s.code,
        reason: s.reason,
        failures: s.failures,
    })
}
