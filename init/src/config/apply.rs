//! From an accepted config to each controller's desired state. Pure: the config was validated already, so this
//! only translates types. A config without `[[network.link]]` keeps the boot's network (DHCP on every physical
//! link, or `ip=`), while its resolvers, search domains, NTP servers and host name still apply.

use crate::controller::files::FileSpec;
use crate::net::model::{AddrSpec, Desired, LinkMatch, LinkSpec, Origin, RouteSpec};
use keel_config::model::LinkSelector;
use keel_config::Config;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn link_match(s: &LinkSelector) -> LinkMatch {
    match s {
        LinkSelector::Name(n) => LinkMatch::Name(n.clone()),
        LinkSelector::Mac(m) => LinkMatch::Mac(m.0),
    }
}

/// The network the config asks for, on top of `boot` (the desired state before any config).
pub fn network(config: &Config, boot: &Desired) -> Desired {
    let net = &config.network;
    let mut d = if net.links.is_empty() { boot.clone() } else { Desired::default() };
    for link in &net.links {
        let m = link_match(&link.selector);
        d.links.push(LinkSpec { link: m.clone(), up: link.up, mtu: link.mtu, dhcp4: link.dhcp4 });
        for a in &link.addresses {
            d.addresses.push(AddrSpec { link: m.clone(), addr: a.addr, prefix: a.prefix, origin: Origin::Static });
        }
    }
    // Routes apply over the config's links, or over the boot network when the config names none (their
    // gateways must then be reachable from it).
    for r in &net.routes {
        d.routes.push(RouteSpec {
            dest: r.to.addr,
            prefix: r.to.prefix,
            gateway: r.via,
            link: r.link.as_ref().map(link_match),
            metric: r.metric.unwrap_or(0),
            onlink: r.onlink,
            origin: Origin::Static,
        });
    }
    // Bonds, VLANs and bridges: the config's, else the ones the command line made (a config that only sets
    // addresses on `bond0` keeps the `bond=` that brought the node up).
    let virtual_links = crate::net::topology::from_config(net);
    d.virtual_links = if virtual_links.is_empty() { boot.virtual_links.clone() } else { virtual_links };
    if !net.nameservers.is_empty() {
        d.nameservers = net.nameservers.clone();
    }
    if !net.search.is_empty() {
        d.search = net.search.clone();
    }
    if !net.ntp.is_empty() {
        d.ntp = net.ntp.iter().map(|h| h.to_string()).collect();
    }
    // The config's name, else the boot's (`keel.hostname=`, `ip=`), even when the config brings its own links.
    d.hostname = config.target.hostname.clone().or_else(|| boot.hostname.clone());
    d
}

/// The config's volumes, outermost mount first (a volume mounted inside another comes after it).
pub fn volumes(config: &Config) -> Vec<keel_config::model::Volume> {
    let mut volumes = config.volumes.clone();
    volumes.sort_by_key(|v| v.mount.matches('/').count());
    volumes
}

/// The log collectors (`[[log.forward]]`), as the log forwarding controller runs them.
pub fn log_forward(config: &Config) -> Vec<keel_config::model::LogForward> {
    config.log_forward.clone()
}

/// The image the config's `[upgrade]` names, for the upgrade source (None: nothing to fetch).
pub fn upgrade(config: &Config) -> Option<keel_config::model::Upgrade> {
    config.upgrade.clone()
}

pub fn sysctls(config: &Config) -> BTreeMap<String, String> {
    config.sysctl.clone()
}

pub fn files(config: &Config) -> Vec<FileSpec> {
    config
        .files
        .iter()
        .map(|f| FileSpec {
            path: PathBuf::from(&f.path),
            content: f.content.clone(),
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::desired::before_config;

    fn parse(text: &str) -> Config {
        keel_config::parse("node.toml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_without_links_keeps_boot_network_and_adds_resolvers_and_hostname() {
        let c = parse(
            "version = 1\ngeneration = 2\n[node]\nhostname = \"edge-1\"\n[network]\nnameservers = [\"10.0.2.3\"]\n\
             ntp = [\"10.0.2.2\", \"pool.example\"]\n",
        );
        let d = network(&c, &before_config(&[]));
        assert!(d.dhcp_all_physical);
        assert_eq!(d.hostname.as_deref(), Some("edge-1"));
        assert_eq!(d.nameservers, vec!["10.0.2.3".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(d.ntp, ["10.0.2.2", "pool.example"]);
    }

    #[test]
    fn links_addresses_and_routes_replace_the_boot_network() {
        let c = parse(
            "version = 1\ngeneration = 2\n[[network.link]]\nmac = \"52:54:00:12:34:56\"\nmtu = 1400\n\
             addresses = [\"10.0.2.15/24\", \"fd00::15/64\"]\n[[network.route]]\nto = \"default\"\nvia = \"10.0.2.2\"\n\
             link = \"52:54:00:12:34:56\"\nmetric = 5\n",
        );
        let d = network(&c, &before_config(&[]));
        assert!(!d.dhcp_all_physical);
        let mac = LinkMatch::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(d.links, vec![LinkSpec { link: mac.clone(), up: true, mtu: Some(1400), dhcp4: false }]);
        assert_eq!(d.addresses.len(), 2);
        assert_eq!(d.routes[0].dest, "0.0.0.0".parse::<std::net::IpAddr>().unwrap());
        assert_eq!((d.routes[0].prefix, d.routes[0].metric, d.routes[0].link.clone()), (0, 5, Some(mac)));
    }

    #[test]
    fn sysctls_and_files_translate() {
        let c = parse(
            "version = 1\ngeneration = 2\n[sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[[file]]\npath = \"/run/motd\"\n\
             content = \"hi\\n\"\nmode = \"0640\"\n",
        );
        assert_eq!(sysctls(&c).get("net.ipv4.ip_forward").map(String::as_str), Some("1"));
        let f = files(&c);
        assert_eq!((f[0].path.to_str(), f[0].content.as_slice(), f[0].mode), (Some("/run/motd"), &b"hi\n"[..], 0o640));
    }

    #[test]
    fn log_collectors_and_the_upgrade_image_translate() {
        let digest = "a".repeat(64);
        let c = parse(&format!(
            "version = 1\ngeneration = 2\n[[log.forward]]\nurl = \"tcp://10.0.2.2:5514\"\n[upgrade]\n\
             url = \"http://h/slot.img\"\nsha256 = \"{digest}\"\n"
        ));
        let logs = log_forward(&c);
        assert_eq!((logs.len(), logs[0].host.as_str(), logs[0].port), (1, "10.0.2.2", 5514));
        let u = upgrade(&c).expect("the config names an image");
        assert_eq!((u.url.as_str(), u.sha256.as_str()), ("http://h/slot.img", digest.as_str()));
        assert_eq!(upgrade(&parse("version = 1\ngeneration = 3\n")), None, "no [upgrade]: nothing to fetch");
        assert!(log_forward(&parse("version = 1\ngeneration = 3\n")).is_empty());
    }
}
