//! `GET /metrics`: the process-wide counters ([`crate::metrics`]) and the labelled families read from the
//! controllers' status at scrape time: convergence per resource kind, service restarts, DHCP leases and log
//! forwarding per collector.

use super::state::Inner;
use crate::logfwd::LogFwdStatus;
use crate::metrics::Family;
use crate::net::desired::LeaseInfo;
use crate::registry::{Convergence, Kind};
use crate::services::ServicesStatus;
use axum::response::{IntoResponse, Response};

pub fn metrics(s: &Inner) -> Response {
    let generation = s.config.applied.borrow().as_ref().map(|a| a.generation);
    let rss = crate::procfs::self_rss_kib() as f64 * 1024.0;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let text = crate::metrics::render_with(
        &[
            ("keel_config_generation", "The config generation the node runs.", generation.unwrap_or(0) as f64),
            (
                "keel_config_waiting_rollout_generation",
                "A verified newer generation held until this node's rollout turn (0: none).",
                s.config.waiting.borrow().as_ref().map_or(0.0, |w| w.generation as f64),
            ),
            ("keel_pid1_rss_bytes", "PID 1's resident set size.", rss),
            ("keel_uptime_seconds", "Time since the kernel started.", crate::clock::uptime().as_secs_f64()),
            (
                "keel_api_unauthenticated_total",
                "API requests refused with 401 (no or bad credential).",
                count(&super::auth::UNAUTHENTICATED),
            ),
            (
                "keel_api_forbidden_total",
                "API requests refused with 403 (missing role).",
                count(&super::auth::FORBIDDEN),
            ),
            (
                "keel_api_deadline_expired_total",
                "API requests that ran out of time.",
                count(&super::limits::DEADLINE_EXPIRED),
            ),
            (
                "keel_api_unauthenticated_closed_total",
                "Connections closed for not authenticating in time.",
                count(&super::limits::PREAUTH_CLOSED),
            ),
            (
                "keel_log_intake_dropped_total",
                "Log lines lost before any collector's buffer (the forwarder fell behind).",
                count(&crate::logfwd::INTAKE_DROPPED),
            ),
        ],
        &families(
            &generation.map(|g| s.config.registry.convergence(g)).unwrap_or_default(),
            &s.config.services_status.borrow(),
            s.net.as_ref().map(|n| n.borrow().leases.values().cloned().collect()).unwrap_or_default(),
            &s.config.logs.borrow(),
        ),
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// The labelled families from the controllers' status, read at scrape time. Pure.
fn families(
    convergence: &[(Kind, Convergence)],
    services: &ServicesStatus,
    held_leases: Vec<LeaseInfo>,
    logs: &LogFwdStatus,
) -> Vec<Family> {
    let mut converged =
        Family::new("keel_converged", "1 when the resource kind converged to the running generation, else 0.", "gauge");
    for (kind, c) in convergence {
        let v = if *c == Convergence::Converged { 1.0 } else { 0.0 };
        converged.sample(&[("kind", &kind.to_string())], v);
    }
    let mut restarts = Family::new(
        "keel_service_restarts_total",
        "Restarts of a service since its definition last changed.",
        "counter",
    );
    for (name, st) in &services.services {
        restarts.sample(&[("service", name)], f64::from(st.restarts));
    }
    let mut leases = Family::new("keel_dhcp_lease_bound", "1 per link holding a DHCP lease, by address.", "gauge");
    let mut held = 0.0;
    for lease in &held_leases {
        leases.sample(&[("link", &lease.ifname), ("address", &lease.address.to_string())], 1.0);
        held += 1.0;
    }
    let mut leases_total = Family::new("keel_dhcp_leases", "DHCP leases the node holds.", "gauge");
    leases_total.sample(&[], held);
    let mut sent = Family::new("keel_log_forward_sent_total", "Log lines a collector accepted.", "counter");
    let mut dropped =
        Family::new("keel_log_forward_dropped_total", "Log lines dropped while a collector was down.", "counter");
    let mut connected = Family::new("keel_log_forward_connected", "1 while connected to the collector.", "gauge");
    let mut buffered = Family::new("keel_log_forward_buffered_lines", "Log lines waiting for the collector.", "gauge");
    for d in &logs.forward {
        let l = [("destination", d.url.as_str())];
        sent.sample(&l, d.sent as f64);
        dropped.sample(&l, d.dropped as f64);
        connected.sample(&l, if d.connected { 1.0 } else { 0.0 });
        buffered.sample(&l, d.buffered as f64);
    }
    vec![converged, restarts, leases, leases_total, sent, dropped, connected, buffered]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{get, parse};
    use crate::services::{ServiceStatus, State};
    use keel_config::status::LogDestination;

    #[test]
    fn the_scraped_exposition_parses_strictly_with_every_family() {
        let convergence = vec![(Kind::Network, Convergence::Converged), (Kind::Storage, Convergence::Pending)];
        let mut services = ServicesStatus::default();
        let mut web = ServiceStatus::new(State::Running);
        web.restarts = 4;
        services.services.insert("web".into(), web);
        let lease = LeaseInfo {
            ifname: "eth0".into(),
            address: "10.0.2.15".parse().unwrap(),
            prefix: 24,
            routers: vec![],
            routes: vec![],
            dns: vec![],
            search: vec![],
            hostname: None,
            mtu: None,
            ntp: vec![],
        };
        let dest = LogDestination {
            url: "tls://logs.example.org:6514".into(),
            format: "json".into(),
            connected: true,
            sent: 12,
            dropped: 3,
            buffered: 0,
            buffer_lines: 10,
            error: None,
        };
        let logs = LogFwdStatus { generation: Some(2), forward: vec![dest], intake_dropped: 0 };
        let text = crate::metrics::render_with(
            &[("keel_pid1_rss_bytes", "RSS.", 1024.0)],
            &families(&convergence, &services, vec![lease], &logs),
        );
        let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(get(&p, "keel_converged", &[("kind", "network")]), Some(1.0));
        assert_eq!(get(&p, "keel_converged", &[("kind", "storage")]), Some(0.0));
        assert_eq!(get(&p, "keel_service_restarts_total", &[("service", "web")]), Some(4.0));
        assert_eq!(get(&p, "keel_dhcp_lease_bound", &[("link", "eth0"), ("address", "10.0.2.15")]), Some(1.0));
        assert_eq!(get(&p, "keel_dhcp_leases", &[]), Some(1.0));
        let d = [("destination", "tls://logs.example.org:6514")];
        assert_eq!(get(&p, "keel_log_forward_sent_total", &d), Some(12.0));
        assert_eq!(get(&p, "keel_log_forward_dropped_total", &d), Some(3.0));
        assert_eq!(get(&p, "keel_log_forward_connected", &d), Some(1.0));
        assert_eq!(get(&p, "keel_pid1_rss_bytes", &[]), Some(1024.0));
    }
}
