//! The desired network state: what the node's links, addresses, routes, resolvers and host name should be.
//! It is built from the node config, or before any config from the kernel command line (`ip=`) and defaults, and
//! DHCP leases add to it. The controller converges the kernel to it; nothing here touches the kernel.

use std::fmt;
use std::net::IpAddr;

/// How a desired item names its link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkMatch {
    Name(String),
    Mac([u8; 6]),
}

impl fmt::Display for LinkMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkMatch::Name(n) => f.write_str(n),
            LinkMatch::Mac(m) => f.write_str(&format_mac(m)),
        }
    }
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Where a desired item comes from: shown in status, and DHCP items go when their lease does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Static,
    Dhcp,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Static => "static",
            Origin::Dhcp => "dhcp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub link: LinkMatch,
    pub up: bool,
    pub mtu: Option<u32>,
    pub dhcp4: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrSpec {
    pub link: LinkMatch,
    pub addr: IpAddr,
    pub prefix: u8,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    /// Destination network (host bits zero); `0.0.0.0/0` or `::/0` for a default route.
    pub dest: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// Output link; without one the kernel picks it from the gateway.
    pub link: Option<LinkMatch>,
    pub metric: u32,
    pub onlink: bool,
    pub origin: Origin,
}

/// Everything the network controller converges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub links: Vec<LinkSpec>,
    pub addresses: Vec<AddrSpec>,
    pub routes: Vec<RouteSpec>,
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub hostname: Option<String>,
    /// SNTP servers (addresses or names); DHCP option 42 fills in when empty.
    pub ntp: Vec<String>,
    /// Bring up every physical link and run DHCP on those with carrier (the default before any config).
    pub dhcp_all_physical: bool,
    /// Bonds, VLANs and bridges Keel makes (from config, or `bond=`/`vlan=`/`bridge=` before any).
    pub virtual_links: Vec<super::topology::VirtualLink>,
}

/// `10.0.0.0/8` → network address with host bits cleared.
pub fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// Is `ip` inside `net/prefix`?
pub fn contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    net.is_ipv4() == ip.is_ipv4() && network(net, prefix) == network(ip, prefix)
}

/// Netmask (`255.255.255.0`) → prefix length, if the mask is contiguous.
pub fn mask_to_prefix(mask: std::net::Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("52:54:00:AB:cd:01").unwrap();
        assert_eq!(format_mac(&m), "52:54:00:ab:cd:01");
        assert!(parse_mac("52:54:00:ab:cd").is_none());
        assert!(parse_mac("52:54:00:ab:cd:01:02").is_none());
        assert!(parse_mac("5:54:00:ab:cd:01").is_none());
    }

    #[test]
    fn networks_and_masks() {
        assert_eq!(network("10.1.2.3".parse().unwrap(), 8), "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(network("10.1.2.3".parse().unwrap(), 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(network("fd00::1:2".parse().unwrap(), 64), "fd00::".parse::<IpAddr>().unwrap());
        assert!(contains("10.0.2.0".parse().unwrap(), 24, "10.0.2.2".parse().unwrap()));
        assert!(!contains("10.0.2.0".parse().unwrap(), 24, "10.0.3.2".parse().unwrap()));
        assert!(!contains("10.0.2.0".parse().unwrap(), 24, "fd00::1".parse().unwrap()));
        assert_eq!(mask_to_prefix("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(mask_to_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(mask_to_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(mask_to_prefix("255.0.255.0".parse().unwrap()), None);
    }
}
