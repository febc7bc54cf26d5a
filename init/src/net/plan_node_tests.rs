use super::*;
use crate::net::model::{LinkMatch, LinkSpec};
use crate::net::observed::{ObsAddr, ObsLink};
use std::net::Ipv4Addr;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn link(index: u32, name: &str, carrier: bool) -> ObsLink {
    ObsLink {
        index,
        name: name.into(),
        mac: (index > 1).then_some(MAC),
        up: true,
        carrier,
        mtu: if index == 1 { 65536 } else { 1500 },
        loopback: index == 1,
        physical: index > 1,
        info: Default::default(),
    }
}

fn host(carrier: bool) -> NetObserved {
    NetObserved {
        kernel: Observed {
            links: vec![link(1, "lo", true), link(2, "eth0", carrier)],
            addrs: vec![ObsAddr { index: 1, addr: "127.0.0.1".parse().unwrap(), prefix: 8, proto: 0 }],
            routes: vec![],
        },
        hostname: Some(HostName { current: "(none)".into(), fallback: "keel-1234".into() }),
        ..NetObserved::default()
    }
}

fn dhcp_on_eth0() -> Desired {
    Desired {
        links: vec![LinkSpec { link: LinkMatch::Name("eth0".into()), up: true, mtu: None, dhcp4: true }],
        ..Desired::default()
    }
}

fn lease() -> LeaseInfo {
    LeaseInfo {
        ifname: "eth0".into(),
        address: Ipv4Addr::new(10, 0, 2, 15),
        prefix: 24,
        routers: vec![Ipv4Addr::new(10, 0, 2, 2)],
        routes: vec![],
        dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
        search: vec![],
        hostname: Some("from-dhcp".into()),
        mtu: None,
        ntp: vec![],
    }
}

fn shown(p: &Plan<NetOp>) -> Vec<String> {
    p.ops.iter().map(|(_, op)| op.to_string()).collect()
}

fn state<'a>(p: &'a Plan<NetOp>, item: &str) -> Option<&'a ItemState> {
    p.items.iter().find(|(i, _)| i == item).map(|(_, s)| s)
}

#[test]
fn names_the_host_first_then_starts_dhcp_and_writes_resolv() {
    let p = plan(&dhcp_on_eth0(), &host(true));
    let ops = shown(&p);
    assert_eq!(ops.first().map(String::as_str), Some("op=hostname name=keel-1234 was=(none)"), "{ops:?}");
    assert!(ops.contains(&"op=dhcp-start if=eth0".to_string()), "{ops:?}");
    assert!(ops.last().is_some_and(|o| o.starts_with("op=resolv")), "{ops:?}");
}

#[test]
fn a_link_without_carrier_waits_and_starts_no_client() {
    let p = plan(&dhcp_on_eth0(), &host(false));
    assert!(!shown(&p).iter().any(|o| o.contains("dhcp-start")));
    assert_eq!(state(&p, "dhcp eth0"), Some(&ItemState::Waiting("no carrier".into())));
}

#[test]
fn a_running_client_waits_for_its_lease_then_its_address_and_route_are_planned() {
    let mut o = host(true);
    o.dhcp.insert(2, true);
    let p = plan(&dhcp_on_eth0(), &o);
    assert!(matches!(state(&p, "dhcp eth0"), Some(ItemState::Waiting(_))));
    o.leases.insert(2, lease());
    let p = plan(&dhcp_on_eth0(), &o);
    assert_eq!(state(&p, "dhcp eth0"), Some(&ItemState::Converged));
    let ops = shown(&p);
    assert!(ops.iter().any(|o| o.contains("addr-add if=eth0 addr=10.0.2.15/24")), "{ops:?}");
    assert!(ops.contains(&"op=hostname name=from-dhcp was=(none)".to_string()), "the lease names the host: {ops:?}");
}

#[test]
fn carrier_changes_reach_the_client_and_a_dropped_link_stops_it() {
    let mut o = host(false);
    o.hostname = None;
    o.dhcp.insert(2, true);
    o.leases.insert(2, lease());
    assert!(shown(&plan(&dhcp_on_eth0(), &o)).contains(&"op=dhcp-carrier if=eth0 up=false".to_string()));
    // The config no longer wants DHCP on eth0: the client stops and its lease stops counting.
    let p = plan(&Desired::default(), &o);
    let ops = shown(&p);
    assert!(ops.contains(&"op=dhcp-stop if=eth0".to_string()), "{ops:?}");
    assert!(!ops.iter().any(|o| o.contains("10.0.2.15")), "{ops:?}");
    assert!(p.ops.iter().all(|(_, op)| !op.repairs()), "following DHCP is not a repair");
}

#[test]
fn a_converged_host_plans_nothing() {
    let mut o = host(true);
    o.hostname = Some(HostName { current: "keel-1234".into(), fallback: "keel-1234".into() });
    let (eff, _) = effective(&Desired::default(), &o);
    o.resolv = Some(resolv::render(&eff.nameservers, &eff.search, "static config"));
    let p = plan(&Desired::default(), &o);
    assert!(p.ops.is_empty(), "{:?}", shown(&p));
    assert!(p.items.iter().all(|(_, s)| *s == ItemState::Converged), "{:?}", p.items);
}

#[test]
fn a_name_from_the_desired_state_wins_over_the_fallback() {
    let mut o = host(true);
    o.hostname = Some(HostName { current: "keel-1234".into(), fallback: "keel-1234".into() });
    let d = Desired { hostname: Some("edge-7".into()), ..Desired::default() };
    assert!(shown(&plan(&d, &o)).contains(&"op=hostname name=edge-7 was=keel-1234".to_string()));
}
