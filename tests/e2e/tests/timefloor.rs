//! End to end: a lying time server cannot turn a node's clock back below its floor (the image's build time), nor
//! throw it a year ahead on its own word; the node takes honest time again when it returns. The harness answers
//! SNTP on the host (QEMU's user network sends the guest's 10.0.2.2:123 there): one year back, then one year
//! ahead, then the truth. While the lies are told, a config and a command that expired a month ago (both valid
//! again if the clock had gone back a year) stay refused as `expired`; after honest time, a fresh config is taken.

use keel_e2e::api_client::Api;
use keel_e2e::http_server::ssh_sign;
use keel_e2e::{build_dir, free_port, Vm, VmConfig, BOOT_TIMEOUT};
use serde_json::json;
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const YEAR: i64 = 365 * 24 * 3600;
/// SNTP retries a refused answer with backoff (here about 15 s, 35 s, 70 s apart under TCG).
const RETRY_TIMEOUT: Duration = Duration::from_secs(240);

/// An SNTPv4 server reply to `req`, its clock `offset_s` seconds away from the host's.
fn reply(req: &[u8], offset_s: i64) -> [u8; 48] {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (now.as_secs() as i64 + offset_s + 2_208_988_800) as u64;
    let frac = ((u64::from(now.subsec_nanos())) << 32) / 1_000_000_000;
    let ts = ((secs << 32) | frac).to_be_bytes();
    let mut b = [0u8; 48];
    b[0] = 0x24; // LI 0, version 4, mode 4 (server)
    b[1] = 1; // stratum 1
    b[2] = 4;
    b[3] = 0xec;
    b[12..16].copy_from_slice(b"TEST");
    b[16..24].copy_from_slice(&ts);
    b[24..32].copy_from_slice(&req[40..48]);
    b[32..40].copy_from_slice(&ts);
    b[40..48].copy_from_slice(&ts);
    b
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A minimal config for any node, expiring at `expires` (seconds since 1970).
fn config(generation: u64, expires: i64) -> String {
    let at = keel_config::Timestamp { unix_seconds: expires };
    format!("version = 1\ngeneration = {generation}\n[node]\nexpires = {at}\n")
}

fn push(api: &Api, config: &str) -> (u16, serde_json::Value) {
    let sig =
        String::from_utf8_lossy(&ssh_sign(config, &build_dir().join("keys/dev_ed25519"), "keel-config")).into_owned();
    api.push(config, &sig).expect("PUT /v1/config")
}

#[test]
fn qemu_sntp_cannot_set_the_clock_below_the_floor_or_a_year_ahead_alone() {
    let sock = UdpSocket::bind("127.0.0.1:123").expect("bind 127.0.0.1:123 for the test SNTP server (needs root)");
    let server = std::thread::spawn(move || {
        let mut answered = Vec::new();
        let mut buf = [0u8; 512];
        let _ = sock.set_read_timeout(Some(Duration::from_secs(300)));
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 48 {
                continue;
            }
            let offset = match answered.len() {
                0 => -YEAR,
                1 => YEAR,
                _ => 0,
            };
            let _ = sock.send_to(&reply(&buf[..n], offset), from);
            answered.push(offset);
            if answered.len() >= 3 {
                break;
            }
        }
        answered
    });
    let port = free_port();
    let cfg = VmConfig { append: "keel.ntp=10.0.2.2".into(), hostfwd: vec![(port, 7443)], ..VmConfig::default() };
    let mut vm = Vm::boot("timefloor", &cfg);
    vm.expect_ready();
    let back = vm.expect("keel: time.refused ", RETRY_TIMEOUT);
    assert!(back.contains("reason=below-floor"), "a year back must be refused: {back}");

    // While the server lies, what expired a month ago stays expired.
    vm.expect_anywhere("keel: api.listening ", BOOT_TIMEOUT);
    let api = Api::new(port, None).with_key(&build_dir().join("keys/dev_ed25519"));
    let month_ago = unix_now() - 30 * 24 * 3600;
    let old = config(5, month_ago);
    let (code, v) = push(&api, &old);
    assert_eq!((code, v["reason"].as_str()), (409, Some("expired")), "a config expired a month ago: {v}");
    let st = api.json("GET", "/v1/status", None).map(|(_, v)| v).unwrap_or_default();
    let machine = st["machine_id"].as_str().unwrap_or_default().to_string();
    assert!(!machine.is_empty(), "status names the machine id: {st}");
    let doc = format!(
        "action = \"reboot\"\nnode = \"{machine}\"\nnonce = \"e2e-timefloor-{}\"\nexpires = {month_ago}\n",
        std::process::id()
    );
    let sig =
        String::from_utf8_lossy(&ssh_sign(&doc, &build_dir().join("keys/dev_ed25519"), "keel-command")).into_owned();
    let (code, v) = api.json("POST", "/v1/reboot", Some(&json!({"command": doc, "signature": sig}))).expect("POST");
    assert_eq!((code, v["reason"].as_str()), (409, Some("expired")), "a command expired a month ago: {v}");
    vm.expect_anywhere("keel: api.command_refused action=reboot reason=expired", RETRY_TIMEOUT);

    let ahead = vm.expect("keel: time.refused ", RETRY_TIMEOUT);
    assert!(ahead.contains("reason=large-step-needs-agreement"), "a year ahead from one server: {ahead}");
    let synced = vm.expect("keel: time.sync ", RETRY_TIMEOUT);
    assert!(synced.contains("server=10.0.2.2"), "{synced}");
    // Honest time again: a config valid for another month is taken.
    let fresh = config(6, unix_now() + 30 * 24 * 3600);
    let (code, v) = push(&api, &fresh);
    assert_eq!((code, v["accepted"].as_bool()), (200, Some(true)), "a fresh config after honest time: {v}");
    // The honest answer may step the clock by the VM's own drift (under a second); never by the lies.
    for step in vm.transcript().iter().filter(|l| l.contains("keel: time.step ")) {
        let ms: f64 = keel_e2e::field(step, "offset_ms").and_then(|v| v.parse().ok()).unwrap_or(f64::MAX);
        assert!(ms.abs() < 60_000.0, "only honest time may step the clock: {step}");
    }
    let answered = server.join().unwrap_or_default();
    assert_eq!(answered, vec![-YEAR, YEAR, 0], "the server's answers");
}

/// `keel.state=` names a disk that is not there, on a machine without UEFI variables: the node cannot prove which
/// generations it accepted before, so it says so in status and refuses new configs instead of forgetting.
#[test]
fn qemu_a_missing_named_state_disk_is_reported_and_configs_are_refused() {
    let port = free_port();
    let cfg = VmConfig {
        append: "keel.state=serial:no-such-disk".into(),
        hostfwd: vec![(port, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("state_unavailable", &cfg);
    vm.expect_ready();
    // The named disk is waited for (30 s), then reported.
    let line = vm.expect_anywhere("keel: trust.state_unavailable ", BOOT_TIMEOUT);
    assert!(line.contains("floor_from=nothing"), "no NVRAM floor on a BIOS machine: {line}");
    vm.expect_anywhere("keel: api.listening ", BOOT_TIMEOUT);
    let api = Api::new(port, None).with_key(&build_dir().join("keys/dev_ed25519"));
    let (_, st) = api.json("GET", "/v1/status", None).expect("GET /v1/status");
    assert_eq!(st["rollback"]["state"].as_str(), Some("unavailable"), "{}", st["rollback"]);
    let (code, v) = push(&api, &config(50, unix_now() + 3600));
    assert_eq!((code, v["reason"].as_str()), (409, Some("state-unavailable")), "{v}");
    assert!(v["detail"].as_str().unwrap_or_default().contains("could not be mounted"), "{v}");
}
