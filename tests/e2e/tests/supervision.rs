//! End to end, supervision under stress: a service killed from outside is restarted with growing backoff, a
//! crash-looping service reaches the crash-loop state while the demo keeps answering and PID 1 stays healthy, an
//! artifact whose bytes do not match its SHA-256 is refused and never runs while a correct one runs, and 10,000
//! short-lived orphans are all reaped with PID 1's memory back near its baseline.

use keel_e2e::host_listener::{accept_line, listener};
use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::services::{api_get, default_demo, lines_with, printk_secs, service, sha256_hex, testhelper_binary, Ctl};
use keel_e2e::{build_dir, field, free_port, http_get, Initrd, Vm, VmConfig, STEP_TIMEOUT};
use std::time::{Duration, Instant};

const HELPER: &str = "/usr/libexec/keel-testhelper";

/// A node booted from the test image with the demo forwarded, its API forwarded, and its config pulled from
/// `server` every second.
struct Node {
    vm: Vm,
    server: FileServer,
    ctl: Ctl,
    demo_port: u16,
    api_port: u16,
}

impl Node {
    fn boot(name: &str, uuid: &str) -> Node {
        let server = FileServer::start();
        let (demo_port, api_port) = (free_port(), free_port());
        let cfg = VmConfig {
            initrd: Initrd::Test,
            uuid: Some(uuid.into()),
            append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
            hostfwd: vec![(demo_port, 8080), (api_port, 7443)],
            ..VmConfig::default()
        };
        let mut vm = Vm::boot(name, &cfg);
        vm.expect_ready();
        vm.expect("keel: service.start name=demo ", STEP_TIMEOUT);
        Node { vm, server, ctl: Ctl::new(api_port, name), demo_port, api_port }
    }

    fn publish(&self, text: &str) {
        let key = build_dir().join("keys/dev_ed25519");
        assert!(key.exists(), "{} is missing: make image makes it", key.display());
        self.server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
        self.server.put("/node.toml", text.as_bytes().to_vec());
    }

    /// Waits until `count` console lines contain all of `needles`; returns them.
    fn wait_lines(&self, needles: &[&str], count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = lines_with(&self.vm.transcript(), needles);
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "VM {:?}: {count} console lines with {needles:?} expected within {}s, saw {}: {found:#?}\n\
                 (console in target/e2e/{}.log)",
                self.vm.name,
                timeout.as_secs(),
                found.len(),
                self.vm.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn config(generation: u64, services: &[String]) -> String {
    format!("version = 1\ngeneration = {generation}\n\n{}\n\n{}", default_demo().trim_end(), services.join("\n"))
}

/// The `restart_in` delays (ms) and states of one service, in order.
fn restarts(transcript: &[String], name: &str) -> Vec<(u64, String)> {
    lines_with(transcript, &[&format!("keel: service.restart_in name={name} ")])
        .iter()
        .map(|l| {
            let delay = field(l, "delay_ms").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{l}"));
            (delay, field(l, "state").unwrap_or_default().to_string())
        })
        .collect()
}

/// The announced delays double per short run from 1 s, each within the policy's ±20% jitter, with the given states.
fn assert_backoff(delays: &[(u64, String)], want: &[(u64, &str)], name: &str) {
    assert_eq!(delays.len(), want.len(), "{name}'s restarts: {delays:?}, want about {want:?}");
    for ((delay, state), (nominal, want_state)) in delays.iter().zip(want) {
        let (low, high) = (nominal * 8 / 10, nominal * 12 / 10);
        assert!(
            (low..=high).contains(delay) && state == want_state,
            "{name}'s backoff: {delays:?}, want {want:?} each within ±20%"
        );
    }
}

/// For each exit of `name` that was followed by a restart: (delay the node announced, seconds from the exit line
/// to the next start line, by the kernel's timestamps).
fn measured_gaps(transcript: &[String], name: &str) -> Vec<(u64, f64)> {
    let (exit, restart, start) = (
        format!("keel: service.exit name={name} "),
        format!("keel: service.restart_in name={name} "),
        format!("keel: service.start name={name} "),
    );
    let mut gaps = Vec::new();
    let mut pending: Option<(f64, Option<u64>)> = None;
    for l in transcript {
        if l.contains(&exit) {
            pending = Some((printk_secs(l), None));
        } else if l.contains(&restart) {
            if let Some((_, delay)) = pending.as_mut() {
                *delay = field(l, "delay_ms").and_then(|v| v.parse().ok());
            }
        } else if l.contains(&start) {
            if let Some((at, Some(delay))) = pending.take() {
                gaps.push((delay, printk_secs(l) - at));
            }
        }
    }
    gaps
}

#[test]
fn qemu_killed_and_crash_looping_services_back_off_while_the_node_stays_healthy() {
    let mut node = Node::boot("supervision_backoff", "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e801");
    let hello = http_get(node.demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(hello.contains("config generation 1"), "{hello}");
    let rss_before = node.ctl.rss_kib();

    // Artifacts: the test helper, served by the host. "fetched" names its true digest; "tampered" names the digest
    // of the build the operator meant, but the server hands out other (still executable) bytes.
    let helper = testhelper_binary();
    let helper_sha = sha256_hex(&helper);
    let meant: Vec<u8> = [helper.as_slice(), b"v2"].concat();
    let evil: Vec<u8> = [helper.as_slice(), b"evil"].concat();
    let (meant_sha, evil_sha) = (sha256_hex(&meant), sha256_hex(&evil));
    node.server.put("/helper", helper);
    node.server.put("/tampered", evil);
    let (good_l, good_port) = listener();
    let (bad_l, bad_port) = listener();
    let artifact = |path: &str, sha: &str| {
        format!("artifact = {{ url = \"http://10.0.2.2:{}{path}\", sha256 = \"{sha}\" }}", node.server.port)
    };
    let fetched = service("fetched", "", &["connect", &format!("10.0.2.2:{good_port}"), "artifact-ran"], "")
        .replace("exec = \"\"", &artifact("/helper", &helper_sha))
        + "restart = \"on-failure\"\nafter = [\"network\"]\n";
    let tampered = service("tampered", "", &["connect", &format!("10.0.2.2:{bad_port}"), "tampered-ran"], "")
        .replace("exec = \"\"", &artifact("/tampered", &meant_sha))
        + "restart = \"never\"\nafter = [\"network\"]\n";
    node.publish(&config(
        2,
        &[
            // Kills the demo three times from outside, as another unprivileged service of the same uid.
            service(
                "killer",
                HELPER,
                &["kill-service", "demo", "3"],
                "restart = \"never\"\nafter = [\"service:demo\"]",
            ),
            service("crasher", HELPER, &["exit", "1"], "restart = \"always\""),
            fetched,
            tampered,
        ],
    ));
    node.vm.expect("keel: config.accepted generation=2", STEP_TIMEOUT);
    let plan = node.vm.expect_anywhere("keel: services.plan generation=2 ", STEP_TIMEOUT);
    assert_eq!(field(&plan, "unchanged"), Some("demo"), "{plan}");

    // 1. The demo, killed three times with SIGKILL, is restarted each time, after 1 s, 2 s, then 4 s.
    let kills =
        node.wait_lines(&["keel: service.log name=killer ", "testhelper: killed service=demo "], 3, STEP_TIMEOUT * 3);
    node.vm.expect_anywhere("keel: service.done name=killer state=stopped", STEP_TIMEOUT);
    let starts = node.wait_lines(&["keel: service.start name=demo "], 4, STEP_TIMEOUT);
    let transcript = node.vm.transcript();
    for kill in &kills {
        let pid = field(kill, "pid").unwrap_or_else(|| panic!("{kill}"));
        let exit = lines_with(&transcript, &[&format!("keel: service.exit name=demo pid={pid} ")]);
        assert_eq!(exit.len(), 1, "the killed demo pid {pid} must exit once: {exit:?}");
        assert_eq!(field(&exit[0], "status"), Some("killed:SIGKILL"), "{}", exit[0]);
    }
    let delays = restarts(&transcript, "demo");
    assert_backoff(&delays, &[(1000, "backoff"), (2000, "backoff"), (4000, "backoff")], "demo");
    let gaps = measured_gaps(&transcript, "demo");
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    for (delay, took) in &gaps {
        let delay_s = *delay as f64 / 1000.0;
        assert!(*took >= delay_s && *took < delay_s + 10.0, "restart {took:.3}s after an exit, announced {delay} ms");
    }
    eprintln!("demo restarts: announced and measured (s): {gaps:?}; starts: {}", starts.len());
    let st = node.ctl.status();
    let demo = &st["services"]["services"]["demo"];
    assert_eq!(demo["restarts"], 3, "{demo}");
    assert_eq!(demo["last_exit"], "killed:SIGKILL", "{demo}");
    let hello = http_get(node.demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(hello.contains("config generation 2"), "the restarted demo answers: {hello}");

    // 2. The crasher: 1, 2, 4, 8 s of backoff, then the crash-loop state at the fifth short run.
    node.wait_lines(&["keel: service.restart_in name=crasher ", " state=crash-loop"], 1, STEP_TIMEOUT * 2);
    let transcript = node.vm.transcript();
    let delays = restarts(&transcript, "crasher");
    let want = [(1000, "backoff"), (2000, "backoff"), (4000, "backoff"), (8000, "backoff"), (16000, "crash-loop")];
    assert!(delays.len() >= 5, "crasher's backoff: {delays:?}");
    assert_backoff(&delays[..5], &want, "crasher");
    for (delay, took) in measured_gaps(&transcript, "crasher") {
        assert!(took >= delay as f64 / 1000.0, "crasher restarted {took:.3}s after an exit, announced {delay} ms");
    }
    let st = node.ctl.status();
    let crasher = &st["services"]["services"]["crasher"];
    assert_eq!(crasher["state"], "crash-loop", "{crasher}");
    assert_eq!(crasher["last_exit"], "exited:1", "{crasher}");
    assert!(crasher["restarts"].as_u64().unwrap_or(0) >= 4, "{crasher}");
    assert!(crasher["reason"].as_str().unwrap_or_default().contains("exited:1"), "{crasher}");
    // Meanwhile the demo answers, and PID 1 answers its API (health and status) with its memory in budget.
    let health = api_get(node.api_port, "/healthz");
    assert!(
        matches!(&health, Ok((status, body)) if status.starts_with("HTTP/1.1 200") && body.trim() == "ok"),
        "GET /healthz: {health:?}"
    );
    let hello = http_get(node.demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(hello.contains("config generation 2"), "{hello}");
    assert_eq!(st["services"]["services"]["demo"]["state"], "running", "{st}");
    let rss = st["rss_kib"].as_u64().unwrap_or(u64::MAX);
    eprintln!("PID 1 VmRSS: {rss_before} KiB before, {rss} KiB with a crash-looping service");
    assert!(rss < 8192 && rss <= rss_before + 1024, "PID 1 VmRSS {rss} KiB (was {rss_before} KiB)");

    // 3. The correct artifact ran (its connection arrived) and shows its digest; the tampered one was refused,
    // never stored or executed, and its status says why.
    let ran = accept_line(&good_l, STEP_TIMEOUT).expect("the verified artifact never ran (no connection)");
    assert!(ran.starts_with("artifact-ran keel-"), "{ran}");
    let refused = node.vm.expect_anywhere("keel: artifact.refused name=tampered ", STEP_TIMEOUT);
    assert_eq!(field(&refused, "reason"), Some("mismatch"), "{refused}");
    node.vm.expect_anywhere("keel: service.done name=fetched state=stopped", STEP_TIMEOUT);
    let st = node.ctl.status();
    let (fetched, tampered) = (&st["services"]["services"]["fetched"], &st["services"]["services"]["tampered"]);
    assert_eq!(fetched["artifact"], helper_sha.as_str(), "{fetched}");
    assert_eq!(fetched["last_exit"], "exited:0", "{fetched}");
    assert_eq!(tampered["state"], "failed", "{tampered}");
    assert_eq!(tampered["artifact"], serde_json::Value::Null, "{tampered}");
    let reason = tampered["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("sha256 mismatch: expected {meant_sha}, got {evil_sha}; refused")),
        "the refusal must say why: {tampered}"
    );
    let transcript = node.vm.transcript();
    assert!(lines_with(&transcript, &["keel: service.start name=tampered "]).is_empty(), "tampered bytes started");
    assert_eq!(accept_line(&bad_l, Duration::from_secs(2)), None, "the tampered artifact ran");
    let panics: Vec<&String> =
        transcript.iter().filter(|l| l.contains("Kernel panic") || l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:?}");
}

#[test]
fn qemu_ten_thousand_orphans_are_all_reaped_and_pid1_memory_returns() {
    let mut node = Node::boot("supervision_orphans", "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e802");
    node.vm.expect_anywhere("keel: config.converged generation=1", STEP_TIMEOUT);
    let rss_before = node.ctl.rss_kib();
    node.publish(&config(2, &[service("storm", HELPER, &["orphan-storm", "10000"], "restart = \"never\"")]));
    let storm =
        node.wait_lines(&["keel: service.log name=storm ", "testhelper: storm orphans="], 1, Duration::from_secs(1200));
    let storm = storm[0].trim_end_matches('"').to_string();
    let num = |key: &str| -> u64 {
        field(&storm, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key}: {storm}"))
    };
    assert_eq!(num("orphans"), 10_000, "{storm}");
    assert_eq!(num("zombies"), 0, "{storm}");
    node.vm.expect_anywhere("keel: service.done name=storm state=stopped", STEP_TIMEOUT);
    // PID 1 reaped every one of them itself (they were its orphans, not the helper's children).
    let orphans = (num("warmup") + num("orphans")) as usize;
    let reaped = node.wait_lines(&["keel: reap.orphan pid="], orphans, STEP_TIMEOUT);
    let (cold, before, half, peak, after) = (
        num("pid1_rss_cold_kib"),
        num("pid1_rss_before_kib"),
        num("pid1_rss_half_kib"),
        num("pid1_rss_peak_kib"),
        num("pid1_rss_after_kib"),
    );
    let rss_after = node.ctl.rss_kib();
    eprintln!(
        "orphan storm: {} reaped; {storm}; PID 1 VmRSS by status: {rss_before} KiB before, {rss_after} KiB after",
        reaped.len()
    );
    // Orphans cost PID 1 nothing that stays: the second 5,000 do not grow it (16 KiB of slack: a leak of 4 bytes
    // per orphan would show)...
    assert!(after <= half + 16, "PID 1 VmRSS {half} KiB after 5,000 orphans, {after} KiB after 10,000");
    // ...and the whole storm leaves it within a small margin (128 KiB, < 3%) of the baseline taken after the
    // warm-up (5,000 orphans), which brought PID 1's bounded log ring (2048 lines) to its steady state.
    assert!(after <= before + 128, "PID 1 VmRSS {before} KiB -> {after} KiB (peak {peak} KiB) after the storm");
    // Against the node before any of it: no more than the log ring's bound (512 KiB of text) and some slack.
    assert!(after <= cold + 1024, "PID 1 VmRSS {cold} KiB before the warm-up, {after} KiB after the storm");
    // The API's answer itself costs PID 1 a little (TLS buffers).
    assert!(rss_after <= after + 128, "PID 1 VmRSS by status {rss_after} KiB, by the helper {after} KiB");
}
