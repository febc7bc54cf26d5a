//! Networking over rtnetlink: a desired state (from config, or `ip=` and defaults before any config), a pure
//! planner, and a controller that applies the plan and repairs drift as soon as the kernel reports it.

pub mod controller;
pub mod desired;
pub mod dhcp;
mod dhcp_glue;
pub mod kernel_ip;
pub mod model;
pub mod netlink;
#[cfg(test)]
pub mod netns_tests;
#[cfg(test)]
mod netns_topology_tests;
pub mod observed;
pub mod plan;
pub mod plan_node;
mod plan_topology;
pub mod resolv;
pub mod topology;

use crate::cmdline::Settings;
use controller::{NetHandle, Options};
use model::Desired;
use std::time::Duration;

/// Starts the network controller on the boot's settings: `ip=` if given, else DHCP on every physical link.
/// Returns its handle, or `None` when netlink is unavailable (logged; the node runs on without network).
pub fn start(settings: &Settings, default_hostname: String, exec_at: Duration) -> (Option<NetHandle>, Desired) {
    let (mut ips, mut invalid) = (Vec::new(), Vec::new());
    for v in &settings.ip {
        match kernel_ip::parse(v) {
            Ok(ip) => ips.push(ip),
            Err(e) => invalid.push((v, e)),
        }
    }
    // A bad one is left out; with no valid `ip=` at all, DHCP on every link with carrier.
    let using = if ips.is_empty() { "dhcp" } else { "other-ip" };
    for (v, e) in invalid {
        log::warn!("net.ip_invalid value={} error={} using={using}", crate::logging::q(v), crate::logging::q(&e));
    }
    let base = boot_desired(settings, &ips);
    // The name DHCP announces: the one the node will carry.
    let announced = base.hostname.clone().unwrap_or_else(|| default_hostname.clone());
    let opts = Options { default_hostname, resolv_path: resolv::PATH.into(), manage_hostname: true, exec_at };
    match controller::start(base.clone(), dhcp_glue::starter(Some(announced)), opts) {
        Ok(handle) => (Some(handle), base),
        Err(e) => {
            log::error!("net.start_failed error={}", crate::logging::q(&e.to_string()));
            (None, base)
        }
    }
}

/// The desired network before any config: `ip=` (or DHCP everywhere), `keel.ntp=`, and `keel.hostname=`, which
/// is the node's name unless a config names another (it wins over `ip=`'s and DHCP's names).
pub fn boot_desired(settings: &Settings, ips: &[kernel_ip::KernelIp]) -> Desired {
    let mut base = desired::before_config(ips);
    // bond=, vlan=, bridge=: a bad one is logged and left out; the boot goes on.
    let (virtual_links, errors) = topology::from_cmdline(&settings.bond, &settings.vlan, &settings.bridge);
    for e in errors {
        log::warn!("net.cmdline_invalid error={}", crate::logging::q(&e));
    }
    base.virtual_links = virtual_links;
    if !settings.ntp.is_empty() {
        base.ntp = settings.ntp.clone();
    }
    if settings.hostname.is_some() {
        base.hostname = settings.hostname.clone();
    }
    base
}

#[cfg(test)]
mod boot_tests {
    use super::*;
    use crate::net::desired::{effective, LeaseInfo};
    use crate::net::observed::Observed;
    use std::collections::BTreeMap;

    #[test]
    fn keel_hostname_survives_dhcp_and_a_config_without_a_name() {
        let settings = Settings { hostname: Some("edge-7".into()), ..Settings::default() };
        let ip = kernel_ip::parse("dhcp").unwrap();
        let base = boot_desired(&settings, &[ip]);
        assert_eq!(base.hostname.as_deref(), Some("edge-7"));
        // A DHCP lease that names the host does not rename it.
        let lease = LeaseInfo {
            ifname: "eth0".into(),
            address: "10.0.2.15".parse().unwrap(),
            prefix: 24,
            routers: vec![],
            routes: vec![],
            dns: vec![],
            search: vec![],
            hostname: Some("dhcp-name".into()),
            mtu: None,
            ntp: vec![],
        };
        let leases = BTreeMap::from([(2u32, lease)]);
        assert_eq!(effective(&base, &Observed::default(), &leases).hostname.as_deref(), Some("edge-7"));
        // Nor does a config without a host name, with or without its own links.
        for links in ["", "[[network.link]]\nname = \"eth0\"\ndhcp4 = true\n"] {
            let text = format!("version = 1\ngeneration = 2\n{links}");
            let config = keel_config::parse("node.toml", &text).unwrap();
            assert_eq!(crate::config::apply::network(&config, &base).hostname.as_deref(), Some("edge-7"), "{links}");
        }
        let named =
            keel_config::parse("node.toml", "version = 1\ngeneration = 2\n[node]\nhostname = \"cfg\"\n").unwrap();
        assert_eq!(crate::config::apply::network(&named, &base).hostname.as_deref(), Some("cfg"), "the config wins");
        // Without keel.hostname, `ip=`'s name stays.
        let ip = kernel_ip::parse("::::from-ip::dhcp").unwrap();
        assert_eq!(boot_desired(&Settings::default(), &[ip]).hostname.as_deref(), Some("from-ip"));
    }

    #[test]
    fn repeated_ip_words_each_add_their_interface() {
        // dracut's way: DHCP on the management NIC, a static address on VLAN 100 of the bond.
        let (settings, _) = Settings::from_cmdline(
            "bond=bond0:eth1,eth2:mode=active-backup vlan=bond0.100:bond0 ip=eth0:dhcp \
             ip=10.9.100.1:::255.255.255.0:node-a:bond0.100:off:10.9.100.53 ip=bad:words:here:x",
        );
        let ips: Vec<_> = settings.ip.iter().filter_map(|v| kernel_ip::parse(v).ok()).collect();
        assert_eq!(ips.len(), 2, "{:?}", settings.ip);
        let base = boot_desired(&settings, &ips);
        let names: Vec<_> = base.links.iter().map(|l| (format!("{:?}", l.link), l.dhcp4)).collect();
        assert_eq!(names, [("Name(\"eth0\")".to_string(), true), ("Name(\"bond0.100\")".to_string(), false)]);
        assert!(!base.dhcp_all_physical, "named interfaces only");
        assert_eq!(base.addresses.len(), 1);
        assert_eq!(base.addresses[0].addr.to_string(), "10.9.100.1");
        assert_eq!(base.nameservers.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["10.9.100.53"]);
        assert_eq!(base.hostname.as_deref(), Some("node-a"));
        assert_eq!(base.virtual_links.len(), 2);
        // `ip=off` next to another adds nothing; no `ip=` at all is DHCP on every physical link.
        let off = kernel_ip::parse("off").unwrap();
        let one = kernel_ip::parse("eth0:dhcp").unwrap();
        assert_eq!(boot_desired(&Settings::default(), &[off, one]).links.len(), 1);
        assert!(boot_desired(&Settings::default(), &[]).dhcp_all_physical);
    }
}
