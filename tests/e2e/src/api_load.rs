//! Load on a node's API from the host: many threads each reading `GET /v1/status` back to back, one TLS
//! connection per request as keelctl does, until stopped. Used by the load test (tests/api_load.rs) and by
//! `make bench` (the status latency under load).

use crate::api_client::{Api, CONNECT, HANDSHAKE};
use crate::{field, free_port, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Default)]
struct ReaderStats {
    latencies_ms: Vec<f64>,
    errors: usize,
    unconnected: usize,
    first_errors: Vec<String>,
    max_rss_kib: u64,
}

/// What the readers saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every successful read's time, request sent (connect included) to the whole answer read, in ms.
    pub latencies_ms: Vec<f64>,
    pub errors: usize,
    /// Requests that failed before the TLS handshake completed (connect or handshake reset): under QEMU's user
    /// network these come from the host side, whose `hostfwd` listens with a backlog of 1 (see
    /// [`listen_overflows`]); they are retried, not counted in `errors`.
    pub unconnected: usize,
    /// The first few errors, for the failure message.
    pub first_errors: Vec<String>,
    /// The highest PID 1 RSS any status answer reported.
    pub max_rss_kib: u64,
}

pub struct Readers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<ReaderStats>>,
}

/// Boots a node named `name` with machine uuid `uuid` and its API forwarded to a free host port, waits until it
/// converged its embedded config, and returns it with a client pinned to the fingerprint it printed.
pub fn boot_api_node(name: &str, uuid: &str) -> (Vm, Api) {
    let port = free_port();
    let cfg = VmConfig { uuid: Some(uuid.into()), hostfwd: vec![(port, 7443)], ..VmConfig::default() };
    let mut vm = Vm::boot(name, &cfg);
    vm.expect_ready();
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    let api = Api::new(port, field(&listening, "fingerprint"));
    vm.expect_anywhere("keel: config.converged generation=1 ", STEP_TIMEOUT);
    (vm, api)
}

/// Starts `n` reader threads.
pub fn start_readers(api: &Api, n: usize) -> Readers {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..n)
        .map(|_| {
            let (api, stop) = (api.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = ReaderStats::default();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match api.status() {
                        Ok(v) => {
                            s.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            s.max_rss_kib = s.max_rss_kib.max(v["rss_kib"].as_u64().unwrap_or(0));
                        }
                        Err(e) if e.starts_with(CONNECT) || e.starts_with(HANDSHAKE) => s.unconnected += 1,
                        Err(e) => {
                            s.errors += 1;
                            if s.first_errors.len() < 3 {
                                s.first_errors.push(e);
                            }
                        }
                    }
                }
                s
            })
        })
        .collect();
    Readers { stop, handles }
}

impl Readers {
    /// Stops the readers, waits for their last requests, and sums up.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = LoadReport::default();
        for h in self.handles {
            let s = h.join().unwrap_or_default();
            r.latencies_ms.extend(s.latencies_ms);
            r.errors += s.errors;
            r.unconnected += s.unconnected;
            if r.first_errors.len() < 5 {
                r.first_errors.extend(s.first_errors);
            }
            r.max_rss_kib = r.max_rss_kib.max(s.max_rss_kib);
        }
        r
    }
}

/// The host's count of connections dropped because a listening socket's queue was full (`TcpExt:
/// ListenOverflows` in /proc/net/netstat; machine-wide, so other VMs' forwards count too).
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The `p`-th percentile (0..=100) by nearest rank; NaN for no samples.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
