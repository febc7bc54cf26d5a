//! The status document `/v1/status` serves: one typed view ([`keel_config::status::NodeStatus`], the type keelctl
//! reads) over what every part of the init publishes.

use crate::config::run::ConfigHandle;
use crate::controller::{ControllerStatus, ItemState};
use crate::net::controller::NetStatus;
use crate::net::observed::KEEL_PROTO;
use crate::time::TimeStatus;
use keel_config::status as st;

fn controller(s: &ControllerStatus) -> st::ControllerStatus {
    let items = s
        .items
        .iter()
        .map(|(name, state)| {
            let (state, reason) = match state {
                ItemState::Converged => ("converged", None),
                ItemState::Waiting(why) => ("waiting", Some(why.clone())),
                ItemState::Failed(why) => ("failed", Some(why.clone())),
            };
            st::ControllerItem { name: name.clone(), state: state.into(), reason }
        })
        .collect();
    st::ControllerStatus {
        converged: s.converged,
        generation: s.generation,
        items,
        error: s.error.clone(),
        writes: s.writes,
        repairs: s.repairs,
        runs: s.runs,
    }
}

fn address_origin(proto: u8, is_lease: bool) -> String {
    match proto {
        KEEL_PROTO if is_lease => "dhcp".into(),
        KEEL_PROTO => "static".into(),
        0..=3 => "kernel".into(),
        p => format!("other:{p}"),
    }
}

fn route_origin(proto: u8, metric: u32, oif: Option<u32>) -> String {
    match proto {
        KEEL_PROTO if oif.is_some_and(|i| metric == crate::net::desired::dhcp_metric(i)) => "dhcp".into(),
        KEEL_PROTO => "static".into(),
        2 => "kernel".into(),
        9 => "ra".into(),
        p => format!("other:{p}"),
    }
}

pub fn network(s: &NetStatus) -> st::NetworkStatus {
    let name = |i: u32| s.observed.link_name(i);
    let links = s
        .observed
        .links
        .iter()
        .map(|l| st::LinkStatus {
            name: l.name.clone(),
            index: l.index,
            mac: l.mac.map(|m| crate::net::model::format_mac(&m)),
            up: l.up,
            carrier: l.carrier,
            mtu: l.mtu,
            physical: l.physical,
        })
        .collect();
    let addresses = s
        .observed
        .addrs
        .iter()
        .map(|a| {
            let leased = s.leases.get(&a.index).is_some_and(|l| std::net::IpAddr::V4(l.address) == a.addr);
            st::AddressStatus {
                link: name(a.index),
                address: format!("{}/{}", a.addr, a.prefix),
                origin: address_origin(a.proto, leased),
            }
        })
        .collect();
    let routes = s
        .observed
        .routes
        .iter()
        .map(|r| st::RouteStatus {
            to: format!("{}/{}", r.dest, r.prefix),
            via: r.gateway.map(|g| g.to_string()),
            link: r.oif.map(name),
            metric: r.metric,
            origin: route_origin(r.proto, r.metric, r.oif),
        })
        .collect();
    let strings = |v: &[std::net::Ipv4Addr]| v.iter().map(|a| a.to_string()).collect();
    let leases = s
        .leases
        .values()
        .map(|l| st::LeaseStatus {
            link: l.ifname.clone(),
            address: format!("{}/{}", l.address, l.prefix),
            routers: strings(&l.routers),
            dns: strings(&l.dns),
        })
        .collect();
    st::NetworkStatus {
        ready: s.ready,
        generation: s.generation,
        hostname: s.hostname.clone(),
        links,
        addresses,
        routes,
        leases,
        nameservers: s.nameservers.clone(),
        ntp: s.ntp.clone(),
        pending: s.pending.iter().map(|p| st::PendingItem { item: p.item.clone(), reason: p.reason.clone() }).collect(),
        failed: s.failed.iter().map(|(op, e)| st::FailedOp { op: op.clone(), error: e.clone() }).collect(),
        reconciles: s.reconciles,
        writes: s.writes,
    }
}

pub fn time(t: &TimeStatus) -> st::TimeStatus {
    st::TimeStatus {
        synced: t.synced,
        source: t.source.to_string(),
        server: t.server.clone(),
        offset_ms: t.offset_ms,
        delay_ms: t.delay_ms,
        error: t.error.clone(),
    }
}

pub fn config(c: &ConfigHandle) -> st::ConfigStatus {
    let applied = c.applied.borrow().clone();
    let rejection = c.rejection.borrow().clone();
    let pull = c.pull.borrow().clone();
    let waiting = c.waiting.borrow().clone();
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    st::ConfigStatus {
        generation: applied.as_ref().map(|a| a.generation),
        source: applied.as_ref().map(|a| a.source.clone()),
        signer: applied.as_ref().map(|a| a.signer.clone()),
        fingerprint: applied.as_ref().map(|a| a.fingerprint.clone()),
        accepted_at: applied.as_ref().map(|a| secs(a.accepted_at)),
        converged_generation: *c.converged.borrow(),
        convergence: applied.as_ref().map(|a| c.registry.report(a.generation)),
        last_rejection: rejection.map(|r| st::RejectionStatus {
            reason: r.code.to_string(),
            detail: r.detail,
            source: r.source,
        }),
        rollout: waiting.map(|w| rollout_waiting(&w)),
        pull: pull.url.clone().map(|url| st::PullStatus {
            url,
            polls: pull.polls,
            failures: pull.failures,
            last_error: pull.last_error.clone(),
        }),
    }
}

/// `config.rollout` and the PUT reply's `waiting_rollout`: the held generation and when it applies.
pub fn rollout_waiting(w: &crate::config::rollout::Waiting) -> st::RolloutWaiting {
    st::RolloutWaiting {
        state: "waiting-rollout".into(),
        generation: w.generation,
        applies_at: w.applies_at.to_string(),
        applies_at_unix: w.applies_at.unix_seconds,
        slot: w.slot,
        source: w.source.clone(),
    }
}

pub fn services(c: &ConfigHandle) -> st::ServicesStatus {
    let s = c.services_status.borrow();
    let services = s
        .services
        .iter()
        .map(|(name, x)| {
            let v = st::ServiceStatus {
                state: x.state.to_string(),
                pid: x.pid,
                restarts: x.restarts,
                last_exit: x.last_exit.map(|e| e.to_string()),
                since_s: x.since.as_secs_f64(),
                artifact: x.artifact.clone(),
                reason: x.reason.clone(),
                image: x.image.clone(),
                pull_percent: x.pull_percent,
            };
            (name.clone(), v)
        })
        .collect();
    st::ServicesStatus { generation: s.generation, converged: s.converged, services }
}

pub fn controllers(c: &ConfigHandle) -> std::collections::BTreeMap<String, st::ControllerStatus> {
    let mut all: std::collections::BTreeMap<String, st::ControllerStatus> = [
        ("sysctl", controller(&c.sysctl.borrow())),
        ("files", controller(&c.files.borrow())),
        ("logs", controller(&c.registry.logs.borrow())),
        ("upgrade", controller(&c.upgrade.borrow())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(net) = &c.registry.net {
        all.insert("network".into(), controller(&net.borrow()));
    }
    all
}

/// The state volume (or why /var is tmpfs) and the config's volumes.
pub fn storage(c: &ConfigHandle) -> st::StorageStatus {
    crate::storage::status_json::storage(&c.storage.borrow(), crate::storage::state::boot_state())
}

/// The running config (`GET /v1/config`): node.toml's shape in an envelope saying where it came from; the
/// content of secret files is redacted.
pub fn running_config(c: &ConfigHandle) -> st::RunningConfig {
    let Some(a) = c.applied.borrow().clone() else {
        return st::RunningConfig::default();
    };
    applied_config(&a)
}

/// [`running_config`] of one applied config.
fn applied_config(a: &crate::config::pipeline::Applied) -> st::RunningConfig {
    st::RunningConfig {
        config: Some(st::RunningBody::of(&a.config, a.generation)),
        generation: Some(a.generation),
        signer: Some(a.signer.clone()),
        source: Some(a.source.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_file_content_never_leaves_the_node_and_grants_are_shown() {
        let text =
            "version = 1\ngeneration = 5\n[[file]]\npath = \"/var/lib/app/token\"\ncontent = \"hunter2-s3cr3t\"\n\
                    secret = true\n[[file]]\npath = \"/run/motd\"\ncontent = \"hello\"\n\
                    [[service]]\nname = \"vpn\"\nexec = \"/usr/bin/vpn\"\ndevices = [\"/dev/net/tun\"]\n";
        let config = keel_config::parse("node.toml", text).unwrap();
        let a = crate::config::pipeline::Applied {
            generation: 5,
            source: "test".into(),
            signer: "ops".into(),
            fingerprint: "SHA256:x".into(),
            config,
            accepted_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let shown = serde_json::to_value(applied_config(&a)).unwrap();
        assert!(!shown.to_string().contains("hunter2"), "{shown}");
        let files = &shown["config"]["file"];
        assert_eq!(files[0]["content"], "<redacted>");
        assert_eq!((files[0]["mode"].as_str(), files[0]["size"].as_u64()), (Some("0600"), Some(14)));
        assert_eq!(files[1]["content"], "hello");
        let service = &shown["config"]["service"][0];
        assert_eq!((service["uid"].as_u64(), service["devices"][0].as_str()), (Some(65534), Some("/dev/net/tun")));
    }

    #[test]
    fn controller_items_and_the_held_rollout_keep_their_wire_shape() {
        let c = ControllerStatus {
            generation: Some(4),
            items: vec![("a".into(), ItemState::Converged), ("b".into(), ItemState::Failed("read-only".into()))],
            ..Default::default()
        };
        let v = serde_json::to_value(controller(&c)).unwrap();
        assert_eq!(v["items"][0], json!({"name": "a", "state": "converged"}));
        assert_eq!(v["items"][1], json!({"name": "b", "state": "failed", "reason": "read-only"}));
        assert_eq!((v["generation"].as_u64(), v["error"].is_null()), (Some(4), true));
        let w = crate::config::rollout::Waiting {
            generation: 5,
            applies_at: keel_config::Timestamp { unix_seconds: 1_796_234_400 },
            slot: 0.5,
            source: "api".into(),
        };
        let v = serde_json::to_value(rollout_waiting(&w)).unwrap();
        assert_eq!(v["state"], "waiting-rollout");
        assert_eq!((v["applies_at_unix"].as_i64(), v["generation"].as_u64()), (Some(1_796_234_400), Some(5)));
        // keelctl reads what the node wrote.
        let back: keel_config::status::RolloutWaiting = serde_json::from_value(v).unwrap();
        assert_eq!(back, rollout_waiting(&w));
    }

    #[test]
    fn origins_follow_the_protocol_tag() {
        assert_eq!(address_origin(KEEL_PROTO, true), "dhcp");
        assert_eq!(address_origin(KEEL_PROTO, false), "static");
        assert_eq!(address_origin(3, false), "kernel");
        assert_eq!(route_origin(KEEL_PROTO, 1026, Some(2)), "dhcp");
        assert_eq!(route_origin(KEEL_PROTO, 0, Some(2)), "static");
        assert_eq!(route_origin(2, 0, Some(2)), "kernel");
        assert_eq!(route_origin(16, 0, None), "other:16");
    }
}
