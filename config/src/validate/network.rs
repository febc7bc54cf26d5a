//! `[network]`: links, their addresses, routes and the servers the node talks to.

use std::net::IpAddr;

use super::{int_in, mac, Unique};
use crate::diag::Sink;
use crate::model::{Link, LinkSelector, Network, Route};
use crate::net::{hostname_problem, looks_like_mac, Cidr, Host};
use crate::raw::{self, At};

pub(super) fn network(net: &raw::Network, sink: &mut Sink) -> Network {
    let nameservers = list(&net.nameservers, "network.nameservers", sink, |s| {
        s.parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"))
    });
    let search = list(&net.search, "network.search", sink, |s| match hostname_problem(s, 253) {
        Some(problem) => Err(problem),
        None => Ok(s.to_string()),
    });
    let ntp = list(&net.ntp, "network.ntp", sink, |s| match (s.parse::<IpAddr>(), hostname_problem(s, 253)) {
        (Ok(ip), _) => Ok(Host::Ip(ip)),
        (Err(_), None) => Ok(Host::Name(s.to_string())),
        (Err(_), Some(_)) => Err(format!("{s:?} is neither an IP address nor a host name")),
    });
    let links = links(&net.link, sink);
    let routes = net.route.iter().enumerate().filter_map(|(i, r)| route(r.get(), i, &links, sink)).collect();
    let (bonds, vlans, bridges) = super::topology::topology(net, sink);
    // Links that failed validation are still kept above (so routes can refer to them without a second error),
    // but only the valid ones make the config.
    Network {
        nameservers,
        search,
        ntp,
        links: links.into_iter().filter_map(|(l, ok)| ok.then_some(l)).collect(),
        routes,
        bonds,
        vlans,
        bridges,
    }
}

fn list<T>(items: &[At<String>], path: &str, sink: &mut Sink, parse: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse(item.get()) {
            Ok(v) => out.push(v),
            Err(e) => sink.error(item.span(), &format!("{path}[{i}]"), e),
        }
    }
    out
}

/// Each link with whether it is valid.
fn links(raw_links: &[At<raw::Link>], sink: &mut Sink) -> Vec<(Link, bool)> {
    let mut selectors = Unique::new("link");
    let mut addresses = Unique::new("address");
    let mut out = Vec::new();
    for (i, at) in raw_links.iter().enumerate() {
        let (l, path) = (at.get(), format!("network.link[{i}]"));
        let errors_before = sink.diags.len();
        let selector = match (&l.name, &l.mac) {
            (Some(name), None) => {
                let p = format!("{path}.name");
                let sel = ifname(name, &p, sink).map(LinkSelector::Name);
                sel.inspect(|s| selectors.check(sink, s.clone(), &format!("{:?}", name.get()), name.span(), &p))
            }
            (None, Some(m)) => {
                let p = format!("{path}.mac");
                let sel = mac(m, &p, sink).map(LinkSelector::Mac);
                sel.inspect(|s| selectors.check(sink, s.clone(), &s.to_string(), m.span(), &p))
            }
            (Some(_), Some(_)) => {
                sink.error(at.span(), &path, "give exactly one of `name` or `mac`, not both");
                None
            }
            (None, None) => {
                sink.error(at.span(), &path, "needs `name` or `mac` to select its interface");
                None
            }
        };
        let mut cidrs = Vec::new();
        for (j, a) in l.addresses.iter().enumerate() {
            let p = format!("{path}.addresses[{j}]");
            if let Some(c) = interface_address(a, &p, sink) {
                addresses.check(sink, c.addr, &c.addr.to_string(), a.span(), &p);
                cidrs.push(c);
            }
        }
        let mtu = l.mtu.as_ref().and_then(|m| {
            let v6 = cidrs.iter().any(|c| c.addr.is_ipv6());
            let lo = if v6 { 1280 } else { 68 };
            if v6 && (68..1280).contains(m.get()) {
                sink.error(m.span(), &format!("{path}.mtu"), "must be at least 1280 on a link with IPv6 addresses");
                return None;
            }
            int_in(sink, m, &format!("{path}.mtu"), lo, 65535).and_then(|n| u32::try_from(n).ok())
        });
        let valid = sink.diags.len() == errors_before;
        let selector = selector.unwrap_or(LinkSelector::Name(String::new()));
        out.push((Link { selector, up: l.up, mtu, dhcp4: l.dhcp4, addresses: cidrs }, valid));
    }
    out
}

/// A Linux interface name: 1..15 bytes, no '/', ':' or whitespace, not "." or "..".
fn ifname(name: &At<String>, path: &str, sink: &mut Sink) -> Option<String> {
    let n = name.get();
    let bad_char = n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if n.is_empty() || n.len() > 15 || bad_char || n == "." || n == ".." {
        sink.error(name.span(), path, format!("{n:?} is not an interface name (1..15 bytes, no '/', ':' or spaces)"));
        return None;
    }
    Some(n.clone())
}

fn interface_address(a: &At<String>, path: &str, sink: &mut Sink) -> Option<Cidr> {
    let c = match a.get().parse::<Cidr>() {
        Ok(c) => c,
        Err(e) => {
            sink.error(a.span(), path, e);
            return None;
        }
    };
    let problem = match c.addr {
        ip if ip.is_unspecified() || ip.is_multicast() => Some("is not a unicast address".to_string()),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("is not a unicast address".to_string()),
        IpAddr::V4(_) if c.prefix < 31 && c.addr == c.network() => {
            Some(format!("is the network address of {}/{}; use a host address", c.network(), c.prefix))
        }
        IpAddr::V4(_) if c.prefix < 31 && Some(c.addr) == c.broadcast_v4() => {
            Some(format!("is the broadcast address of {}/{}; use a host address", c.network(), c.prefix))
        }
        _ => None,
    };
    match problem {
        Some(p) => {
            sink.error(a.span(), path, format!("{} {p}", c.addr));
            None
        }
        None => Some(c),
    }
}

fn route(r: &raw::Route, i: usize, links: &[(Link, bool)], sink: &mut Sink) -> Option<Route> {
    let path = format!("network.route[{i}]");
    let errors_before = sink.diags.len();
    let to = destination(&r.to, &format!("{path}.to"), sink);
    let link = r.link.as_ref().and_then(|at| {
        let wanted = at.get();
        // An empty name is the placeholder of a link without a valid selector; it matches nothing.
        let found = links.iter().map(|(l, _)| &l.selector).find(|s| match s {
            LinkSelector::Name(n) => !n.is_empty() && n == wanted,
            LinkSelector::Mac(m) => looks_like_mac(wanted) && wanted.parse().ok() == Some(*m),
        });
        if found.is_none() {
            let msg = format!("{wanted:?} is neither the name nor the mac of any [[network.link]]");
            sink.error(at.span(), &format!("{path}.link"), msg);
        }
        found.cloned()
    });
    let via = r.via.as_ref().and_then(|at| {
        let p = format!("{path}.via");
        let Ok(ip) = at.get().parse::<IpAddr>() else {
            sink.error(at.span(), &p, format!("{:?} is not an IP address", at.get()));
            return None;
        };
        if ip.is_unspecified() || ip.is_multicast() {
            sink.error(at.span(), &p, format!("{ip} is not a unicast address"));
        } else if let Some(to) = to.filter(|to| to.addr.is_ipv4() != ip.is_ipv4()) {
            sink.error(at.span(), &p, format!("gateway {ip} is not of the same IP family as the destination {to}"));
        } else if !r.onlink && (r.link.is_none() || link.is_some()) {
            let candidates: Vec<&Link> =
                links.iter().map(|(l, _)| l).filter(|l| link.as_ref().is_none_or(|s| *s == l.selector)).collect();
            if !reachable(&ip, &candidates, link.is_some()) {
                let on = link.as_ref().map_or("any link".to_string(), |s| format!("link {s}"));
                let msg = format!(
                    "gateway {ip} is in no subnet of an address on {on}; add such an address, or set onlink = true"
                );
                sink.error(at.span(), &p, msg);
            }
        }
        Some(ip)
    });
    let metric = r.metric.as_ref().and_then(|m| int_in(sink, m, &format!("{path}.metric"), 0, i64::from(u32::MAX)));
    let to = to?;
    let metric = metric.and_then(|m| u32::try_from(m).ok());
    (sink.diags.len() == errors_before).then_some(Route { to, via, link, metric, onlink: r.onlink })
}

/// `default`, `default6` or a network in CIDR form with its host bits zero.
fn destination(to: &At<String>, path: &str, sink: &mut Sink) -> Option<Cidr> {
    let text = to.get().as_str();
    let parsed = match text {
        "default" => Ok(Cidr { addr: IpAddr::V4([0, 0, 0, 0].into()), prefix: 0 }),
        "default6" => Ok(Cidr { addr: IpAddr::V6([0u16; 8].into()), prefix: 0 }),
        _ if !text.contains('/') => {
            Err(format!("{text:?} is not \"default\", \"default6\" or a network like \"10.0.0.0/8\""))
        }
        _ => text.parse::<Cidr>(),
    };
    match parsed {
        Ok(c) if c.network() != c.addr => {
            let msg = format!("{text:?} has host bits set; the network is {}/{}", c.network(), c.prefix);
            sink.error(to.span(), path, msg);
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            sink.error(to.span(), path, e);
            None
        }
    }
}

/// Whether a gateway can be reached directly from the candidate links: one of their addresses' subnets holds it,
/// or (IPv4) a link gets its subnet from DHCP, or (IPv6) it is link-local and the route names its link.
fn reachable(gw: &IpAddr, links: &[&Link], link_named: bool) -> bool {
    let link_local = matches!(gw, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    (link_local && link_named)
        || links.iter().any(|l| (gw.is_ipv4() && l.dhcp4) || l.addresses.iter().any(|a| a.contains(gw)))
}
