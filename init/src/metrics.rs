//! Counters the node API serves in Prometheus text format. Process-wide atomics: bumping one never blocks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub static CONFIG_ACCEPTED: AtomicU64 = AtomicU64::new(0);
pub static NET_REPAIRS: AtomicU64 = AtomicU64::new(0);
pub static NET_WRITES: AtomicU64 = AtomicU64::new(0);
pub static NET_RECONCILES: AtomicU64 = AtomicU64::new(0);
/// Microseconds from a config's acceptance to convergence, the last one.
pub static CONFIG_CONVERGE_US: AtomicU64 = AtomicU64::new(0);
pub static CONFIG_CONVERGED: AtomicU64 = AtomicU64::new(0);
/// Boot figures, in microseconds.
pub static READY_UPTIME_US: AtomicU64 = AtomicU64::new(0);
pub static READY_INIT_US: AtomicU64 = AtomicU64::new(0);

static REJECTIONS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());
static PULLS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// A config pull ended: `changed` (a new body), `not-modified` (304 or the same body) or `error`.
pub fn pulled(result: &'static str) {
    let mut m = PULLS.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(result).or_default() += 1;
}

/// One metric with labelled samples, e.g. `keel_service_restarts_total{service="web"} 3`.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// "counter" or "gauge".
    pub kind: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: &'static str) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push((labels.iter().map(|(k, v)| (*k, v.to_string())).collect(), value));
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_family(out: &mut String, f: &Family) {
    out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.kind));
    for (labels, value) in &f.samples {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
        if labels.is_empty() {
            out.push_str(&format!("{} {value}\n", f.name));
        } else {
            out.push_str(&format!("{}{{{}}} {value}\n", f.name, labels.join(",")));
        }
    }
}

/// [`render`] and then labelled families the caller collected (per kind, per service, per collector, …).
pub fn render_with(extra: &[(&str, &str, f64)], families: &[Family]) -> String {
    let mut out = render(extra);
    let mut pulls = Family::new("keel_config_pulls_total", "Config pulls from keel.config, by result.", "counter");
    for (result, n) in PULLS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        pulls.sample(&[("result", result)], *n as f64);
    }
    render_family(&mut out, &pulls);
    for f in families {
        render_family(&mut out, f);
    }
    out
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn rejected(reason: &'static str) {
    let mut m = REJECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(reason).or_default() += 1;
}

pub fn rejections() -> BTreeMap<&'static str, u64> {
    REJECTIONS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Renders every metric; `extra` adds gauges known only to the caller (generation, RSS, …).
pub fn render(extra: &[(&str, &str, f64)]) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    gauge(
        "keel_boot_ready_uptime_seconds",
        "Kernel uptime when PID 1 was ready.",
        "gauge",
        load(&READY_UPTIME_US) / 1e6,
    );
    gauge("keel_boot_init_seconds", "PID 1's own time from main() to ready.", "gauge", load(&READY_INIT_US) / 1e6);
    gauge("keel_config_accepted_total", "Configs accepted.", "counter", load(&CONFIG_ACCEPTED));
    gauge("keel_config_converged_total", "Configs the node converged to.", "counter", load(&CONFIG_CONVERGED));
    gauge(
        "keel_config_converge_seconds",
        "Acceptance to convergence of the last config.",
        "gauge",
        load(&CONFIG_CONVERGE_US) / 1e6,
    );
    gauge("keel_net_reconciles_total", "Network reconciles.", "counter", load(&NET_RECONCILES));
    gauge("keel_net_writes_total", "Netlink writes by the network controller.", "counter", load(&NET_WRITES));
    gauge("keel_net_repairs_total", "Drift repairs by the network controller.", "counter", load(&NET_REPAIRS));
    for (name, help, value) in extra {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        gauge(name, help, kind, *value);
    }
    out.push_str(
        "# HELP keel_config_rejected_total Configs refused, by reason.\n# TYPE keel_config_rejected_total counter\n",
    );
    for (reason, n) in rejections() {
        out.push_str(&format!("keel_config_rejected_total{{reason=\"{reason}\"}} {n}\n"));
    }
    out
}

#[cfg(test)]
pub mod tests;
