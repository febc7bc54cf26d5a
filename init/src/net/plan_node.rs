//! The network kind's whole plan, pure: from the desired network and what the host shows (the kernel's links,
//! addresses and routes; the DHCP clients running and their leases; the host name; resolv.conf) to the
//! operations that converge it. The kernel part is [`super::plan::plan`]; this adds the DHCP clients (start where
//! a link wants DHCP and has carrier, tell them of carrier changes, stop where DHCP is no longer wanted), the host
//! name and resolv.conf, and the state of each item for the runner.

use super::desired::{self, DhcpLink, LeaseInfo};
use super::model::Desired;
use super::observed::Observed;
use super::plan::{self, Op};
use super::resolv;
use crate::controller::{ItemState, Plan};
use std::collections::BTreeMap;
use std::fmt;

/// What the network controller sees of the host in one observation.
#[derive(Debug, Clone, Default)]
pub struct NetObserved {
    pub kernel: Observed,
    /// The leases the running DHCP clients hold, by link index.
    pub leases: BTreeMap<u32, LeaseInfo>,
    /// The running DHCP clients, by link index, with the carrier each last heard of.
    pub dhcp: BTreeMap<u32, bool>,
    /// The host name, when the controller owns it (not in tests that share the host's UTS namespace).
    pub hostname: Option<HostName>,
    /// What resolv.conf holds now (None: absent or unreadable).
    pub resolv: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    pub current: String,
    /// The name when neither the config, `keel.hostname=`/`ip=` nor DHCP names the node (`keel-<id>`).
    pub fallback: String,
}

#[derive(Debug)]
pub enum NetOp {
    Hostname {
        name: String,
        was: String,
    },
    Kernel(Op),
    StartDhcp(DhcpLink),
    /// The link's carrier changed under a running client: it keeps its lease across a cable pull and verifies it
    /// when the carrier comes back.
    Carrier {
        index: u32,
        name: String,
        up: bool,
    },
    StopDhcp {
        index: u32,
        name: String,
    },
    Resolv {
        text: String,
        nameservers: usize,
    },
}

impl fmt::Display for NetOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetOp::Hostname { name, was } => write!(f, "op=hostname name={name} was={was}"),
            NetOp::Kernel(op) => op.fmt(f),
            NetOp::StartDhcp(l) => write!(f, "op=dhcp-start if={}", l.name),
            NetOp::Carrier { name, up, .. } => write!(f, "op=dhcp-carrier if={name} up={up}"),
            NetOp::StopDhcp { name, .. } => write!(f, "op=dhcp-stop if={name}"),
            NetOp::Resolv { nameservers, .. } => write!(f, "op=resolv nameservers={nameservers}"),
        }
    }
}

impl NetOp {
    /// Whether applying it on a pass no new desired state caused repairs drift. Removing what a lease let lapse,
    /// following DHCP clients and rewriting resolv.conf from a lease are the network following its inputs.
    pub fn repairs(&self) -> bool {
        match self {
            NetOp::Hostname { .. } => true,
            NetOp::Kernel(op) => !matches!(op, Op::DelAddr { .. } | Op::DelRoute(_)),
            NetOp::StartDhcp(_) | NetOp::Carrier { .. } | NetOp::StopDhcp { .. } | NetOp::Resolv { .. } => false,
        }
    }
}

/// The desired network with the leases of the clients that stay (a lease of a client being stopped no longer
/// counts), and the links that want DHCP.
pub fn effective(base: &Desired, o: &NetObserved) -> (Desired, Vec<DhcpLink>) {
    let wanted = desired::dhcp_links(&desired::effective(base, &o.kernel, &o.leases), &o.kernel);
    let leases: BTreeMap<u32, LeaseInfo> =
        o.leases.iter().filter(|(i, _)| wanted.iter().any(|w| w.index == **i)).map(|(i, l)| (*i, l.clone())).collect();
    (desired::effective(base, &o.kernel, &leases), wanted)
}

/// Where resolv.conf's servers came from, for its header.
fn resolv_source(base: &Desired, o: &NetObserved) -> &'static str {
    if o.leases.is_empty() || !base.nameservers.is_empty() {
        "static config"
    } else {
        "dhcp"
    }
}

pub fn plan(base: &Desired, o: &NetObserved) -> Plan<NetOp> {
    let mut p = Plan::default();
    let (eff, wanted) = effective(base, o);

    for (&index, _) in o.dhcp.iter().filter(|(i, _)| !wanted.iter().any(|w| w.index == **i)) {
        let name = o.kernel.link_name(index);
        p.op(format!("dhcp {name}"), NetOp::StopDhcp { index, name });
    }
    // The host name first: anything that talks once the network is up already sees the right name.
    if let Some(h) = &o.hostname {
        let name = eff.hostname.clone().unwrap_or_else(|| h.fallback.clone());
        if h.current == name {
            p.item("hostname", ItemState::Converged);
        } else {
            p.op("hostname", NetOp::Hostname { name, was: h.current.clone() });
        }
    }
    let kernel = plan::plan(&eff, &o.kernel);
    for op in kernel.ops {
        p.op(op.to_string(), NetOp::Kernel(op));
    }
    for pending in kernel.pending {
        p.item(pending.item, ItemState::Waiting(pending.reason));
    }
    // DHCP: a client per link that wants it, started once the link has carrier. The network waits for a lease
    // on every running client; a link without carrier holds it up only while no client runs at all.
    let running = wanted.iter().any(|l| o.dhcp.contains_key(&l.index));
    let starting = wanted.iter().any(|l| l.carrier && !o.dhcp.contains_key(&l.index));
    for link in &wanted {
        let item = format!("dhcp {}", link.name);
        match o.dhcp.get(&link.index) {
            None if link.carrier => p.op(item, NetOp::StartDhcp(link.clone())),
            None if running || starting => p.item(item, ItemState::Converged),
            None => p.item(item, ItemState::Waiting("no carrier".into())),
            Some(&carrier) if carrier != link.carrier => {
                p.op(item, NetOp::Carrier { index: link.index, name: link.name.clone(), up: link.carrier })
            }
            Some(_) if o.leases.contains_key(&link.index) => p.item(item, ItemState::Converged),
            Some(_) => p.item(item, ItemState::Waiting("no DHCP lease yet".into())),
        }
    }
    let text = resolv::render(&eff.nameservers, &eff.search, resolv_source(base, o));
    if o.resolv.as_deref() == Some(text.as_str()) {
        p.item("resolv.conf", ItemState::Converged);
    } else {
        p.op("resolv.conf", NetOp::Resolv { text, nameservers: eff.nameservers.len() });
    }
    p
}

#[cfg(test)]
#[path = "plan_node_tests.rs"]
mod tests;
