//! The only code that talks rtnetlink: dump links, addresses and routes into [`Observed`], and carry out one
//! planned [`Op`]. Every error comes back with the operation it belongs to; nothing here decides anything.

use super::observed::{addr_from_message, link_from_message, route_from_message, Observed, KEEL_PROTO, MAIN_TABLE};
use super::plan::{Op, RouteOp};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressProtocol};
use rtnetlink::packet_route::route::{RouteFlags, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
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

pub async fn apply(handle: &Handle, op: &Op) -> Result<(), NetlinkError> {
    let err = |source| NetlinkError::Apply { op: op.to_string(), source };
    match op {
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
