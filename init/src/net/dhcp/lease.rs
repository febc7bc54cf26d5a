//! What a DHCPACK grants: the address and the configuration that comes with it.
//!
//! The address, server identifier and lease time are required (RFC 2131 table 3); an ACK without them is refused.
//! A malformed optional option is dropped with a warning rather than refusing the whole lease: a node with an
//! address and no NTP server beats a node with nothing because a server sent a bad option 42.

use super::codec::{code, Message};
use super::options::{self, OptionError, Route};
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Option 3, as the server sent it. Do not route with it directly: see [`Lease::effective_routes`], which
    /// ignores it when option 121 is present (RFC 3442).
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub ntp: Vec<Ipv4Addr>,
    /// Option 121: (destination, prefix length, gateway); a gateway of `0.0.0.0` means on-link.
    pub routes: Vec<Route>,
    pub server: Ipv4Addr,
    pub lease: Duration,
    pub t1: Duration,
    pub t2: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("no address offered (yiaddr is 0.0.0.0)")]
    NoAddress,
    #[error("no server identifier (option 54)")]
    NoServerId,
    #[error("no lease time (option 51)")]
    NoLeaseTime,
    #[error("lease time of 0 seconds")]
    ZeroLeaseTime,
    #[error("subnet mask {mask} is not contiguous")]
    BadSubnetMask { mask: Ipv4Addr },
    #[error("option {code}: {source}")]
    BadOption {
        code: u8,
        #[source]
        source: OptionError,
    },
}

/// The smallest MTU an IPv4 link may have (RFC 791); option 26 below it is ignored.
const MIN_MTU: u16 = 68;

impl Lease {
    pub fn from_ack(ack: &Message) -> Result<Lease, LeaseError> {
        let required = |code: u8| ack.options.get(code);
        let address = ack.yiaddr;
        if address.is_unspecified() {
            return Err(LeaseError::NoAddress);
        }
        let server = required(code::SERVER_ID).ok_or(LeaseError::NoServerId)?;
        let server = options::ipv4(server).map_err(|source| LeaseError::BadOption { code: code::SERVER_ID, source })?;
        let lease = required(code::LEASE_TIME).ok_or(LeaseError::NoLeaseTime)?;
        let lease =
            options::u32_be(lease).map_err(|source| LeaseError::BadOption { code: code::LEASE_TIME, source })?;
        if lease == 0 {
            return Err(LeaseError::ZeroLeaseTime);
        }
        let prefix_len = match ack.options.get(code::SUBNET_MASK) {
            Some(mask) => {
                let mask =
                    options::ipv4(mask).map_err(|source| LeaseError::BadOption { code: code::SUBNET_MASK, source })?;
                options::prefix_len(mask).ok_or(LeaseError::BadSubnetMask { mask })?
            }
            None => classful_prefix(address),
        };

        let lease = Duration::from_secs(u64::from(lease));
        let (t1, t2) = timers(
            lease,
            optional(ack, code::RENEWAL_TIME, options::u32_be),
            optional(ack, code::REBINDING_TIME, options::u32_be),
        );
        Ok(Lease {
            address,
            prefix_len,
            routers: optional(ack, code::ROUTERS, options::ipv4_list).unwrap_or_default(),
            dns: optional(ack, code::DNS, options::ipv4_list).unwrap_or_default(),
            search: optional(ack, code::DOMAIN_SEARCH, options::domain_search).unwrap_or_default(),
            domain: optional(ack, code::DOMAIN_NAME, options::text),
            hostname: optional(ack, code::HOSTNAME, options::text),
            mtu: optional(ack, code::MTU, options::u16_be).filter(|mtu| *mtu >= MIN_MTU),
            ntp: optional(ack, code::NTP, options::ipv4_list).unwrap_or_default(),
            routes: optional(ack, code::CLASSLESS_ROUTES, options::classless_routes).unwrap_or_default(),
            server,
            lease,
            t1,
            t2,
        })
    }

    /// The routes to install: option 121's when the server sent any, else a default route via the first router.
    /// RFC 3442: "If the DHCP server returns both a Classless Static Routes option and a Router option, the DHCP
    /// client MUST ignore the Router option."
    pub fn effective_routes(&self) -> Vec<Route> {
        if !self.routes.is_empty() {
            return self.routes.clone();
        }
        self.routers.first().map(|gw| vec![(Ipv4Addr::UNSPECIFIED, 0, *gw)]).unwrap_or_default()
    }

    /// The gateway of the effective default route, if there is one.
    pub fn default_gateway(&self) -> Option<Ipv4Addr> {
        self.effective_routes().into_iter().find(|(_, prefix, _)| *prefix == 0).map(|(_, _, gw)| gw)
    }

    /// Names of the fields that differ in `newer` (what a renewal changed), ignoring the timers.
    pub fn changes(&self, newer: &Lease) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        check("address", self.address != newer.address);
        check("prefix_len", self.prefix_len != newer.prefix_len);
        check("routers", self.routers != newer.routers);
        check("dns", self.dns != newer.dns);
        check("search", self.search != newer.search);
        check("domain", self.domain != newer.domain);
        check("hostname", self.hostname != newer.hostname);
        check("mtu", self.mtu != newer.mtu);
        check("ntp", self.ntp != newer.ntp);
        check("routes", self.routes != newer.routes);
        check("server", self.server != newer.server);
        changed
    }
}

/// An optional option: absent → `None`; malformed → `None` and a warning.
fn optional<T>(msg: &Message, code: u8, parse: fn(&[u8]) -> Result<T, OptionError>) -> Option<T> {
    let data = msg.options.get(code)?;
    match parse(data) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!(
                "net.dhcp.option_ignored code={code} len={} error={}",
                data.len(),
                crate::logging::q(&e.to_string())
            );
            None
        }
    }
}

/// T1 and T2 (RFC 2131 §4.4.5): the server's when they make sense (T1 < T2 < lease), else 0.5 and 0.875 of the
/// lease.
fn timers(lease: Duration, t1: Option<u32>, t2: Option<u32>) -> (Duration, Duration) {
    let secs = |v: Option<u32>| v.map(|s| Duration::from_secs(u64::from(s)));
    let t2 = secs(t2).filter(|t2| *t2 < lease).unwrap_or(lease * 7 / 8);
    let default_t1 = if lease / 2 < t2 { lease / 2 } else { t2 * 4 / 7 };
    let t1 = secs(t1).filter(|t1| *t1 < t2).unwrap_or(default_t1);
    (t1, t2)
}

/// The historic class A/B/C prefix, for servers that send no subnet mask.
fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_default_and_sanitise() {
        let lease = Duration::from_secs(1000);
        assert_eq!(timers(lease, None, None), (Duration::from_secs(500), Duration::from_secs(875)));
        assert_eq!(timers(lease, Some(100), Some(200)), (Duration::from_secs(100), Duration::from_secs(200)));
        // T2 past the lease: default T2; T1 past T2: default T1.
        assert_eq!(timers(lease, Some(100), Some(2000)), (Duration::from_secs(100), Duration::from_secs(875)));
        assert_eq!(timers(lease, Some(900), Some(800)), (Duration::from_secs(500), Duration::from_secs(800)));
        // T2 given below the default T1: T1 stays below T2, in the default proportion.
        let (t1, t2) = timers(lease, None, Some(350));
        assert_eq!((t1.as_secs(), t2.as_secs()), (200, 350));
        // The infinite lease (0xffffffff) does not overflow.
        let (t1, t2) = timers(Duration::from_secs(u64::from(u32::MAX)), None, None);
        assert!(t1 < t2);
    }

    #[test]
    fn classful_defaults() {
        assert_eq!(classful_prefix(Ipv4Addr::new(10, 0, 0, 1)), 8);
        assert_eq!(classful_prefix(Ipv4Addr::new(172, 16, 0, 1)), 16);
        assert_eq!(classful_prefix(Ipv4Addr::new(192, 168, 1, 1)), 24);
    }
}
