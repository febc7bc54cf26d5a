//! `storage` of `/v1/status`: the state volume (or why /var is tmpfs), the config's volumes and the disks seen.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageStatus {
    pub generation: Option<u64>,
    pub converged: bool,
    pub state: Option<StateVolumeStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub disks: Vec<DiskStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateVolumeStatus {
    /// `volume` or `tmpfs`.
    pub mode: String,
    pub persistent: bool,
    pub reason: Option<String>,
    pub volume: Option<VolumeStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeStatus {
    pub name: String,
    pub selector: String,
    /// `waiting`, `blocked`, `formatting`, `mounted`, `failed`.
    pub phase: String,
    pub reason: Option<String>,
    pub device: Option<String>,
    pub size: Option<u64>,
    pub fs: Option<String>,
    pub mount: String,
    pub free: Option<u64>,
    pub formatted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskStatus {
    pub name: String,
    pub device: String,
    pub size: u64,
    pub transport: Option<String>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub path: Option<String>,
    pub removable: bool,
    pub read_only: bool,
    pub partitions: Vec<String>,
    /// Every selector (`serial:…`, `wwn:…`, …) that picks this disk.
    pub selectors: Vec<String>,
}
