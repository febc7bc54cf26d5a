//! What the kernel has: links, addresses and routes as read over rtnetlink, in plain types the planner can
//! compare. Converting from netlink messages is pure; the dump itself lives in the controller's netlink code.

use super::model::LinkMatch;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoBond, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkLayerType,
    LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage};
use std::net::IpAddr;

/// The route and address protocol number that marks what Keel created (`ip route` shows `proto 229`). Entries
/// with any other protocol belong to the kernel, to SLAAC, or to someone else, and Keel never removes them.
pub const KEEL_PROTO: u8 = 229;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// What rtnetlink says about a link beyond its basics: its kind and where it is stacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// IFLA_INFO_KIND: `bond`, `vlan`, `bridge`, `veth`, … (None for a plain NIC).
    pub kind: Option<String>,
    /// The bond or bridge it is a member of (IFLA_MASTER).
    pub master: Option<u32>,
    /// The link it sits on (IFLA_LINK: a VLAN's parent).
    pub parent: Option<u32>,
    pub vlan_id: Option<u16>,
    /// IFLA_BOND_MODE.
    pub bond_mode: Option<u8>,
    /// IFLA_IFALIAS: Keel marks the links it made with [`KEEL_ALIAS`], and removes only those.
    pub alias: Option<String>,
}

/// The alias on every link Keel made (`ip link` shows `alias keel`): it owns those, and no others.
pub const KEEL_ALIAS: &str = "keel";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsLink {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub carrier: bool,
    pub mtu: u32,
    pub loopback: bool,
    /// Backed by a device (`/sys/class/net/<name>/device` exists): a NIC, not a veth, bridge or tunnel.
    pub physical: bool,
    pub info: LinkInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsAddr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    pub proto: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsRoute {
    pub dest: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: u32,
    pub proto: u8,
    pub table: u32,
    pub onlink: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<ObsLink>,
    pub addrs: Vec<ObsAddr>,
    pub routes: Vec<ObsRoute>,
}

impl Observed {
    pub fn link(&self, m: &LinkMatch) -> Option<&ObsLink> {
        self.links.iter().find(|l| match m {
            LinkMatch::Name(n) => &l.name == n,
            LinkMatch::Mac(mac) => l.mac.as_ref() == Some(mac),
        })
    }

    pub fn link_name(&self, index: u32) -> String {
        self.links.iter().find(|l| l.index == index).map(|l| l.name.clone()).unwrap_or_else(|| format!("#{index}"))
    }
}

pub fn link_from_message(m: &LinkMessage) -> ObsLink {
    let mut link = ObsLink {
        index: m.header.index,
        name: String::new(),
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
        mtu: 0,
        loopback: m.header.link_layer_type == LinkLayerType::Loopback || m.header.flags.contains(LinkFlags::Loopback),
        physical: false,
        info: LinkInfo::default(),
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(i) => link.info.master = Some(*i),
            LinkAttribute::Link(i) => link.info.parent = Some(*i),
            LinkAttribute::IfAlias(a) => link.info.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        NlLinkInfo::Kind(k) => link.info.kind = Some(kind_name(k)),
                        NlLinkInfo::Data(InfoData::Vlan(v)) => {
                            link.info.vlan_id = v.iter().find_map(|x| match x {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            })
                        }
                        NlLinkInfo::Data(InfoData::Bond(b)) => {
                            link.info.bond_mode = b.iter().find_map(|x| match x {
                                InfoBond::Mode(m) => Some(u8::from(*m)),
                                _ => None,
                            })
                        }
                        _ => {}
                    }
                }
            }
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(a) if a.len() == 6 && m.header.link_layer_type == LinkLayerType::Ether => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                link.mac = Some(mac);
            }
            _ => {}
        }
    }
    link
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Bond => "bond".into(),
        InfoKind::Vlan => "vlan".into(),
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Veth => "veth".into(),
        InfoKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

pub fn addr_from_message(m: &AddressMessage) -> Option<ObsAddr> {
    let mut local = None;
    let mut address = None;
    let mut proto = 0;
    for attr in &m.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Protocol(p) => proto = u8::from(*p),
            _ => {}
        }
    }
    // IPv4 carries the interface's own address in IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links).
    let addr = local.or(address)?;
    Some(ObsAddr { index: m.header.index, addr, prefix: m.header.prefix_len, proto })
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// `v6` tells the family when the route has no destination attribute (a default route).
pub fn route_from_message(m: &RouteMessage, v6: bool) -> ObsRoute {
    let unspecified =
        if v6 { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) };
    let mut r = ObsRoute {
        dest: unspecified,
        prefix: m.header.destination_prefix_length,
        gateway: None,
        oif: None,
        metric: 0,
        proto: u8::from(m.header.protocol),
        table: u32::from(m.header.table),
        onlink: m.header.flags.contains(RouteFlags::Onlink),
    };
    for attr in &m.attributes {
        match attr {
            RouteAttribute::Destination(a) => r.dest = ip(a).unwrap_or(unspecified),
            RouteAttribute::Gateway(a) => r.gateway = ip(a),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Priority(p) => r.metric = *p,
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    r
}
