//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst), interpreted by Keel so bare metal
//! can come up static without a DHCP server:
//! `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>`,
//! or one word: `ip=dhcp` (also `on`, `any`, `both`, `bootp`) or `ip=off` (also `none`), or dracut's
//! `ip=<interface>:<autoconf>[:<mtu>[:<mac>]]` (`ip=bond0.100:dhcp`, for a bond or VLAN from `bond=`/`vlan=`).

use super::model::mask_to_prefix;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelIp {
    /// No automatic configuration at all.
    Off,
    /// DHCP on `device`, or on every physical link.
    Dhcp { device: Option<String>, hostname: Option<String> },
    Static {
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        hostname: Option<String>,
        /// Without one, the first physical link.
        device: Option<String>,
        dns: Vec<Ipv4Addr>,
        ntp: Vec<Ipv4Addr>,
    },
}

fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

fn ipv4(field: &str, value: Option<&str>) -> Result<Option<Ipv4Addr>, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| format!("{field} {v:?} is not an IPv4 address")),
    }
}

/// The prefix a classful network had, which is what the kernel assumes without a netmask.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

pub fn parse(value: &str) -> Result<KernelIp, String> {
    match value {
        "off" | "none" => return Ok(KernelIp::Off),
        "on" | "any" | "dhcp" | "both" | "bootp" => return Ok(KernelIp::Dhcp { device: None, hostname: None }),
        "rarp" => return Err("rarp is not supported; use dhcp or a static address".into()),
        _ => {}
    }
    let f: Vec<&str> = value.split(':').collect();
    // dracut: <interface>:<autoconf>[:<mtu>[:<mac>]] (the first field is a name, not an address).
    if (2..=4).contains(&f.len()) && f[0].starts_with(|c: char| c.is_ascii_alphabetic()) {
        let device = f[0].to_string();
        if !super::topology::valid_ifname(&device) {
            return Err(format!("interface {device:?} is not an interface name"));
        }
        return match f[1] {
            "on" | "any" | "dhcp" | "both" | "bootp" => Ok(KernelIp::Dhcp { device: Some(device), hostname: None }),
            "off" | "none" => Ok(KernelIp::Off),
            other => Err(format!("{device}:{other}: autoconf {other:?} is not dhcp, on, any, off or none")),
        };
    }
    if f.len() > 10 {
        return Err(format!("{} fields; ip= has at most 10", f.len()));
    }
    let get = |i: usize| f.get(i).copied();
    let client = ipv4("client address", get(0))?;
    let _server = ipv4("server address", get(1))?;
    let gateway = ipv4("gateway", get(2))?;
    let netmask = ipv4("netmask", get(3))?;
    let hostname = opt(get(4));
    if let Some(h) = &hostname {
        if !crate::cmdline::valid_hostname(h) {
            return Err(format!("hostname {h:?} is not a valid host name"));
        }
    }
    let device = opt(get(5));
    let autoconf = get(6).unwrap_or("");
    let dns: Vec<Ipv4Addr> = [ipv4("dns0", get(7))?, ipv4("dns1", get(8))?].into_iter().flatten().collect();
    let ntp: Vec<Ipv4Addr> = ipv4("ntp0", get(9))?.into_iter().collect();
    let dynamic = match autoconf {
        "" => client.is_none(),
        "off" | "none" => false,
        "on" | "any" | "dhcp" | "both" | "bootp" => true,
        other => return Err(format!("autoconf {other:?} is not off, none, on, any, dhcp, both or bootp")),
    };
    if dynamic {
        return Ok(KernelIp::Dhcp { device, hostname });
    }
    let Some(addr) = client else {
        return Err("autoconf is off but no client address is given".into());
    };
    let prefix = match netmask {
        Some(m) => mask_to_prefix(m).ok_or_else(|| format!("netmask {m} is not contiguous"))?,
        None => classful_prefix(addr),
    };
    if let Some(gw) = gateway {
        if !super::model::contains(addr.into(), prefix, gw.into()) {
            return Err(format!("gateway {gw} is not in {addr}/{prefix}"));
        }
    }
    Ok(KernelIp::Static { addr, prefix, gateway, hostname, device, dns, ntp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dracut_interface_form() {
        assert_eq!(parse("bond0.100:dhcp"), Ok(KernelIp::Dhcp { device: Some("bond0.100".into()), hostname: None }));
        assert_eq!(parse("bond0:dhcp:9000"), Ok(KernelIp::Dhcp { device: Some("bond0".into()), hostname: None }));
        assert_eq!(parse("eth0:off"), Ok(KernelIp::Off));
        assert!(parse("eth0:static").unwrap_err().contains("autoconf \"static\""));
        // The kernel's form still starts with an address (or nothing).
        assert!(matches!(parse("10.0.0.5::10.0.0.1:255.255.255.0::eth0:off"), Ok(KernelIp::Static { .. })));
        assert!(matches!(parse(":::::eth1:dhcp"), Ok(KernelIp::Dhcp { .. })));
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn one_word_forms() {
        assert_eq!(parse("dhcp"), Ok(KernelIp::Dhcp { device: None, hostname: None }));
        assert_eq!(parse("on"), Ok(KernelIp::Dhcp { device: None, hostname: None }));
        assert_eq!(parse("off"), Ok(KernelIp::Off));
        assert!(parse("rarp").unwrap_err().contains("not supported"));
    }

    #[test]
    fn full_static_form() {
        let got = parse("10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:edge-1:eth0:off:10.0.2.3:1.1.1.1:10.0.2.2");
        assert_eq!(
            got,
            Ok(KernelIp::Static {
                addr: v4("10.0.2.15"),
                prefix: 24,
                gateway: Some(v4("10.0.2.2")),
                hostname: Some("edge-1".into()),
                device: Some("eth0".into()),
                dns: vec![v4("10.0.2.3"), v4("1.1.1.1")],
                ntp: vec![v4("10.0.2.2")],
            })
        );
    }

    #[test]
    fn short_static_form_uses_classful_mask_and_any_device() {
        let got = parse("192.168.7.9::192.168.7.1").unwrap();
        assert_eq!(
            got,
            KernelIp::Static {
                addr: v4("192.168.7.9"),
                prefix: 24,
                gateway: Some(v4("192.168.7.1")),
                hostname: None,
                device: None,
                dns: vec![],
                ntp: vec![],
            }
        );
        assert!(matches!(parse("10.1.2.3").unwrap(), KernelIp::Static { prefix: 8, .. }));
    }

    #[test]
    fn dhcp_on_one_device() {
        assert_eq!(parse(":::::eth1:dhcp"), Ok(KernelIp::Dhcp { device: Some("eth1".into()), hostname: None }));
        assert_eq!(
            parse("::::node7:eth1:"),
            Ok(KernelIp::Dhcp { device: Some("eth1".into()), hostname: Some("node7".into()) })
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(parse("10.0.2.300::::::off").unwrap_err(), "client address \"10.0.2.300\" is not an IPv4 address");
        assert_eq!(parse("10.0.2.15:::255.0.255.0::::").unwrap_err(), "netmask 255.0.255.0 is not contiguous");
        assert_eq!(parse("10.0.2.15::10.9.9.9:255.255.255.0").unwrap_err(), "gateway 10.9.9.9 is not in 10.0.2.15/24");
        assert_eq!(parse(":::::eth0:off").unwrap_err(), "autoconf is off but no client address is given");
        assert!(parse("10.0.2.15::::bad_name").unwrap_err().contains("hostname"));
        assert!(parse("10.0.2.15:::::eth0:maybe").unwrap_err().contains("autoconf"));
        assert!(parse("1:2:3:4:5:6:7:8:9:10:11").unwrap_err().contains("at most 10"));
    }
}
