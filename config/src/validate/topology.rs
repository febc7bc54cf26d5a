//! `[[network.bond]]`, `[[network.vlan]]`, `[[network.bridge]]`: links Keel makes. Names are interface names,
//! unique across all three; a member belongs to at most one bond or bridge and is not itself one of them; a
//! VLAN's id is 1..4094. Addresses, DHCP, MTU and routes go on them through `[[network.link]]` of the same name.

use super::{int_in, Unique};
use crate::diag::Sink;
use crate::model::{Bond, Bridge, Vlan};
use crate::raw::{self, At};

pub const BOND_MODES: [&str; 7] =
    ["802.3ad", "active-backup", "balance-rr", "balance-xor", "broadcast", "balance-tlb", "balance-alb"];
pub const HASH_POLICIES: [&str; 5] = ["layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"];

/// The member interface names of a bond or bridge `name` at `path`: each a valid name, not the link itself, and
/// a member of no other bond or bridge.
fn member_names(
    list: &[At<String>],
    name: Option<&String>,
    path: &str,
    members: &mut Unique<String>,
    sink: &mut Sink,
) -> Vec<String> {
    let mut ms = Vec::new();
    for (j, m) in list.iter().enumerate() {
        let p = format!("{path}.members[{j}]");
        if let Some(n) = ifname(m, &p, sink) {
            if Some(&n) == name {
                sink.error(m.span(), &p, format!("{n:?} cannot be a member of itself"));
            }
            members.check(sink, n.clone(), &format!("{n:?}"), m.span(), &p);
            ms.push(n);
        }
    }
    ms
}

fn ifname(at: &At<String>, path: &str, sink: &mut Sink) -> Option<String> {
    let n = at.get();
    let bad = n.chars().any(|c| c == '/' || c == ':' || c == ',' || c.is_whitespace() || c.is_control());
    if n.is_empty() || n.len() > 15 || bad || n == "." || n == ".." {
        sink.error(
            at.span(),
            path,
            format!("{n:?} is not an interface name (1..15 bytes, no '/', ':', ',' or spaces)"),
        );
        return None;
    }
    Some(n.clone())
}

fn one_of(at: &At<String>, path: &str, allowed: &[&str], sink: &mut Sink) -> Option<String> {
    if allowed.contains(&at.get().as_str()) {
        Some(at.get().clone())
    } else {
        sink.error(at.span(), path, format!("{:?} is not one of {}", at.get(), allowed.join(", ")));
        None
    }
}

fn millis(v: &Option<At<i64>>, path: &str, sink: &mut Sink) -> Option<u32> {
    v.as_ref().and_then(|v| int_in(sink, v, path, 0, i64::from(u32::MAX))).and_then(|n| u32::try_from(n).ok())
}

pub(super) fn topology(net: &raw::Network, sink: &mut Sink) -> (Vec<Bond>, Vec<Vlan>, Vec<Bridge>) {
    let mut names = Unique::new("interface");
    let mut members = Unique::new("member");
    let mut bonds = Vec::new();
    for (i, at) in net.bond.iter().enumerate() {
        let (b, path) = (at.get(), format!("network.bond[{i}]"));
        let errors_before = sink.diags.len();
        let name = ifname(&b.name, &format!("{path}.name"), sink);
        if let Some(n) = &name {
            names.check(sink, n.clone(), &format!("{n:?}"), b.name.span(), &format!("{path}.name"));
        }
        if b.members.is_empty() {
            sink.error(at.span(), &format!("{path}.members"), "a bond needs at least one member");
        }
        let ms = member_names(&b.members, name.as_ref(), &path, &mut members, sink);
        let mode = one_of(&b.mode, &format!("{path}.mode"), &BOND_MODES, sink);
        let lacp_rate =
            b.lacp_rate.as_ref().and_then(|r| one_of(r, &format!("{path}.lacp_rate"), &["slow", "fast"], sink));
        if lacp_rate.is_some() && mode.as_deref().is_some_and(|m| m != "802.3ad") {
            let span = b.lacp_rate.as_ref().map(|r| r.span()).unwrap_or_default();
            sink.error(span, &format!("{path}.lacp_rate"), "applies only to mode = \"802.3ad\"");
        }
        let xmit_hash_policy = b
            .xmit_hash_policy
            .as_ref()
            .and_then(|h| one_of(h, &format!("{path}.xmit_hash_policy"), &HASH_POLICIES, sink));
        let bond = Bond {
            name: name.unwrap_or_default(),
            members: ms,
            mode: mode.unwrap_or_default(),
            miimon: millis(&b.miimon, &format!("{path}.miimon"), sink),
            lacp_rate,
            xmit_hash_policy,
            updelay: millis(&b.updelay, &format!("{path}.updelay"), sink),
            downdelay: millis(&b.downdelay, &format!("{path}.downdelay"), sink),
            min_links: millis(&b.min_links, &format!("{path}.min_links"), sink),
        };
        if sink.diags.len() == errors_before {
            bonds.push(bond);
        }
    }
    let mut bridges = Vec::new();
    for (i, at) in net.bridge.iter().enumerate() {
        let (b, path) = (at.get(), format!("network.bridge[{i}]"));
        let errors_before = sink.diags.len();
        let name = ifname(&b.name, &format!("{path}.name"), sink);
        if let Some(n) = &name {
            names.check(sink, n.clone(), &format!("{n:?}"), b.name.span(), &format!("{path}.name"));
        }
        let ms = member_names(&b.members, name.as_ref(), &path, &mut members, sink);
        if sink.diags.len() == errors_before {
            bridges.push(Bridge { name: name.unwrap_or_default(), members: ms });
        }
    }
    let mut vlans = Vec::new();
    for (i, at) in net.vlan.iter().enumerate() {
        let (v, path) = (at.get(), format!("network.vlan[{i}]"));
        let errors_before = sink.diags.len();
        let name = ifname(&v.name, &format!("{path}.name"), sink);
        if let Some(n) = &name {
            names.check(sink, n.clone(), &format!("{n:?}"), v.name.span(), &format!("{path}.name"));
        }
        let parent = ifname(&v.parent, &format!("{path}.parent"), sink);
        if parent.is_some() && parent == name {
            sink.error(v.parent.span(), &format!("{path}.parent"), "a VLAN cannot sit on itself");
        }
        let id = int_in(sink, &v.id, &format!("{path}.id"), 1, 4094).and_then(|n| u16::try_from(n).ok());
        if sink.diags.len() == errors_before {
            vlans.push(Vlan {
                name: name.unwrap_or_default(),
                parent: parent.unwrap_or_default(),
                id: id.unwrap_or(0),
            });
        }
    }
    (bonds, vlans, bridges)
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
