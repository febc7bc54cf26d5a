//! `network` of `/v1/status`: what the node observes and what the network controller still works on.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStatus {
    pub ready: bool,
    pub generation: Option<u64>,
    pub hostname: String,
    pub links: Vec<LinkStatus>,
    pub addresses: Vec<AddressStatus>,
    pub routes: Vec<RouteStatus>,
    pub leases: Vec<LeaseStatus>,
    pub nameservers: Vec<String>,
    pub ntp: Vec<String>,
    pub pending: Vec<PendingItem>,
    pub failed: Vec<FailedOp>,
    pub reconciles: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkStatus {
    pub name: String,
    pub index: u32,
    pub mac: Option<String>,
    pub up: bool,
    pub carrier: bool,
    pub mtu: u32,
    pub physical: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddressStatus {
    pub link: String,
    /// `addr/prefix`.
    pub address: String,
    /// `dhcp`, `static`, `kernel`, `other:<proto>`.
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteStatus {
    /// `dest/prefix`.
    pub to: String,
    pub via: Option<String>,
    pub link: Option<String>,
    pub metric: u32,
    /// `dhcp`, `static`, `kernel`, `ra`, `other:<proto>`.
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseStatus {
    pub link: String,
    pub address: String,
    pub routers: Vec<String>,
    pub dns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingItem {
    pub item: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedOp {
    pub op: String,
    pub error: String,
}
