//! `services` and `logs` of `/v1/status`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServicesStatus {
    pub generation: Option<u64>,
    pub converged: bool,
    pub services: BTreeMap<String, ServiceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceStatus {
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub since_s: f64,
    pub artifact: Option<String>,
    pub reason: Option<String>,
    pub image: Option<String>,
    pub pull_percent: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogsStatus {
    /// The config generation whose collectors are running.
    pub generation: Option<u64>,
    pub forward: Vec<LogDestination>,
    /// Lines lost before reaching any queue (the forwarder fell behind the loggers).
    pub intake_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogDestination {
    pub url: String,
    pub format: String,
    pub connected: bool,
    pub sent: u64,
    /// Lines dropped because the queue was full (oldest first), since the collector was configured.
    pub dropped: u64,
    pub buffered: usize,
    pub buffer_lines: usize,
    pub error: Option<String>,
}
