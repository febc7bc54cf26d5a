//! Load on a node's API from the host: many authenticated threads each reading `GET /v1/status` back to back on
//! a keep-alive connection (one proof per connection, TLS sessions resumed on reconnects), until stopped; and
//! hostile load: anonymous clients streaming upload bodies, and slow clients that connect and say nothing. Used
//! by the load tests (tests/api_load.rs, tests/api_flood.rs) and by `make bench`.

use crate::api_client::{Api, CONNECT, HANDSHAKE};
use crate::{build_dir, field, free_port, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Default)]
struct ReaderStats {
    latencies_ms: Vec<f64>,
    first_ms: Vec<f64>,
    errors: usize,
    unconnected: usize,
    first_errors: Vec<String>,
    max_rss_kib: u64,
}

/// What the readers saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every successful read's time on an established keep-alive connection, request sent to the whole answer
    /// read, in ms.
    pub latencies_ms: Vec<f64>,
    /// Each reader's first read, connect, TLS handshake and proof included, in ms.
    pub first_ms: Vec<f64>,
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
/// converged its embedded config, and returns it with a client pinned to the fingerprint it printed, signing
/// with the development key.
pub fn boot_api_node(name: &str, uuid: &str) -> (Vm, Api) {
    boot_api_node_with(name, VmConfig { uuid: Some(uuid.into()), ..VmConfig::default() }).0
}

/// [`boot_api_node`] with a given VM config; also returns the port the demo (8080) is forwarded to.
pub fn boot_api_node_with(name: &str, mut cfg: VmConfig) -> ((Vm, Api), u16) {
    let (port, demo) = (free_port(), free_port());
    cfg.hostfwd.extend([(port, 7443), (demo, 8080)]);
    let mut vm = Vm::boot(name, &cfg);
    vm.expect_ready();
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    let api = Api::new(port, field(&listening, "fingerprint")).with_key(&build_dir().join("keys/dev_ed25519"));
    vm.expect_anywhere("keel: config.converged generation=1 ", STEP_TIMEOUT);
    ((vm, api), demo)
}

/// Starts `n` reader threads, 10 ms apart (clients arrive over a moment, not in one instant: the node's kernel
/// has no SYN cookies, so a burst of hundreds of connects loses some SYNs to seconds of retransmits).
pub fn start_readers(api: &Api, n: usize) -> Readers {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..n)
        .map(|i| {
            let (api, stop) = (api.clone(), stop.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10 * i as u64));
                let mut s = ReaderStats::default();
                let mut session = api.session();
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match session.status() {
                        Ok(v) => {
                            let ms = t.elapsed().as_secs_f64() * 1000.0;
                            if std::mem::take(&mut first) {
                                s.first_ms.push(ms);
                            } else {
                                s.latencies_ms.push(ms);
                            }
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
            r.first_ms.extend(s.first_ms);
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

/// Hostile clients running until stopped, and what they did.
pub struct Hostile {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Connections made.
    pub connections: Arc<AtomicU64>,
    /// Answers with status 401 (the uploads).
    pub refused: Arc<AtomicU64>,
}

impl Hostile {
    fn new() -> Hostile {
        let zero = || Arc::new(AtomicU64::new(0));
        Hostile { stop: Arc::new(AtomicBool::new(false)), handles: Vec::new(), connections: zero(), refused: zero() }
    }

    /// `n` anonymous clients, each sending `PUT /v1/upgrade` with a `bytes`-long body over and over: the head,
    /// then the body in 1 MiB writes until the node closes the connection; then the answer, if any.
    pub fn uploads(api: &Api, n: usize, bytes: usize) -> Hostile {
        let mut h = Hostile::new();
        let chunk = Arc::new(vec![0x5Au8; 1 << 20]);
        for _ in 0..n {
            let (api, stop, conns, refused, chunk) =
                (api.anonymous(), h.stop.clone(), h.connections.clone(), h.refused.clone(), chunk.clone());
            h.handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = api.connect() else {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    };
                    conns.fetch_add(1, Ordering::Relaxed);
                    let head =
                        format!("PUT /v1/upgrade HTTP/1.1\r\nHost: keel-node\r\nContent-Length: {bytes}\r\n\r\n");
                    let mut left = bytes;
                    let mut ok = s.write_all(head.as_bytes()).is_ok();
                    while ok && left > 0 && !stop.load(Ordering::Relaxed) {
                        let n = left.min(chunk.len());
                        ok = s.write_all(&chunk[..n]).is_ok();
                        left -= n;
                    }
                    let mut answer = [0u8; 12];
                    if s.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 401") {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        h
    }

    /// `n` clients that open a TCP connection to `port` and send nothing, reconnecting when the node closes it.
    pub fn slow(port: u16, n: usize) -> Hostile {
        let mut h = Hostile::new();
        for _ in 0..n {
            let (stop, conns) = (h.stop.clone(), h.connections.clone());
            h.handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    };
                    conns.fetch_add(1, Ordering::Relaxed);
                    let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
                    let mut b = [0u8; 1];
                    // Wait (checking for the stop) until the node closes the connection.
                    loop {
                        match s.read(&mut b) {
                            Ok(0) => break,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
            }));
        }
        h
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
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
