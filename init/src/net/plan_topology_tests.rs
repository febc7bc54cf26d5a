use super::*;
use crate::net::model::{Desired, LinkMatch, LinkSpec};
use crate::net::observed::LinkInfo;
use crate::net::topology::{parse_bond, parse_bridge, parse_vlan};

fn nic(index: u32, name: &str) -> ObsLink {
    ObsLink {
        index,
        name: name.into(),
        mac: Some([0x52, 0x54, 0, 0, 0, index as u8]),
        up: true,
        carrier: true,
        mtu: 1500,
        loopback: false,
        physical: true,
        info: LinkInfo::default(),
    }
}

fn virt(index: u32, name: &str, kind: &str, ours: bool) -> ObsLink {
    let mut l = nic(index, name);
    l.physical = false;
    l.info.kind = Some(kind.into());
    l.info.alias = ours.then(|| KEEL_ALIAS.to_string());
    l
}

fn desired() -> Desired {
    Desired {
        virtual_links: vec![
            parse_vlan("bond0.100:bond0").unwrap(),
            parse_bond("bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast").unwrap(),
        ],
        links: vec![LinkSpec { link: LinkMatch::Name("bond0.100".into()), up: true, mtu: None, dhcp4: true }],
        ..Desired::default()
    }
}

fn run(d: &Desired, links: Vec<ObsLink>) -> (Vec<String>, Vec<String>) {
    let obs = Observed { links, ..Observed::default() };
    let (mut ops, mut pending) = (Vec::new(), Vec::new());
    plan(d, &obs, &mut ops, &mut pending);
    (ops.iter().map(|o| o.to_string()).collect(), pending.iter().map(|p| format!("{}: {}", p.item, p.reason)).collect())
}

#[test]
fn a_bond_and_its_vlan_are_made_in_passes_then_nothing_is_written() {
    let d = desired();
    // Pass 1: only the NICs. The bond is made; the VLAN waits for it (its parent has no index yet).
    let (ops, pending) = run(&d, vec![nic(2, "eth0"), nic(3, "eth1")]);
    assert_eq!(ops, ["op=link-add if=bond0 kind=bond"]);
    assert_eq!(pending, ["vlan bond0.100: parent bond0 is not ready yet"]);
    // Pass 2: the bond exists (down, as the kernel makes it): members join it, it comes up, the VLAN is made.
    let mut bond = virt(4, "bond0", "bond", true);
    bond.up = false;
    bond.info.bond_mode = Some(4);
    let (ops, pending) = run(&d, vec![nic(2, "eth0"), nic(3, "eth1"), bond.clone()]);
    assert_eq!(
        ops,
        [
            "op=link-master if=eth0 master=bond0",
            "op=link-master if=eth1 master=bond0",
            "op=link if=bond0 up=true",
            "op=link-add if=bond0.100 kind=vlan",
        ]
    );
    assert!(pending.is_empty(), "{pending:?}");
    // Converged: nothing to do.
    bond.up = true;
    let mut members = vec![nic(2, "eth0"), nic(3, "eth1")];
    for m in &mut members {
        m.info.master = Some(4);
    }
    let mut vlan = virt(5, "bond0.100", "vlan", true);
    vlan.info.vlan_id = Some(100);
    vlan.info.parent = Some(4);
    let converged = [members.clone(), vec![bond.clone(), vlan.clone()]].concat();
    assert_eq!(run(&d, converged), (vec![], vec![]));
    // Drift: a member taken out of the bond by hand, and the VLAN deleted: both are repaired.
    let mut drifted = [members.clone(), vec![bond.clone()]].concat();
    drifted[1].info.master = None;
    let (ops, _) = run(&d, drifted);
    assert_eq!(ops, ["op=link-master if=eth1 master=bond0", "op=link-add if=bond0.100 kind=vlan"]);
}

#[test]
fn only_what_keel_made_is_removed_or_replaced() {
    let d = Desired::default();
    let mut old_vlan = virt(5, "eth0.7", "vlan", true);
    old_vlan.info.vlan_id = Some(7);
    let links = vec![nic(2, "eth0"), virt(4, "bond0", "bond", true), old_vlan, virt(6, "br-foreign", "bridge", false)];
    // No longer desired: Keel's VLAN goes before Keel's bond; the foreign bridge stays.
    assert_eq!(run(&d, links).0, ["op=link-del if=eth0.7", "op=link-del if=bond0"]);

    // A VLAN with the wrong id: Keel's is made again, a foreign one is reported and left alone.
    let d = Desired { virtual_links: vec![parse_vlan("eth0.100:eth0").unwrap()], ..Desired::default() };
    let mut wrong = virt(5, "eth0.100", "vlan", true);
    wrong.info.vlan_id = Some(200);
    wrong.info.parent = Some(2);
    assert_eq!(run(&d, vec![nic(2, "eth0"), wrong.clone()]).0, ["op=link-del if=eth0.100"]);
    wrong.info.alias = None;
    let (ops, pending) = run(&d, vec![nic(2, "eth0"), wrong]);
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(pending, ["vlan eth0.100: VLAN eth0.100 has id Some(200), not 100: not Keel's, left alone"]);
    // A NIC that happens to have the bond's name is never touched.
    let d = Desired { virtual_links: vec![parse_bond("eth0:eth1").unwrap()], ..Desired::default() };
    let (ops, pending) = run(&d, vec![nic(2, "eth0"), nic(3, "eth1")]);
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(pending, ["bond eth0: a link named eth0 exists and is not a bond: not Keel's, left alone"]);
}

#[test]
fn bridge_members_are_brought_up_and_members_get_no_dhcp_of_their_own() {
    let d = Desired { virtual_links: vec![parse_bridge("br0:eth1").unwrap()], ..Desired::default() };
    let mut eth1 = nic(3, "eth1");
    eth1.up = false;
    eth1.info.master = Some(4);
    let br = virt(4, "br0", "bridge", true);
    assert_eq!(run(&d, vec![nic(2, "eth0"), eth1.clone(), br.clone()]).0, ["op=link if=eth1 up=true"]);
    let obs = Observed { links: vec![nic(2, "eth0"), eth1.clone(), br], ..Observed::default() };
    assert!(is_member(&d, &obs, &eth1));
    assert!(!is_member(&d, &obs, &nic(2, "eth0")));
    // Named as a member before it joined: still not a DHCP link.
    let mut fresh = nic(3, "eth1");
    fresh.info.master = None;
    assert!(is_member(&d, &obs, &fresh));
}

#[test]
fn the_empty_bond0_the_driver_makes_is_taken_over_and_vlans_wait_for_it() {
    let d = desired();
    // The bonding driver's own bond0: balance-rr, down, no members, no alias.
    let mut default_bond = virt(4, "bond0", "bond", false);
    default_bond.up = false;
    default_bond.info.bond_mode = Some(0);
    let (ops, pending) = run(&d, vec![nic(2, "eth0"), nic(3, "eth1"), default_bond.clone()]);
    assert_eq!(ops, ["op=link-del if=bond0"]);
    assert_eq!(pending, ["vlan bond0.100: parent bond0 is not ready yet"]);
    // One that is in use (a member joined it by hand) is someone else's: left alone, and so is its VLAN.
    let mut member = nic(2, "eth0");
    member.info.master = Some(4);
    let (ops, pending) = run(&d, vec![member, nic(3, "eth1"), default_bond]);
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(pending.len(), 2, "{pending:?}");
}
