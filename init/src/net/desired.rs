//! Building the desired state: from the kernel's `ip=` (before any config), plus what DHCP leases bring.
//! Pure functions of their inputs; unit-tested.

use super::kernel_ip::KernelIp;
use super::model::{AddrSpec, Desired, LinkMatch, LinkSpec, Origin, RouteSpec};
use super::observed::Observed;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// What the network controller needs from a DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub routers: Vec<Ipv4Addr>,
    /// Classless static routes (option 121): (destination, prefix, gateway). When present, `routers` is not used
    /// for routing (RFC 3442).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub ntp: Vec<Ipv4Addr>,
}

/// Metric of DHCP routes: below the kernel's IPv6 default and distinct per link, so two DHCP links never want
/// the same route slot.
pub fn dhcp_metric(ifindex: u32) -> u32 {
    1024 + ifindex
}

/// The desired state before any node config: from the `ip=` words if any (each adds one interface), else DHCP on
/// every physical link.
pub fn before_config(ips: &[KernelIp]) -> Desired {
    let mut d = Desired::default();
    if ips.is_empty() {
        d.dhcp_all_physical = true;
    }
    // Each `ip=` adds its interface, as dracut's repeated `ip=` do; the first that names a host names it.
    for ip in ips {
        let name = match ip {
            KernelIp::Off => None,
            KernelIp::Dhcp { device: None, hostname } => {
                d.dhcp_all_physical = true;
                hostname.clone()
            }
            KernelIp::Dhcp { device: Some(dev), hostname } => {
                d.links.push(LinkSpec { link: LinkMatch::Name(dev.clone()), up: true, mtu: None, dhcp4: true });
                hostname.clone()
            }
            KernelIp::Static { addr, prefix, gateway, hostname, device, dns, ntp } => {
                d.ntp.extend(ntp.iter().map(|a| a.to_string()));
                // No device: the first physical link, resolved against the kernel's links by `effective`.
                let link = LinkMatch::Name(device.clone().unwrap_or_default());
                d.links.push(LinkSpec { link: link.clone(), up: true, mtu: None, dhcp4: false });
                d.addresses.push(AddrSpec {
                    link: link.clone(),
                    addr: IpAddr::V4(*addr),
                    prefix: *prefix,
                    origin: Origin::Static,
                });
                if let Some(gw) = gateway {
                    d.routes.push(RouteSpec {
                        dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        prefix: 0,
                        gateway: Some(IpAddr::V4(*gw)),
                        link: Some(link),
                        metric: 0,
                        onlink: false,
                        origin: Origin::Static,
                    });
                }
                d.nameservers.extend(dns.iter().map(|a| IpAddr::V4(*a)));
                hostname.clone()
            }
        };
        if d.hostname.is_none() {
            d.hostname = name;
        }
    }
    d
}

/// Replaces the empty link name (`ip=` without a device) by the first physical link's name.
fn resolve_any_link(m: &mut LinkMatch, first_physical: Option<&str>) {
    if let (LinkMatch::Name(n), Some(first)) = (&mut *m, first_physical) {
        if n.is_empty() {
            *n = first.to_string();
        }
    }
}

/// The state to converge now: the base (config or `ip=`), expanded against the kernel's links, plus leases
/// (keyed by link index).
pub fn effective(base: &Desired, obs: &Observed, leases: &BTreeMap<u32, LeaseInfo>) -> Desired {
    let mut d = base.clone();
    let first_physical = obs.links.iter().filter(|l| l.physical).min_by_key(|l| l.index).map(|l| l.name.as_str());
    for l in &mut d.links {
        resolve_any_link(&mut l.link, first_physical);
    }
    for a in &mut d.addresses {
        resolve_any_link(&mut a.link, first_physical);
    }
    for r in &mut d.routes {
        if let Some(m) = &mut r.link {
            resolve_any_link(m, first_physical);
        }
    }
    if d.dhcp_all_physical {
        // Not the members of a bond or bridge: their address belongs on the bond.
        for l in obs.links.iter().filter(|l| l.physical && !super::plan_topology::is_member(base, obs, l)) {
            if d.links.iter().all(|s| obs.link(&s.link).map(|o| o.index) != Some(l.index)) {
                d.links.push(LinkSpec { link: LinkMatch::Name(l.name.clone()), up: true, mtu: None, dhcp4: true });
            }
        }
    }
    let mut dns = Vec::new();
    let mut search = Vec::new();
    let mut ntp = Vec::new();
    for (ifindex, lease) in leases {
        let link = LinkMatch::Name(lease.ifname.clone());
        d.addresses.push(AddrSpec {
            link: link.clone(),
            addr: IpAddr::V4(lease.address),
            prefix: lease.prefix,
            origin: Origin::Dhcp,
        });
        let metric = dhcp_metric(*ifindex);
        let routes: Vec<(Ipv4Addr, u8, Ipv4Addr)> = if lease.routes.is_empty() {
            lease.routers.first().map(|gw| (Ipv4Addr::UNSPECIFIED, 0, *gw)).into_iter().collect()
        } else {
            lease.routes.clone()
        };
        for (dest, prefix, gw) in routes {
            // A gateway of 0.0.0.0 in option 121 means the destination is on the link itself.
            let gateway = (!gw.is_unspecified()).then_some(IpAddr::V4(gw));
            d.routes.push(RouteSpec {
                dest: IpAddr::V4(dest),
                prefix,
                gateway,
                link: Some(link.clone()),
                metric,
                onlink: false,
                origin: Origin::Dhcp,
            });
        }
        if let Some(mtu) = lease.mtu {
            if let Some(spec) = d.links.iter_mut().find(|s| obs.link(&s.link).map(|o| o.index) == Some(*ifindex)) {
                spec.mtu = spec.mtu.or(Some(u32::from(mtu)));
            }
        }
        dns.extend(lease.dns.iter().map(|a| IpAddr::V4(*a)));
        search.extend(lease.search.iter().cloned());
        ntp.extend(lease.ntp.iter().map(|a| a.to_string()));
        if d.hostname.is_none() {
            d.hostname = lease.hostname.clone();
        }
    }
    // Configured resolvers win over DHCP's; DHCP's fill in when the config names none.
    if d.nameservers.is_empty() {
        d.nameservers = dns;
    }
    if d.search.is_empty() {
        d.search = search;
    }
    if d.ntp.is_empty() {
        d.ntp = ntp;
    }
    d
}

/// A link that wants DHCP: desired with dhcp4 and up, present in the kernel, with a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpLink {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub carrier: bool,
}

pub fn dhcp_links(d: &Desired, obs: &Observed) -> Vec<DhcpLink> {
    d.links
        .iter()
        .filter(|s| s.dhcp4 && s.up)
        .filter_map(|s| obs.link(&s.link))
        .filter_map(|l| l.mac.map(|mac| DhcpLink { index: l.index, name: l.name.clone(), mac, carrier: l.carrier }))
        .collect()
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
