//! `GET /metrics`: the process-wide counters ([`crate::metrics`]) and the labelled families read from the
//! controllers' status at scrape time: convergence per resource kind, service restarts, DHCP leases and log
//! forwarding per collector.

use super::routes::AppState;
use crate::metrics::Family;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

pub async fn metrics(State(s): State<AppState>) -> Response {
    let generation = s.config.applied.borrow().as_ref().map(|a| a.generation);
    let rss = crate::procfs::self_rss_kib() as f64 * 1024.0;
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let text = crate::metrics::render_with(
        &[
            ("keel_config_generation", "The config generation the node runs.", generation.unwrap_or(0) as f64),
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
        &families(&s, generation),
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

fn families(s: &super::routes::Inner, generation: Option<u64>) -> Vec<Family> {
    let mut converged =
        Family::new("keel_converged", "1 when the resource kind converged to the running generation, else 0.", "gauge");
    if let Some(g) = generation {
        for (kind, c) in s.config.registry.convergence(g) {
            let v = if c == crate::registry::Convergence::Converged { 1.0 } else { 0.0 };
            converged.sample(&[("kind", &kind.to_string())], v);
        }
    }
    let mut restarts = Family::new(
        "keel_service_restarts_total",
        "Restarts of a service since its definition last changed.",
        "counter",
    );
    for (name, st) in &s.config.services_status.borrow().services {
        restarts.sample(&[("service", name)], f64::from(st.restarts));
    }
    let mut leases = Family::new("keel_dhcp_lease_bound", "1 per link holding a DHCP lease, by address.", "gauge");
    let mut held = 0.0;
    if let Some(net) = &s.net {
        for lease in net.borrow().leases.values() {
            leases.sample(&[("link", &lease.ifname), ("address", &lease.address.to_string())], 1.0);
            held += 1.0;
        }
    }
    let mut leases_total = Family::new("keel_dhcp_leases", "DHCP leases the node holds.", "gauge");
    leases_total.sample(&[], held);
    let logs = s.config.logs.borrow().clone();
    let mut sent = Family::new("keel_log_forward_sent_total", "Log lines a collector accepted.", "counter");
    let mut dropped =
        Family::new("keel_log_forward_dropped_total", "Log lines dropped while a collector was down.", "counter");
    let mut connected = Family::new("keel_log_forward_connected", "1 while connected to the collector.", "gauge");
    let mut buffered = Family::new("keel_log_forward_buffered_lines", "Log lines waiting for the collector.", "gauge");
    for d in &logs.destinations {
        let l = [("destination", d.url.as_str())];
        sent.sample(&l, d.sent as f64);
        dropped.sample(&l, d.dropped as f64);
        connected.sample(&l, if d.connected { 1.0 } else { 0.0 });
        buffered.sample(&l, d.buffered as f64);
    }
    vec![converged, restarts, leases, leases_total, sent, dropped, connected, buffered]
}
