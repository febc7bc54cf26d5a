use crate::parse;

fn errors(body: &str) -> Vec<String> {
    match parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_bond_with_a_vlan_and_a_bridge_parses() {
    let text = "version = 1\ngeneration = 1\n\
        [[network.bond]]\nname = \"bond0\"\nmembers = [\"eno1\", \"eno2\"]\nmode = \"802.3ad\"\nmiimon = 100\n\
        lacp_rate = \"fast\"\nxmit_hash_policy = \"layer3+4\"\nmin_links = 1\n\
        [[network.vlan]]\nname = \"bond0.100\"\nparent = \"bond0\"\nid = 100\n\
        [[network.bridge]]\nname = \"br0\"\nmembers = [\"eno3\"]\n\
        [[network.link]]\nname = \"bond0.100\"\ndhcp4 = true\n";
    let c = parse("node.toml", text).unwrap();
    let b = &c.network.bonds[0];
    assert_eq!(
        (b.name.as_str(), b.members.as_slice(), b.mode.as_str()),
        ("bond0", &["eno1".to_string(), "eno2".into()][..], "802.3ad")
    );
    assert_eq!(
        (b.miimon, b.lacp_rate.as_deref(), b.xmit_hash_policy.as_deref(), b.min_links),
        (Some(100), Some("fast"), Some("layer3+4"), Some(1))
    );
    assert_eq!((c.network.vlans[0].parent.as_str(), c.network.vlans[0].id), ("bond0", 100));
    assert_eq!(c.network.bridges[0].members, ["eno3"]);
}

#[test]
fn every_topology_error_names_its_place() {
    let body = "[[network.bond]]\nname = \"bond0\"\nmembers = [\"eth0\", \"bond0\"]\nmode = \"lacp-ish\"\n\
                [[network.bond]]\nname = \"bond1\"\nmembers = [\"eth0\"]\nmode = \"active-backup\"\nlacp_rate = \"fast\"\n\
                [[network.vlan]]\nname = \"bond1\"\nparent = \"eth0\"\nid = 4095\n\
                [[network.bridge]]\nname = \"a/b\"\n";
    assert_eq!(
        errors(body),
        [
            "node.toml:5:20: network.bond[0].members[1]: \"bond0\" cannot be a member of itself",
            "node.toml:6:8: network.bond[0].mode: \"lacp-ish\" is not one of 802.3ad, active-backup, balance-rr, balance-xor, broadcast, balance-tlb, balance-alb",
            "node.toml:9:12: network.bond[1].members[0]: member \"eth0\" is already used by network.bond[0].members[0]",
            "node.toml:11:13: network.bond[1].lacp_rate: applies only to mode = \"802.3ad\"",
            "node.toml:13:8: network.vlan[0].name: interface \"bond1\" is already used by network.bond[1].name",
            "node.toml:15:6: network.vlan[0].id: must be 1..4094",
            "node.toml:17:8: network.bridge[0].name: \"a/b\" is not an interface name (1..15 bytes, no '/', ':', ',' or spaces)",
        ]
    );
}
