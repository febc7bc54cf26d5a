//! What every API handler shares: the node's handles (config, network, time, power), the trusted signers, the
//! command nonces and the status cache. `routes` implements `keel_api::NodeApi` on it; `upgrade`, `auth` and `metrics` read it; it
//! depends on none of them.

use crate::config::run::ConfigHandle;
use crate::net::controller::NetStatus;
use crate::power::Request;
use crate::time::TimeStatus;
use keel_api::command::Nonces;
use keel_config::sshsig::AllowedSigners;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

pub struct Inner {
    pub machine_id: String,
    pub fingerprint: String,
    pub config: ConfigHandle,
    pub net: Option<watch::Receiver<NetStatus>>,
    pub time: watch::Receiver<TimeStatus>,
    pub power: mpsc::Sender<Request>,
    pub allowed: Result<AllowedSigners, String>,
    /// Shared with the blocking thread that checks a command.
    pub nonces: Arc<Mutex<Nonces>>,
    pub gates: Arc<super::limits::Gates>,
    pub status_cache: Mutex<Option<StatusCache>>,
}

pub type AppState = Arc<Inner>;

/// A rendered status and what it was rendered for.
pub struct StatusCache {
    pub at: tokio::time::Instant,
    /// Applied and converged generations, and write requests answered, when it was rendered.
    pub generations: (Option<u64>, Option<u64>, u64),
    pub body: axum::body::Bytes,
}
