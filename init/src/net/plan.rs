//! Planning: the difference between the desired network state and what the kernel has, as a list of netlink
//! operations. Pure: same inputs, same plan; converged inputs, an empty plan (zero writes).
//!
//! Ownership rules: Keel adds addresses and routes tagged with [`KEEL_PROTO`] and removes only entries with that
//! tag that are no longer desired. Kernel, SLAAC and foreign entries are never removed or replaced; a desired
//! route whose slot is held by a foreign route is reported, not fought over.

use super::model::{Desired, LinkMatch};
use super::observed::{ObsRoute, Observed, KEEL_PROTO, MAIN_TABLE};
use super::topology::VirtualLink;
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOp {
    pub dest: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: u32,
    pub onlink: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Make a bond, VLAN or bridge (marked with Keel's alias); a VLAN on link `parent`.
    CreateLink {
        link: VirtualLink,
        parent: Option<u32>,
    },
    /// Remove a link Keel made that is no longer desired.
    DelLink {
        index: u32,
        name: String,
    },
    /// Make `index` a member of bond/bridge `master` (down, enslave, up: a bond takes no member that is up).
    SetMaster {
        index: u32,
        name: String,
        master: u32,
        master_name: String,
    },
    SetLink {
        index: u32,
        name: String,
        up: Option<bool>,
        mtu: Option<u32>,
    },
    DelRoute(RouteOp),
    DelAddr {
        index: u32,
        name: String,
        addr: IpAddr,
        prefix: u8,
    },
    AddAddr {
        index: u32,
        name: String,
        addr: IpAddr,
        prefix: u8,
    },
    /// Add or replace (same destination, prefix and metric).
    AddRoute(RouteOp),
}

impl fmt::Display for RouteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route={}/{}", self.dest, self.prefix)?;
        if let Some(gw) = self.gateway {
            write!(f, " via={gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " oif={oif}")?;
        }
        write!(f, " metric={}", self.metric)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateLink { link, .. } => write!(f, "op=link-add if={} kind={}", link.name, link.kind.kind()),
            Op::DelLink { name, .. } => write!(f, "op=link-del if={name}"),
            Op::SetMaster { name, master_name, .. } => write!(f, "op=link-master if={name} master={master_name}"),
            Op::SetLink { name, up, mtu, .. } => {
                write!(f, "op=link if={name}")?;
                if let Some(up) = up {
                    write!(f, " up={up}")?;
                }
                if let Some(mtu) = mtu {
                    write!(f, " mtu={mtu}")?;
                }
                Ok(())
            }
            Op::AddAddr { name, addr, prefix, .. } => write!(f, "op=addr-add if={name} addr={addr}/{prefix}"),
            Op::DelAddr { name, addr, prefix, .. } => write!(f, "op=addr-del if={name} addr={addr}/{prefix}"),
            Op::AddRoute(r) => write!(f, "op=route-add {r}"),
            Op::DelRoute(r) => write!(f, "op=route-del {r}"),
        }
    }
}

/// A desired item that cannot be planned now, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub item: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub pending: Vec<Pending>,
}

/// The kernel stores IPv6 routes given metric 0 with metric 1024 (IP6_RT_PRIO_USER).
fn effective_metric(dest: IpAddr, metric: u32) -> u32 {
    if dest.is_ipv6() && metric == 0 {
        1024
    } else {
        metric
    }
}

fn same_slot(r: &ObsRoute, dest: IpAddr, prefix: u8, metric: u32) -> bool {
    r.table == MAIN_TABLE && r.dest == dest && r.prefix == prefix && r.metric == metric
}

pub fn plan(desired: &Desired, obs: &Observed) -> Plan {
    let mut p = Plan::default();
    let mut link_ops = Vec::new();

    // Links: loopback always up; bonds, VLANs and bridges made and stacked; then what the config says.
    for l in obs.links.iter().filter(|l| l.loopback && !l.up) {
        link_ops.push(Op::SetLink { index: l.index, name: l.name.clone(), up: Some(true), mtu: None });
    }
    super::plan_topology::plan(desired, obs, &mut link_ops, &mut p.pending);
    for spec in &desired.links {
        if link_ops.iter().any(|o| matches!(o, Op::SetLink { name, .. } if LinkMatch::Name(name.clone()) == spec.link))
        {
            continue; // already planned for its bond/VLAN/bridge
        }
        let Some(l) = obs.link(&spec.link) else {
            p.pending.push(Pending { item: format!("link {}", spec.link), reason: "link not found".into() });
            continue;
        };
        let up = (l.up != spec.up).then_some(spec.up);
        let mtu = spec.mtu.filter(|m| *m != l.mtu);
        if up.is_some() || mtu.is_some() {
            link_ops.push(Op::SetLink { index: l.index, name: l.name.clone(), up, mtu });
        }
    }

    // Addresses, resolved to link indexes.
    let mut want_addrs = Vec::new();
    for a in &desired.addresses {
        match obs.link(&a.link) {
            Some(l) => want_addrs.push((l.index, l.name.clone(), a.addr, a.prefix)),
            None => p.pending.push(Pending {
                item: format!("address {}/{} on {}", a.addr, a.prefix, a.link),
                reason: "link not found".into(),
            }),
        }
    }
    let mut del_addrs = Vec::new();
    for o in obs.addrs.iter().filter(|o| o.proto == KEEL_PROTO) {
        if !want_addrs.iter().any(|(i, _, a, pl)| *i == o.index && *a == o.addr && *pl == o.prefix) {
            del_addrs.push(Op::DelAddr {
                index: o.index,
                name: obs.link_name(o.index),
                addr: o.addr,
                prefix: o.prefix,
            });
        }
    }
    let mut add_addrs = Vec::new();
    for (index, name, addr, prefix) in want_addrs {
        if !obs.addrs.iter().any(|o| o.index == index && o.addr == addr && o.prefix == prefix) {
            add_addrs.push(Op::AddAddr { index, name, addr, prefix });
        }
    }

    // Routes in the main table.
    let mut want_routes = Vec::new();
    for r in &desired.routes {
        let oif = match &r.link {
            Some(m) => match obs.link(m) {
                Some(l) => Some(l.index),
                None => {
                    p.pending.push(Pending {
                        item: format!("route {}/{} on {}", r.dest, r.prefix, m),
                        reason: "link not found".into(),
                    });
                    continue;
                }
            },
            None => None,
        };
        want_routes.push(RouteOp {
            dest: super::model::network(r.dest, r.prefix),
            prefix: r.prefix,
            gateway: r.gateway,
            oif,
            metric: effective_metric(r.dest, r.metric),
            onlink: r.onlink,
        });
    }
    let matches = |o: &ObsRoute, w: &RouteOp| {
        o.gateway == w.gateway && (w.oif.is_none() || o.oif == w.oif) && o.onlink == w.onlink
    };
    let mut del_routes = Vec::new();
    for o in obs.routes.iter().filter(|o| o.proto == KEEL_PROTO && o.table == MAIN_TABLE) {
        let wanted = want_routes.iter().any(|w| same_slot(o, w.dest, w.prefix, w.metric));
        if !wanted {
            del_routes.push(Op::DelRoute(RouteOp {
                dest: o.dest,
                prefix: o.prefix,
                gateway: o.gateway,
                oif: o.oif,
                metric: o.metric,
                onlink: o.onlink,
            }));
        }
    }
    let mut add_routes = Vec::new();
    for w in want_routes {
        match obs.routes.iter().find(|o| same_slot(o, w.dest, w.prefix, w.metric)) {
            None => add_routes.push(Op::AddRoute(w)),
            Some(o) if matches(o, &w) => {}
            Some(o) if o.proto == KEEL_PROTO => add_routes.push(Op::AddRoute(w)),
            Some(o) => p.pending.push(Pending {
                item: format!("route {}/{} metric {}", w.dest, w.prefix, w.metric),
                reason: format!("held by a route with protocol {} (not Keel's): not replaced", o.proto),
            }),
        }
    }

    p.ops.extend(link_ops);
    p.ops.extend(del_routes);
    p.ops.extend(del_addrs);
    p.ops.extend(add_addrs);
    p.ops.extend(add_routes);
    p
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
