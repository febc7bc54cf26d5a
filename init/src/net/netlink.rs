//! The only code that talks rtnetlink: dump links, addresses and routes into [`Observed`], and carry out one
//! planned [`Op`]. Every error comes back with the operation it belongs to; nothing here decides anything.

use super::observed::{addr_from_message, link_from_message, route_from_message, Observed, KEEL_PROTO, MAIN_TABLE};
use super::plan::{Op, RouteOp};
use super::topology::{HashPolicy, VirtualKind, VirtualLink};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressProtocol};
use rtnetlink::packet_route::link::{BondLacpRate, BondMode as NlBondMode, BondXmitHashPolicy, LinkAttribute};
use rtnetlink::packet_route::route::{RouteFlags, RouteProtocol};
use rtnetlink::{Handle, LinkBond, LinkBridge, LinkUnspec, LinkVlan, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("dump {what}: {source}")]
    Dump { what: &'static str, source: rtnetlink::Error },
    #[error("{op}: {source}")]
    Apply { op: String, source: rtnetlink::Error },
    #[error("{op}: {reason}")]
    Invalid { op: String, reason: String },
}

/// Opens a request connection; its driver runs as a task (a request without it never completes).
pub fn connect() -> Result<Handle, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

fn is_physical(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).join("device").exists()
}

pub async fn dump(handle: &Handle) -> Result<Observed, NetlinkError> {
    let mut obs = Observed::default();
    let mut links = handle.link().get().execute();
    while let Some(m) = links.try_next().await.map_err(|source| NetlinkError::Dump { what: "links", source })? {
        let mut l = link_from_message(&m);
        l.physical = !l.loopback && is_physical(&l.name);
        obs.links.push(l);
    }
    let mut addrs = handle.address().get().execute();
    while let Some(m) = addrs.try_next().await.map_err(|source| NetlinkError::Dump { what: "addresses", source })? {
        obs.addrs.extend(addr_from_message(&m));
    }
    for v6 in [false, true] {
        let filter = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let mut routes = handle.route().get(filter).execute();
        while let Some(m) = routes.try_next().await.map_err(|source| NetlinkError::Dump { what: "routes", source })? {
            let r = route_from_message(&m, v6);
            if r.table == MAIN_TABLE {
                obs.routes.push(r);
            }
        }
    }
    Ok(obs)
}

fn route_message(r: &RouteOp) -> Result<rtnetlink::packet_route::route::RouteMessage, String> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dest, r.prefix)
        .map_err(|e| e.to_string())?
        .priority(r.metric)
        .protocol(RouteProtocol::Other(KEEL_PROTO));
    if let Some(gw) = r.gateway {
        b = b.gateway(gw).map_err(|e| e.to_string())?;
    }
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    let mut m = b.build();
    if r.onlink {
        m.header.flags |= RouteFlags::Onlink;
    }
    Ok(m)
}

/// The netlink message that makes `link` (a VLAN on `parent`).
fn create_message(
    link: &VirtualLink,
    parent: Option<u32>,
) -> Result<rtnetlink::packet_route::link::LinkMessage, String> {
    let mut m = match &link.kind {
        VirtualKind::Bond(o) => {
            let mut b = LinkBond::new(&link.name).mode(NlBondMode::from(o.mode.number()));
            if let Some(v) = o.miimon {
                b = b.miimon(v);
            }
            if let Some(v) = o.updelay {
                b = b.updelay(v);
            }
            if let Some(v) = o.downdelay {
                b = b.downdelay(v);
            }
            if let Some(v) = o.min_links {
                b = b.min_links(v);
            }
            if let Some(fast) = o.lacp_rate_fast {
                b = b.ad_lacp_rate(if fast { BondLacpRate::Fast } else { BondLacpRate::Slow });
            }
            if let Some(p) = o.xmit_hash_policy {
                b = b.xmit_hash_policy(match p {
                    HashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
                    HashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
                    HashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
                    HashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
                    HashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
                });
            }
            b.build()
        }
        VirtualKind::Vlan { id, .. } => {
            let parent = parent.ok_or("a VLAN needs its parent link")?;
            LinkVlan::new(&link.name, parent, *id).build()
        }
        VirtualKind::Bridge => LinkBridge::new(&link.name).build(),
    };
    if let Some(mtu) = link.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    Ok(m)
}

pub async fn apply(handle: &Handle, op: &Op) -> Result<(), NetlinkError> {
    let err = |source| NetlinkError::Apply { op: op.to_string(), source };
    match op {
        Op::CreateLink { link, parent } => {
            let m =
                create_message(link, *parent).map_err(|reason| NetlinkError::Invalid { op: op.to_string(), reason })?;
            handle.link().add(m).execute().await.map_err(err)?;
            // The kernel takes an alias only on a link that exists: mark it Keel's right after.
            let mark = LinkUnspec::new_with_name(&link.name)
                .append_extra_attribute(LinkAttribute::IfAlias(super::observed::KEEL_ALIAS.into()))
                .build();
            handle.link().set(mark).execute().await.map_err(err)
        }
        Op::DelLink { index, .. } => handle.link().del(*index).execute().await.map_err(err),
        Op::SetMaster { index, master, .. } => {
            // Bonding refuses a member that is up: down, enslave, up (the bond would bring it up; a bridge not).
            handle.link().set(LinkUnspec::new_with_index(*index).down().build()).execute().await.map_err(err)?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(*index).controller(*master).build())
                .execute()
                .await
                .map_err(err)?;
            handle.link().set(LinkUnspec::new_with_index(*index).up().build()).execute().await.map_err(err)
        }
        Op::SetLink { index, up, mtu, .. } => {
            let mut b = LinkUnspec::new_with_index(*index);
            match up {
                Some(true) => b = b.up(),
                Some(false) => b = b.down(),
                None => {}
            }
            if let Some(mtu) = mtu {
                b = b.mtu(*mtu);
            }
            handle.link().set(b.build()).execute().await.map_err(err)
        }
        Op::AddAddr { index, addr, prefix, .. } => {
            let mut req = handle.address().add(*index, *addr, *prefix).replace();
            req.message_mut().attributes.push(AddressAttribute::Protocol(AddressProtocol::Other(KEEL_PROTO)));
            req.execute().await.map_err(err)
        }
        Op::DelAddr { index, addr, prefix, .. } => {
            let message = match addr {
                IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new().index(*index).address(*a, *prefix),
                IpAddr::V6(a) => {
                    let m = rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new().index(*index).address(*a, *prefix);
                    return handle.address().del(m.build()).execute().await.map_err(err);
                }
            };
            handle.address().del(message.build()).execute().await.map_err(err)
        }
        Op::AddRoute(r) => {
            let m = route_message(r).map_err(|reason| NetlinkError::Invalid { op: op.to_string(), reason })?;
            handle.route().add(m).replace().execute().await.map_err(err)
        }
        Op::DelRoute(r) => {
            let m = route_message(r).map_err(|reason| NetlinkError::Invalid { op: op.to_string(), reason })?;
            handle.route().del(m).execute().await.map_err(err)
        }
    }
}
