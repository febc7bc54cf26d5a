//! End to end, hostile load on a 256 MiB node (docs/api.md, "Limits"):
//!
//! 1. Six anonymous clients send 60 MiB `PUT /v1/upgrade` bodies over and over for 40 s
//!    (KEEL_FLOOD_SECONDS). Each is refused (401) before its body is read: no OOM, PID 1's RSS stays within
//!    [`RSS_HEADROOM_KIB`] of where it started, the demo and `/healthz` keep answering, and a signed push made
//!    during the flood converges.
//! 2. 64 anonymous clients connect and say nothing (reconnecting whenever the node drops them): a signed push
//!    still gets through.

use keel_e2e::api_load::{boot_api_node_with, Hostile};
use keel_e2e::http_server::ssh_sign;
use keel_e2e::{build_dir, http_get, VmConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000a4";
const RSS_HEADROOM_KIB: u64 = 16 * 1024;
const UPLOAD: usize = 60 << 20;

/// The image's default config (which runs the demo) at `generation`, with its own host name.
fn config(generation: u64) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/default-node.toml");
    let default = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = default.replacen("generation = 1\n", &format!("generation = {generation}\n"), 1);
    assert_ne!(text, default, "image/default-node.toml has no `generation = 1` line");
    format!("{text}\n[node]\nhostname = \"flood-{generation}\"\n")
}

#[test]
fn qemu_api_anonymous_upload_flood_and_slow_clients_cannot_hurt_the_node() {
    let seconds: u64 = std::env::var("KEEL_FLOOD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let key = build_dir().join("keys/dev_ed25519");
    let cfg = VmConfig { uuid: Some(UUID.into()), memory_mib: 256, ..VmConfig::default() };
    let ((vm, api), demo) = boot_api_node_with("api_flood", cfg);
    http_get(demo, "/", Duration::from_secs(120)).expect("the demo answers before the flood");
    let start_rss = api.session().status().expect("status before the flood")["rss_kib"].as_u64().unwrap_or(0);

    // A watcher: PID 1's RSS (signed status), the demo and /healthz, once a second.
    let stop = Arc::new(AtomicBool::new(false));
    let (max_rss, misses, probes) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (api, stop, max_rss, misses, probes) =
            (api.clone(), stop.clone(), max_rss.clone(), misses.clone(), probes.clone());
        std::thread::spawn(move || {
            let mut session = api.session();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                probes.fetch_add(1, Ordering::Relaxed);
                match session.status() {
                    Ok(st) => {
                        max_rss.fetch_max(st["rss_kib"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    }
                    Err(e) => failures.push(format!("status: {e}")),
                }
                if let Err(e) = http_get(demo, "/", Duration::from_secs(20)) {
                    failures.push(format!("demo: {e}"));
                }
                match api.anonymous().request("GET", "/healthz", None) {
                    Ok((200, _)) => {}
                    other => failures.push(format!("healthz: {other:?}")),
                }
                misses.store(failures.len() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
            failures
        })
    };

    let flood = Hostile::uploads(&api, 6, UPLOAD);
    std::thread::sleep(Duration::from_secs(seconds / 2));
    let text = config(2);
    let sig = String::from_utf8_lossy(&ssh_sign(&text, &key, "keel-config")).into_owned();
    let t = Instant::now();
    let (code, v) = api.push(&text, &sig).expect("a signed push during the flood");
    let push_ms = t.elapsed().as_millis();
    assert_eq!((code, v["converged"].as_bool()), (200, Some(true)), "push during the flood: {v}");
    std::thread::sleep(Duration::from_secs(seconds / 2));
    let (connections, refused) = (flood.connections.clone(), flood.refused.clone());
    flood.stop();
    stop.store(true, Ordering::Relaxed);
    let failures = watcher.join().unwrap_or_default();
    let max_rss = max_rss.load(Ordering::Relaxed);

    // 64 clients that connect and never speak.
    let slow = Hostile::slow(api.port, 64);
    std::thread::sleep(Duration::from_secs(5));
    let text = config(3);
    let sig = String::from_utf8_lossy(&ssh_sign(&text, &key, "keel-config")).into_owned();
    let t = Instant::now();
    let during_slow = api.push(&text, &sig);
    let slow_push_ms = t.elapsed().as_millis();
    let slow_connections = slow.connections.load(Ordering::Relaxed);
    slow.stop();

    let end = api.session().status().expect("status after the flood");
    eprintln!(
        "api flood: {seconds} s of 6 anonymous {} MiB uploads: {} connections, {} answered 401; PID 1 RSS KiB \
         start={start_rss} max={max_rss} end={} (bound start+{RSS_HEADROOM_KIB}); {} probes, {} misses; push \
         during the flood {push_ms} ms; 64 slow clients ({slow_connections} connections): push {slow_push_ms} ms",
        UPLOAD >> 20,
        connections.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        end["rss_kib"],
        probes.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed),
    );
    let (code, v) = during_slow.expect("a signed push while 64 slow clients hold connections");
    assert_eq!((code, v["converged"].as_bool()), (200, Some(true)), "push past the slow clients: {v}");
    assert_eq!(end["config"]["converged_generation"].as_u64(), Some(3), "{}", end["config"]);
    assert!(failures.is_empty(), "the demo, /healthz or status missed during the flood: {failures:?}");
    assert!(refused.load(Ordering::Relaxed) > 0, "the uploads were never answered");
    assert!(max_rss > 0 && max_rss < start_rss + RSS_HEADROOM_KIB, "PID 1 RSS {max_rss} KiB (start {start_rss})");
    let console = vm.transcript();
    let oom: Vec<&String> = console.iter().filter(|l| l.contains("Out of memory") || l.contains("oom-kill")).collect();
    assert!(oom.is_empty(), "OOM on the console: {oom:?}");
    assert!(!console.iter().any(|l| l.contains("keel: panic")), "PID 1 panicked");
}
