//! End to end: a staged rollout across two nodes that pull the same signed config from one origin on the host.
//! The test picks their machine ids (SMBIOS uuids) so that, for a rollout that started a moment ago, one node's
//! slot has passed and the other's lies about 100 s ahead: the early node applies generation 3 at once, the late
//! one keeps generation 2 and reports `waiting-rollout` with its time (console, `/v1/status`, `keelctl status`),
//! then applies it by itself when that time comes.

use keel_config::net::normalize_machine_id;
use keel_config::rollout::slot;
use keel_e2e::api_load::boot_api_node_with;
use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::{build_dir, field, keelctl_cmd, VmConfig, STEP_TIMEOUT};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rollout's length, and how long before the config is published it "started".
const DURATION_S: u64 = 200;
const STARTED_AGO_S: u64 = 20;

fn config(generation: u64, extra: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[[file]]\npath = \"/run/rollout\"\ncontent = \"gen {generation}\\n\"\n\
         {extra}"
    )
}

/// The first test uuid whose slot lies in `range`.
fn uuid_with_slot(range: std::ops::Range<f64>) -> (String, f64) {
    (0u64..)
        .map(|i| format!("6b65656c-0000-4000-8000-{i:012x}"))
        .map(|u| {
            let id = normalize_machine_id(&u).unwrap_or_default();
            let s = slot(&id);
            (u, s)
        })
        .find(|(_, s)| range.contains(s))
        .unwrap_or_default()
}

fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let (y, m, d) = keel_config::civil_from_days(days);
    let s = unix % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[test]
fn qemu_staged_rollout_early_node_applies_late_node_waits_then_applies() {
    let dev_key = build_dir().join("keys/dev_ed25519");
    assert!(dev_key.exists(), "{} is missing: make image makes it", dev_key.display());
    let scratch = std::env::temp_dir().join(format!("keel-e2e-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let server = FileServer::start();
    let publish = |text: &str| {
        // Signature first: a node fetches it only after it sees a new config.
        server.put("/node.toml.sig", ssh_sign(text, &dev_key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    publish(&config(2, ""));

    // Early: its turn is within the first 5% (≤ 10 s after the start, which is already 20 s ago). Late: between
    // 60% and 70% (120–140 s after the start, so 100–120 s after publishing).
    let (early_uuid, early_slot) = uuid_with_slot(0.0..0.05);
    let (late_uuid, late_slot) = uuid_with_slot(0.6..0.7);
    let boot = |name: &str, uuid: &str| {
        let cfg = VmConfig {
            uuid: Some(uuid.into()),
            append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=2", server.port),
            ..VmConfig::default()
        };
        boot_api_node_with(name, cfg).0
    };
    let (mut early, _) = boot("rollout_early", &early_uuid);
    let (mut late, late_api) = boot("rollout_late", &late_uuid);
    for vm in [&mut early, &mut late] {
        vm.expect_anywhere("keel: config.converged generation=2 ", STEP_TIMEOUT);
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let start = now - STARTED_AGO_S;
    let late_at = start + (late_slot * DURATION_S as f64).floor() as u64;
    let rollout = format!("[rollout]\nstart = {}\nduration = \"{DURATION_S}s\"\n", rfc3339(start));
    publish(&config(3, &rollout));

    let line = early.expect("keel: config.accepted generation=3 ", STEP_TIMEOUT);
    assert!(line.contains("source=http://10.0.2.2"), "{line}");
    early.expect("keel: config.converged generation=3 ", STEP_TIMEOUT);
    assert!(
        early.transcript().iter().all(|l| !l.contains("config.waiting_rollout")),
        "the early node (slot {early_slot:.3}) waited"
    );

    let waiting = late.expect("keel: config.waiting_rollout generation=3 ", STEP_TIMEOUT);
    assert_eq!(field(&waiting, "applies_at"), Some(rfc3339(late_at).as_str()), "{waiting}");
    assert_eq!(field(&waiting, "running"), Some("2"), "{waiting}");
    // The API says so, and the node still runs generation 2.
    let st = late_api.status().expect("GET /v1/status");
    let config = &st["config"];
    assert_eq!(config["generation"], 2, "{config}");
    assert_eq!(config["rollout"]["state"], "waiting-rollout", "{config}");
    assert_eq!(config["rollout"]["generation"], 3, "{config}");
    assert_eq!(config["rollout"]["applies_at"], rfc3339(late_at), "{config}");
    // keelctl shows it.
    let out = keelctl_cmd()
        .args(["status", "--node", &format!("127.0.0.1:{}", late_api.port), "--known-nodes"])
        .arg(scratch.join("known_nodes"))
        .output()
        .expect("run keelctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "keelctl status: {text}");
    let want = format!("waiting-rollout: generation 3 applies at {}", rfc3339(late_at));
    assert!(text.contains(&want), "keelctl status lacks {want:?}: {text}");

    // Its time comes: it applies generation 3 by itself, not before.
    let wait = Duration::from_secs(late_at.saturating_sub(now) + 120);
    let applied = late.expect("keel: config.accepted generation=3 ", wait);
    let at = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    assert!(at + 2 >= late_at, "the late node applied at {at}, before its time {late_at}: {applied}");
    late.expect("keel: config.converged generation=3 ", STEP_TIMEOUT);
    let _ = std::fs::remove_dir_all(scratch);
}
