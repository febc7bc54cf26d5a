use super::*;
use crate::net::model::{AddrSpec, LinkMatch, LinkSpec, Origin, RouteSpec};
use crate::net::observed::{ObsAddr, ObsLink};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn observed() -> Observed {
    Observed {
        links: vec![
            ObsLink {
                index: 1,
                name: "lo".into(),
                mac: None,
                up: true,
                carrier: true,
                mtu: 65536,
                loopback: true,
                physical: false,
                info: Default::default(),
            },
            ObsLink {
                index: 2,
                name: "eth0".into(),
                mac: Some(MAC),
                up: true,
                carrier: true,
                mtu: 1500,
                loopback: false,
                physical: true,
                info: Default::default(),
            },
        ],
        addrs: vec![
            ObsAddr { index: 1, addr: ip("127.0.0.1"), prefix: 8, proto: 0 },
            ObsAddr { index: 2, addr: ip("fe80::5054:ff:fe12:3456"), prefix: 64, proto: 3 },
        ],
        routes: vec![],
    }
}

fn desired() -> Desired {
    Desired {
        links: vec![LinkSpec { link: LinkMatch::Mac(MAC), up: true, mtu: Some(1500), dhcp4: false }],
        addresses: vec![AddrSpec {
            link: LinkMatch::Name("eth0".into()),
            addr: ip("10.0.2.15"),
            prefix: 24,
            origin: Origin::Static,
        }],
        routes: vec![RouteSpec {
            dest: ip("0.0.0.0"),
            prefix: 0,
            gateway: Some(ip("10.0.2.2")),
            link: Some(LinkMatch::Name("eth0".into())),
            metric: 0,
            onlink: false,
            origin: Origin::Static,
        }],
        ..Desired::default()
    }
}

/// The kernel state after applying `desired()`.
fn converged() -> Observed {
    let mut o = observed();
    o.addrs.push(ObsAddr { index: 2, addr: ip("10.0.2.15"), prefix: 24, proto: KEEL_PROTO });
    o.routes.push(ObsRoute {
        dest: ip("10.0.2.0"),
        prefix: 24,
        gateway: None,
        oif: Some(2),
        metric: 0,
        proto: 2,
        table: MAIN_TABLE,
        onlink: false,
    });
    o.routes.push(ObsRoute {
        dest: ip("0.0.0.0"),
        prefix: 0,
        gateway: Some(ip("10.0.2.2")),
        oif: Some(2),
        metric: 0,
        proto: KEEL_PROTO,
        table: MAIN_TABLE,
        onlink: false,
    });
    o
}

fn default_route() -> RouteOp {
    RouteOp { dest: ip("0.0.0.0"), prefix: 0, gateway: Some(ip("10.0.2.2")), oif: Some(2), metric: 0, onlink: false }
}

#[test]
fn from_scratch_adds_address_then_route() {
    let p = plan(&desired(), &observed());
    assert_eq!(
        p.ops,
        vec![
            Op::AddAddr { index: 2, name: "eth0".into(), addr: ip("10.0.2.15"), prefix: 24 },
            Op::AddRoute(default_route()),
        ]
    );
    assert!(p.pending.is_empty());
}

#[test]
fn converged_state_plans_nothing() {
    assert_eq!(plan(&desired(), &converged()), Plan::default());
}

#[test]
fn drift_is_repaired() {
    let mut o = converged();
    o.addrs.retain(|a| a.addr != ip("10.0.2.15"));
    o.routes.retain(|r| r.proto != KEEL_PROTO);
    o.links[1].up = false;
    let p = plan(&desired(), &o);
    assert_eq!(p.ops.len(), 3, "{:?}", p.ops);
    assert_eq!(p.ops[0], Op::SetLink { index: 2, name: "eth0".into(), up: Some(true), mtu: None });
    assert!(matches!(p.ops[1], Op::AddAddr { .. }));
    assert!(matches!(p.ops[2], Op::AddRoute(_)));
}

#[test]
fn removed_items_are_deleted_but_foreign_ones_kept() {
    let mut d = desired();
    d.addresses.clear();
    d.routes.clear();
    let mut o = converged();
    o.addrs.push(ObsAddr { index: 2, addr: ip("192.168.1.5"), prefix: 24, proto: 0 });
    let p = plan(&d, &o);
    assert_eq!(
        p.ops,
        vec![
            Op::DelRoute(default_route()),
            Op::DelAddr { index: 2, name: "eth0".into(), addr: ip("10.0.2.15"), prefix: 24 },
        ]
    );
}

#[test]
fn changed_gateway_replaces_keel_route() {
    let mut d = desired();
    d.routes[0].gateway = Some(ip("10.0.2.1"));
    let p = plan(&d, &converged());
    assert_eq!(p.ops, vec![Op::AddRoute(RouteOp { gateway: Some(ip("10.0.2.1")), ..default_route() })]);
}

#[test]
fn foreign_route_in_the_slot_is_not_fought_over() {
    let mut o = converged();
    o.routes.retain(|r| r.proto != KEEL_PROTO);
    o.routes.push(ObsRoute {
        dest: ip("0.0.0.0"),
        prefix: 0,
        gateway: Some(ip("10.0.2.1")),
        oif: Some(2),
        metric: 0,
        proto: 16, // dhcp client of someone else
        table: MAIN_TABLE,
        onlink: false,
    });
    let p = plan(&desired(), &o);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(p.pending.len(), 1);
    assert!(p.pending[0].reason.contains("protocol 16"), "{:?}", p.pending);
}

#[test]
fn missing_link_is_pending_and_the_rest_converges() {
    let mut d = desired();
    d.links.push(LinkSpec { link: LinkMatch::Name("eth9".into()), up: true, mtu: None, dhcp4: false });
    d.addresses.push(AddrSpec {
        link: LinkMatch::Name("eth9".into()),
        addr: ip("10.9.0.1"),
        prefix: 24,
        origin: Origin::Static,
    });
    let p = plan(&d, &observed());
    assert_eq!(p.ops.len(), 2);
    let items: Vec<_> = p.pending.iter().map(|x| x.item.as_str()).collect();
    assert_eq!(items, ["link eth9", "address 10.9.0.1/24 on eth9"]);
}

#[test]
fn mtu_and_loopback() {
    let mut d = desired();
    d.links[0].mtu = Some(9000);
    let mut o = converged();
    o.links[0].up = false;
    let p = plan(&d, &o);
    assert_eq!(
        p.ops,
        vec![
            Op::SetLink { index: 1, name: "lo".into(), up: Some(true), mtu: None },
            Op::SetLink { index: 2, name: "eth0".into(), up: None, mtu: Some(9000) },
        ]
    );
}

#[test]
fn ipv6_metric_zero_is_stored_as_1024() {
    let mut d = desired();
    d.addresses.push(AddrSpec {
        link: LinkMatch::Name("eth0".into()),
        addr: ip("fd00::15"),
        prefix: 64,
        origin: Origin::Static,
    });
    d.routes.push(RouteSpec {
        dest: ip("::"),
        prefix: 0,
        gateway: Some(ip("fd00::1")),
        link: None,
        metric: 0,
        onlink: false,
        origin: Origin::Static,
    });
    let mut o = converged();
    o.addrs.push(ObsAddr { index: 2, addr: ip("fd00::15"), prefix: 64, proto: KEEL_PROTO });
    o.routes.push(ObsRoute {
        dest: ip("::"),
        prefix: 0,
        gateway: Some(ip("fd00::1")),
        oif: Some(2),
        metric: 1024,
        proto: KEEL_PROTO,
        table: MAIN_TABLE,
        onlink: false,
    });
    assert_eq!(plan(&d, &o), Plan::default());
}

#[test]
fn route_destination_host_bits_are_cleared() {
    let mut d = desired();
    d.routes[0] = RouteSpec { dest: ip("192.168.50.7"), prefix: 24, ..d.routes[0].clone() };
    let p = plan(&d, &converged());
    assert!(p.ops.iter().any(|op| matches!(op, Op::AddRoute(r) if r.dest == ip("192.168.50.0"))), "{:?}", p.ops);
}
