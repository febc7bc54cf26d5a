//! Planning bonds, VLANs and bridges (see [`super::topology`]): make the missing ones, put members under their
//! bond or bridge, bring them up, and remove the ones Keel made that are no longer desired. Pure, like
//! [`super::plan`]; a link that is created in this pass is stacked on the next (its index comes back as a
//! kernel event, which reconciles at once).
//!
//! Ownership: Keel marks what it makes with the alias [`KEEL_ALIAS`] and deletes only links with that mark. A
//! link of the desired name that is of another kind, or a VLAN with another id or parent, is reported, not
//! replaced (unless Keel made it: then it is removed and made again).

use super::observed::{ObsLink, Observed, KEEL_ALIAS};
use super::plan::{Op, Pending};
use super::topology::{VirtualKind, VirtualLink};

fn ours(l: &ObsLink) -> bool {
    l.info.alias.as_deref() == Some(KEEL_ALIAS)
}

/// The empty `bond0` the bonding driver makes at boot (max_bonds=1): down, no members. Nobody uses it, so Keel
/// may take it over (remove it and make its own).
fn unused_default_bond(l: &ObsLink, obs: &Observed) -> bool {
    l.info.kind.as_deref() == Some("bond") && !l.up && !obs.links.iter().any(|m| m.info.master == Some(l.index))
}

/// Why an existing link of the desired name is not the desired link, if it is not.
fn mismatch(want: &VirtualLink, have: &ObsLink) -> Option<String> {
    let kind = want.kind.kind();
    if have.info.kind.as_deref() != Some(kind) {
        return Some(format!("a link named {} exists and is not a {kind}", want.name));
    }
    match &want.kind {
        VirtualKind::Vlan { id, .. } if have.info.vlan_id != Some(*id) => {
            Some(format!("VLAN {} has id {:?}, not {id}", want.name, have.info.vlan_id))
        }
        VirtualKind::Bond(o) if have.info.bond_mode.is_some_and(|m| m != o.mode.number()) => {
            Some(format!("bond {} is in another mode than {}", want.name, o.mode))
        }
        _ => None,
    }
}

pub fn plan(desired: &Desired, obs: &Observed, ops: &mut Vec<Op>, pending: &mut Vec<Pending>) {
    let pend = |pending: &mut Vec<Pending>, item: String, reason: String| pending.push(Pending { item, reason });
    // Bonds and bridges before VLANs: a VLAN is usually on a bond.
    let mut wanted: Vec<&VirtualLink> = desired.virtual_links.iter().collect();
    wanted.sort_by_key(|v| matches!(v.kind, VirtualKind::Vlan { .. }));
    // Links made, removed or held back in this pass: what sits on them waits for the next.
    let mut unsettled: Vec<String> = Vec::new();
    for v in wanted {
        let item = format!("{} {}", v.kind.kind(), v.name);
        if let VirtualKind::Vlan { parent: super::model::LinkMatch::Name(p), .. } = &v.kind {
            if unsettled.contains(p) {
                pend(pending, item, format!("parent {p} is not ready yet"));
                continue;
            }
        }
        let Some(have) = obs.links.iter().find(|l| l.name == v.name) else {
            unsettled.push(v.name.clone());
            let parent = match &v.kind {
                VirtualKind::Vlan { parent, .. } => match obs.link(parent) {
                    Some(p) => Some(p.index),
                    None => {
                        pend(pending, item, format!("parent {parent} not found"));
                        continue;
                    }
                },
                _ => None,
            };
            ops.push(Op::CreateLink { link: v.clone(), parent });
            continue;
        };
        if let Some(why) = mismatch(v, have) {
            unsettled.push(v.name.clone());
            if ours(have) || unused_default_bond(have, obs) {
                ops.push(Op::DelLink { index: have.index, name: have.name.clone() });
            } else {
                pend(pending, item, format!("{why}: not Keel's, left alone"));
            }
            continue;
        }
        if let VirtualKind::Vlan { parent, .. } = &v.kind {
            if obs.link(parent).map(|p| p.index) != have.info.parent {
                pend(pending, item.clone(), format!("VLAN {} is not on {parent}", v.name));
            }
        }
        for m in &v.members {
            match obs.link(m) {
                None => pend(pending, format!("member {m} of {}", v.name), "link not found".into()),
                Some(ml) if ml.info.master != Some(have.index) => ops.push(Op::SetMaster {
                    index: ml.index,
                    name: ml.name.clone(),
                    master: have.index,
                    master_name: have.name.clone(),
                }),
                // A bond brings its members up itself; a bridge does not.
                Some(ml) if !ml.up => {
                    ops.push(Op::SetLink { index: ml.index, name: ml.name.clone(), up: Some(true), mtu: None })
                }
                Some(_) => {}
            }
        }
        let spec = desired.links.iter().find(|s| obs.link(&s.link).map(|l| l.index) == Some(have.index));
        let want_up = spec.is_none_or(|s| s.up);
        let want_mtu = spec.and_then(|s| s.mtu).or(v.mtu).filter(|m| *m != have.mtu);
        let up = (have.up != want_up).then_some(want_up);
        if up.is_some() || want_mtu.is_some() {
            ops.push(Op::SetLink { index: have.index, name: have.name.clone(), up, mtu: want_mtu });
        }
    }
    // What Keel made and no longer wants: VLANs first, then what they sat on.
    let mut gone: Vec<&ObsLink> = obs
        .links
        .iter()
        .filter(|l| ours(l) && matches!(l.info.kind.as_deref(), Some("bond" | "vlan" | "bridge")))
        .filter(|l| !desired.virtual_links.iter().any(|v| v.name == l.name))
        .collect();
    gone.sort_by_key(|l| l.info.kind.as_deref() != Some("vlan"));
    ops.extend(gone.into_iter().map(|l| Op::DelLink { index: l.index, name: l.name.clone() }));
}

use super::model::Desired;

/// Is `l` a member of a desired bond or bridge (so DHCP-on-every-NIC leaves it alone)?
pub fn is_member(desired: &Desired, obs: &Observed, l: &ObsLink) -> bool {
    l.info.master.is_some()
        || desired.virtual_links.iter().any(|v| v.members.iter().any(|m| obs.link(m).map(|o| o.index) == Some(l.index)))
}

#[cfg(test)]
#[path = "plan_topology_tests.rs"]
mod tests;
