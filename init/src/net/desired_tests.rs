use super::*;
use crate::net::observed::ObsLink;

fn link(index: u32, name: &str, physical: bool, carrier: bool) -> ObsLink {
    ObsLink {
        index,
        name: name.into(),
        mac: Some([0x52, 0x54, 0, 0, 0, index as u8]),
        up: false,
        carrier,
        mtu: 1500,
        loopback: false,
        physical,
        info: Default::default(),
    }
}

fn obs() -> Observed {
    Observed {
        links: vec![link(2, "eth0", true, true), link(3, "eth1", true, false), link(4, "veth0", false, true)],
        ..Observed::default()
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn lease() -> LeaseInfo {
    LeaseInfo {
        ifname: "eth0".into(),
        address: v4("10.0.2.15"),
        prefix: 24,
        routers: vec![v4("10.0.2.2")],
        routes: vec![],
        dns: vec![v4("10.0.2.3")],
        search: vec!["example.org".into()],
        hostname: Some("from-dhcp".into()),
        mtu: Some(1400),
        ntp: vec![],
    }
}

#[test]
fn default_is_dhcp_on_physical_links_with_carrier() {
    let base = before_config(&[]);
    let eff = effective(&base, &obs(), &BTreeMap::new());
    let names: Vec<_> = eff.links.iter().map(|l| l.link.to_string()).collect();
    assert_eq!(names, ["eth0", "eth1"], "physical links come up; veths are left alone");
    let dhcp: Vec<_> = dhcp_links(&eff, &obs()).into_iter().map(|l| (l.name, l.carrier)).collect();
    assert_eq!(dhcp, [("eth0".to_string(), true), ("eth1".to_string(), false)], "carrier is reported per link");
}

#[test]
fn static_ip_without_device_takes_first_physical_link() {
    let ip = KernelIp::Static {
        addr: v4("10.0.2.15"),
        prefix: 24,
        gateway: Some(v4("10.0.2.2")),
        hostname: Some("edge-1".into()),
        device: None,
        dns: vec![v4("10.0.2.3")],
        ntp: vec![],
    };
    let eff = effective(&before_config(std::slice::from_ref(&ip)), &obs(), &BTreeMap::new());
    assert_eq!(eff.addresses[0].link, LinkMatch::Name("eth0".into()));
    assert_eq!(eff.routes[0].link, Some(LinkMatch::Name("eth0".into())));
    assert_eq!(eff.routes[0].gateway, Some("10.0.2.2".parse().unwrap()));
    assert_eq!(eff.hostname.as_deref(), Some("edge-1"));
    assert_eq!(eff.nameservers, vec!["10.0.2.3".parse::<IpAddr>().unwrap()]);
    assert!(dhcp_links(&eff, &obs()).is_empty());
}

#[test]
fn ip_off_configures_nothing() {
    let eff = effective(&before_config(&[KernelIp::Off]), &obs(), &BTreeMap::new());
    assert!(eff.links.is_empty() && eff.addresses.is_empty() && eff.routes.is_empty());
}

#[test]
fn lease_brings_address_default_route_dns_hostname_and_mtu() {
    let leases = BTreeMap::from([(2, lease())]);
    let eff = effective(&before_config(&[]), &obs(), &leases);
    assert_eq!(eff.addresses.len(), 1);
    assert_eq!(eff.addresses[0].origin, Origin::Dhcp);
    assert_eq!(eff.routes.len(), 1);
    assert_eq!(eff.routes[0].metric, 1026);
    assert_eq!(eff.routes[0].prefix, 0);
    assert_eq!(eff.nameservers, vec!["10.0.2.3".parse::<IpAddr>().unwrap()]);
    assert_eq!(eff.search, vec!["example.org".to_string()]);
    assert_eq!(eff.hostname.as_deref(), Some("from-dhcp"));
    assert_eq!(eff.links[0].mtu, Some(1400));
}

#[test]
fn classless_routes_replace_the_router_option() {
    let mut l = lease();
    l.routes = vec![
        (v4("192.168.50.0"), 24, v4("10.0.2.1")),
        (v4("0.0.0.0"), 0, v4("10.0.2.9")),
        (v4("10.0.3.0"), 24, v4("0.0.0.0")),
    ];
    let eff = effective(&before_config(&[]), &obs(), &BTreeMap::from([(2, l)]));
    let routes: Vec<_> = eff.routes.iter().map(|r| (r.dest.to_string(), r.prefix, r.gateway)).collect();
    assert_eq!(
        routes,
        vec![
            ("192.168.50.0".into(), 24, Some("10.0.2.1".parse().unwrap())),
            ("0.0.0.0".into(), 0, Some("10.0.2.9".parse().unwrap())),
            ("10.0.3.0".into(), 24, None),
        ]
    );
}

#[test]
fn configured_resolvers_and_hostname_win_over_dhcp() {
    let mut base = before_config(&[]);
    base.nameservers = vec!["9.9.9.9".parse().unwrap()];
    base.hostname = Some("configured".into());
    let eff = effective(&base, &obs(), &BTreeMap::from([(2, lease())]));
    assert_eq!(eff.nameservers, vec!["9.9.9.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(eff.hostname.as_deref(), Some("configured"));
}
