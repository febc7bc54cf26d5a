//! Small network value types the config uses: MAC addresses, CIDR prefixes, host and domain names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An Ethernet MAC address, written `52:54:00:12:34:56` (case-insensitive in, lowercase out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<MacAddr, String> {
        let bad = || format!("{text:?} is not a MAC address like 52:54:00:12:34:56");
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(MacAddr(bytes)),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An address with a prefix length: an interface address (`10.0.2.15/24`) or a route destination (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn max_prefix(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// The IPv4 broadcast address of the subnet (all host bits set); None for IPv6.
    pub fn broadcast_v4(&self) -> Option<IpAddr> {
        match self.addr {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0);
                Some(IpAddr::V4((u32::from(a) | host).into()))
            }
            IpAddr::V6(_) => None,
        }
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && Cidr { addr: *ip, prefix: self.prefix }.network() == self.network()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} has no prefix length (like 10.0.2.15/24)"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = Cidr::max_prefix(&addr);
        let prefix = match prefix.parse::<u8>() {
            Ok(p) if p <= max && !prefix.starts_with('+') => p,
            _ => return Err(format!("prefix length {prefix:?} must be 0..{max}")),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An NTP (or other) server: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Why `name` is not an RFC 1123 host name of at most `max` characters (dot-separated labels of letters, digits
/// and inner hyphens, each 1..63 long), or None when it is one.
pub fn hostname_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > max {
        return Some(format!("{name:?} is longer than {max} characters"));
    }
    for label in name.strip_suffix('.').unwrap_or(name).split('.') {
        let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "{name:?} is not an RFC 1123 host name (labels of letters, digits and inner '-', 1..63 long)"
            ));
        }
    }
    None
}

/// Whether `mac` is written like one: used to tell a route's `link = "52:54:…"` from `link = "eth0"`.
pub fn looks_like_mac(text: &str) -> bool {
    text.len() == 17 && text.bytes().filter(|b| *b == b':').count() == 5
}

/// A machine id or SMBIOS UUID, normalized to 32 lowercase hex digits. Accepts the dashed 8-4-4-4-12 form.
pub fn normalize_machine_id(text: &str) -> Option<String> {
    let dashed = text.len() == 36 && [8, 13, 18, 23].iter().all(|i| text.as_bytes()[*i] == b'-');
    let hex: String = if dashed { text.chars().filter(|c| *c != '-').collect() } else { text.to_string() };
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        for bad in
            ["52:54:00:ab:cd", "52:54:00:ab:cd:0f:00", "5254.00ab.cd0f", "52:54:00:ab:cd:g0", "2:54:00:ab:cd:0f0"]
        {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.2.15/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.0.2.0");
        assert_eq!(c.broadcast_v4().unwrap().to_string(), "10.0.2.255");
        assert!(c.contains(&"10.0.2.2".parse().unwrap()));
        assert!(!c.contains(&"10.0.3.2".parse().unwrap()));
        assert!(!c.contains(&"::1".parse().unwrap()));
        let d: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains(&"1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::15/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00::");
        assert!(v6.contains(&"fd00::1".parse().unwrap()));
        assert_eq!("::/0".parse::<Cidr>().unwrap().network().to_string(), "::");
        for bad in ["10.0.2.15", "10.0.2.15/33", "fd00::/129", "10.0.2/24", "10.0.2.15/+4", "x/1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname_problem("edge-1", 64), None);
        assert_eq!(hostname_problem("edge-1.example.org", 64), None);
        assert!(hostname_problem("-edge", 64).is_some());
        assert!(hostname_problem("edge_1", 64).is_some());
        assert!(hostname_problem("a..b", 64).is_some());
        assert!(hostname_problem(&"a".repeat(65), 64).is_some());
    }

    #[test]
    fn machine_ids() {
        let want = Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_string());
        assert_eq!(normalize_machine_id("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"), want);
        assert_eq!(normalize_machine_id("0a1b2c3d4e5f60718293a4b5c6d7e8f9"), want);
        assert_eq!(normalize_machine_id("0a1b2c3d-4e5f60718293a4b5c6d7e8f9"), None);
        assert_eq!(normalize_machine_id("0a1b2c3d4e5f60718293a4b5c6d7e8fz"), None);
    }
}
