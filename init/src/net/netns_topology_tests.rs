//! Bridges made, stacked and repaired over real rtnetlink, in a throwaway namespace (root; the host kernel here
//! has no bonding or 8021q module, so bonds and VLANs are covered by the pure plan tests and the QEMU tests, and
//! the bridge exercises the same create / alias / enslave / delete code).

use super::model::{AddrSpec, Desired, LinkMatch, LinkSpec, Origin};
use super::netns_tests::{start, Netns};
use super::topology::parse_bridge;
use std::time::{Duration, Instant};

fn until(ns: &Netns, args: &[&str], needle: &str, limit: Duration) {
    let start = Instant::now();
    while !ns.ip(args).contains(needle) {
        assert!(start.elapsed() < limit, "{needle:?} not in `ip {}` after {limit:?}", args.join(" "));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn root_netns_bridge_is_made_marked_enslaved_and_repaired() {
    let ns = Netns::new("bridge");
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["link", "set", "vb", "up"]);
    let br = LinkMatch::Name("br0".into());
    let base = Desired {
        virtual_links: vec![parse_bridge("br0:va").unwrap()],
        links: vec![LinkSpec { link: br.clone(), up: true, mtu: None, dhcp4: false }],
        addresses: vec![AddrSpec { link: br, addr: "10.78.0.2".parse().unwrap(), prefix: 24, origin: Origin::Static }],
        ..Desired::default()
    };
    let c = start(&ns, base, std::env::temp_dir().join(format!("{}.resolv", ns.name)));
    let s = c.wait("ready", Duration::from_secs(20), |s| s.ready && s.pending.is_empty());
    assert!(s.failed.is_empty(), "{s:#?}");
    let second = Duration::from_secs(5);
    until(&ns, &["link", "show", "va"], "master br0", second);
    until(&ns, &["addr", "show", "br0"], "10.78.0.2/24", second);
    let detail = ns.ip(&["-d", "link", "show", "br0"]);
    assert!(detail.contains("alias keel") && detail.contains("bridge"), "{detail}");

    // A member taken out by hand joins again.
    ns.ip(&["link", "set", "va", "nomaster"]);
    until(&ns, &["link", "show", "va"], "master br0", second);
    // The bridge deleted by hand is made again, with its member and address.
    ns.ip(&["link", "del", "br0"]);
    until(&ns, &["-d", "link", "show"], "alias keel", second);
    until(&ns, &["link", "show", "va"], "master br0", second);
    until(&ns, &["addr", "show", "br0"], "10.78.0.2/24", second);
}
