//! The node API's figures: a signed push (hostname + 20 sysctls + 20 files) until its "accepted and converged"
//! answer, timed from the host, next to the node's own accepted → converged time (`config.converged ms=`);
//! `GET /v1/status` latency alone and under 200 concurrent authenticated readers (keep-alive: one proof per
//! connection; TLS sessions resumed when they reconnect); PID 1's RSS while six anonymous clients stream 60 MiB
//! upload bodies at it; and the bytes the API and its TLS add to the init (`make api-size` builds it without the
//! `api` feature; LTO drops whatever only the API used).

use keel_e2e::api_load::{boot_api_node, percentile, start_readers, Hostile};
use keel_e2e::http_server::ssh_sign;
use keel_e2e::{build_dir, field, STEP_TIMEOUT};
use std::path::Path;
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000b1";
const READERS: usize = 200;

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64() * 1000.0)
}

fn size(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / 1024.0)
}

/// Boots one node and measures; `runs` pushes (at least 10).
pub fn run(runs: usize) {
    let runs = runs.max(10);
    let load_s: u64 = std::env::var("BENCH_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let key = build_dir().join("keys/dev_ed25519");
    let (mut vm, api) = boot_api_node("bench-api", UUID);

    // What one request costs with nothing to do: connect, TLS handshake, GET /healthz.
    let healthz: Vec<f64> = (0..runs).map(|_| timed(|| api.request("GET", "/healthz", None)).1).collect();
    let status_idle: Vec<f64> = (0..runs).map(|_| timed(|| api.status()).1).collect();

    let (mut push, mut node) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let generation = 100 + i as u64;
        let text = super::big_config(generation);
        let sig = String::from_utf8_lossy(&ssh_sign(&text, &key, "keel-config")).into_owned();
        let (answer, ms) = timed(|| api.push(&text, &sig));
        match answer {
            Ok((200, v)) if v["converged"].as_bool() == Some(true) => push.push(ms),
            other => panic!("bench-api: push {generation}: {other:?}"),
        }
        let line = vm.expect(&format!("keel: config.converged generation={generation} "), STEP_TIMEOUT);
        node.push(field(&line, "ms").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN));
    }

    let readers = start_readers(&api, READERS);
    std::thread::sleep(Duration::from_secs(load_s));
    let load = readers.stop();
    assert_eq!(load.errors, 0, "bench-api: status reads failed under load: {:?}", load.first_errors);
    let rss = api.status().map(|s| s["rss_kib"].as_f64().unwrap_or(f64::NAN)).unwrap_or(f64::NAN);

    // PID 1's RSS while six anonymous clients stream 60 MiB upload bodies (refused before a byte is read).
    let flood = Hostile::uploads(&api, 6, 60 << 20);
    let mut session = api.session();
    let mut flood_rss: f64 = 0.0;
    let flood_s = load_s.min(20);
    let until = Instant::now() + Duration::from_secs(flood_s);
    while Instant::now() < until {
        if let Ok(st) = session.status() {
            flood_rss = flood_rss.max(st["rss_kib"].as_f64().unwrap_or(0.0));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let flood_connections = flood.connections.load(std::sync::atomic::Ordering::Relaxed);
    flood.stop();
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let with = size(&target.join("x86_64-unknown-linux-musl/image/keel-init"));
    let without = size(&target.join("api-size/x86_64-unknown-linux-musl/image/keel-init"));

    println!(
        "Node API: {runs} pushes, {READERS} authenticated keep-alive status readers for {load_s} s, QEMU TCG, \
         from the host"
    );
    let row = |name: &str, v: f64, unit: &str, target: &str| println!("{name:<44} {v:>9.1} {unit:<3} {target:>14}");
    row("GET /healthz (connect+TLS+request), median", percentile(&healthz, 50.0), "ms", "-");
    row("GET /v1/status, idle, median", percentile(&status_idle, 50.0), "ms", "-");
    row("push -> accepted+converged reply, median", percentile(&push, 50.0), "ms", "<= 100 ms");
    row("push -> accepted+converged reply, p90", percentile(&push, 90.0), "ms", "<= 100 ms");
    row("  node: accepted -> converged, median", percentile(&node, 50.0), "ms", "-");
    row("  node: accepted -> converged, p90", percentile(&node, 90.0), "ms", "-");
    row("GET /v1/status under load, p50", percentile(&load.latencies_ms, 50.0), "ms", "-");
    row("GET /v1/status under load, p99", percentile(&load.latencies_ms, 99.0), "ms", "< 1000 ms");
    row("  first read of each reader (connect+TLS), p99", percentile(&load.first_ms, 99.0), "ms", "-");
    row("status reads under load", load.latencies_ms.len() as f64 / load_s as f64, "/s", "-");
    // Under QEMU's hostfwd (backlog 1) some connects are reset on the host and retried: counted, not timed.
    row("  reads reset before TLS (hostfwd)", load.unconnected as f64, "", "-");
    row("PID 1 VmRSS after the load", rss, "KiB", "-");
    row(&format!("PID 1 VmRSS max, {flood_s} s anonymous upload flood"), flood_rss, "KiB", "-");
    row("  anonymous 60 MiB upload attempts (all refused)", flood_connections as f64, "", "-");
    match (with, without) {
        (Some(w), Some(wo)) => {
            row("keel-init (stripped, LTO)", w, "KiB", "-");
            row("keel-init without the API (make api-size)", wo, "KiB", "-");
            row("added by the API + TLS", w - wo, "KiB", "-");
        }
        _ => println!("{:<44} run 'make api-size' first (make bench does)", "added by the API + TLS"),
    }
}
