//! End to end: an operator drives a node only through its API with keelctl — status, config push (accepted and
//! refused), plan, signed reboot — and keelctl pins the node's TLS identity on first use. A node with a state
//! volume keeps its config, its identity and its memory of used command nonces across a signed reboot.

use keel_e2e::api_client::Api;
use keel_e2e::http_server::{ssh_keygen, ssh_sign};
use keel_e2e::{build_dir, field, free_port, keelctl_cmd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use serde_json::json;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000a1";

struct Ctl {
    node: String,
    known: PathBuf,
}

impl Ctl {
    /// Runs keelctl; returns (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = keelctl_cmd()
            .args(args)
            .args(["--node", &self.node, "--known-nodes"])
            .arg(&self.known)
            .output()
            .expect("run keelctl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a config");
    p
}

fn config(generation: u64, hostname: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[node]\nuuid = \"{UUID}\"\nhostname = \"{hostname}\"\n\
         [sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[[file]]\npath = \"/run/api\"\ncontent = \"pushed\\n\"\n"
    )
}

fn boot(name: &str, port: u16) -> Vm {
    let cfg = VmConfig { uuid: Some(UUID.into()), hostfwd: vec![(port, 7443)], ..VmConfig::default() };
    let mut vm = Vm::boot(name, &cfg);
    vm.expect_ready();
    vm
}

#[test]
fn qemu_keelctl_status_push_refuse_plan_and_signed_reboot() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dev_key = build_dir().join("keys/dev_ed25519");
    let stranger = ssh_keygen(&dir);
    let port = free_port();
    let ctl = Ctl { node: format!("127.0.0.1:{port}"), known: dir.join("known_nodes") };

    let mut vm = boot("api", port);
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    let fingerprint = field(&listening, "fingerprint").unwrap_or_default().to_string();
    vm.expect("keel: net.ready ", STEP_TIMEOUT);

    // First contact pins the identity the console printed.
    let (ok, out) = ctl.run(&["status"]);
    assert!(ok, "keelctl status: {out}");
    assert!(
        out.contains("6b65656c000040008000000000000a1") || out.contains("6b65656c0000400080000000000000a1"),
        "{out}"
    );
    let known = std::fs::read_to_string(&ctl.known).unwrap_or_default();
    assert!(known.contains(&fingerprint), "pinned {known:?}, console said {fingerprint}");

    // A signed config is applied and converged; the answer comes after the apply.
    let good = write(&dir, "good.toml", &config(2, "api-node"));
    let (ok, out) =
        ctl.run(&["apply", good.to_str().unwrap_or_default(), "--key", dev_key.to_str().unwrap_or_default()]);
    assert!(ok && out.contains("generation 2"), "apply: {out}");
    vm.expect("keel: config.accepted generation=2 source=api", STEP_TIMEOUT);
    vm.expect_anywhere("keel: net.hostname name=api-node", STEP_TIMEOUT);
    let (ok, out) = ctl.run(&["status", "-o", "json"]);
    assert!(ok && out.contains("\"converged_generation\": 2"), "status json: {out}");

    // Refused: signed by a stranger (with the stranger's key as the credential too, the node does not even
    // read it: 401; with a trusted credential and the stranger's .sig, the pipeline refuses it), or older than
    // what runs. The node keeps generation 2.
    let strange = write(&dir, "stranger.toml", &config(3, "stranger"));
    let (ok, out) =
        ctl.run(&["apply", strange.to_str().unwrap_or_default(), "--key", stranger.to_str().unwrap_or_default()]);
    assert!(!ok && out.contains("HTTP 401: unknown-key"), "stranger's key: {out}");
    std::fs::write(strange.with_extension("toml.sig"), ssh_sign(&config(3, "stranger"), &stranger, "keel-config"))
        .expect("write the stranger's signature");
    let (ok, out) = ctl.run(&["apply", strange.to_str().unwrap_or_default()]);
    assert!(!ok && out.contains("unknown-key"), "stranger's config: {out}");
    let old = write(&dir, "old.toml", &config(1, "old"));
    let (ok, out) =
        ctl.run(&["apply", old.to_str().unwrap_or_default(), "--key", dev_key.to_str().unwrap_or_default()]);
    assert!(!ok && out.contains("not-newer"), "older generation: {out}");
    vm.expect_anywhere("keel: config.rejected reason=unknown-key source=api", STEP_TIMEOUT);

    // plan shows the difference without applying it.
    let next = write(&dir, "next.toml", &config(4, "api-node-4"));
    let (ok, out) = ctl.run(&["plan", next.to_str().unwrap_or_default()]);
    assert!(ok && out.contains("api-node-4"), "plan: {out}");
    let (_, out) = ctl.run(&["status", "-o", "json"]);
    assert!(out.contains("\"generation\": 2"), "plan must not apply: {out}");

    // Reboot needs a trusted signature.
    let (ok, out) = ctl.run(&["reboot", "--key", stranger.to_str().unwrap_or_default()]);
    assert!(!ok && out.contains("unknown-key"), "stranger's reboot: {out}");
    let (ok, out) = ctl.run(&["reboot", "--key", dev_key.to_str().unwrap_or_default()]);
    assert!(ok, "reboot: {out}");
    vm.expect("keel: shutdown.start action=reboot reason=api:keel-dev", STEP_TIMEOUT);
    vm.expect("reboot: Restarting system", STEP_TIMEOUT);
    vm.expect_exit(STEP_TIMEOUT);
    drop(vm);

    // Another node on the same address has another identity: keelctl refuses it until the pin is removed.
    let mut other = boot("api_other", port);
    other.expect("keel: api.listening ", BOOT_TIMEOUT);
    let (ok, out) = ctl.run(&["status"]);
    assert!(!ok && out.contains("does not match the pinned"), "a changed identity must be refused: {out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A refused push: the answer names the reason, status keeps it as the last rejection, and the node still runs
/// `generation` under `hostname`.
fn assert_refused(api: &Api, what: &str, config: &str, sig: &str, reason: &str, generation: u64, hostname: &str) {
    let (code, v) = api.push(config, sig).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!((code, v["accepted"].as_bool(), v["reason"].as_str()), (code, Some(false), Some(reason)), "{what}: {v}");
    assert!((400..500).contains(&code), "{what}: HTTP {code}: {v}");
    let st = api.status().unwrap_or_else(|e| panic!("status after {what}: {e}"));
    assert_eq!(st["config"]["last_rejection"]["reason"].as_str(), Some(reason), "{what}: status {}", st["config"]);
    assert_eq!(st["config"]["last_rejection"]["source"].as_str(), Some("api"), "{what}: status {}", st["config"]);
    assert_eq!(st["config"]["generation"].as_u64(), Some(generation), "{what} changed the config: {}", st["config"]);
    assert_eq!(st["hostname"].as_str(), Some(hostname), "{what} changed the node: {st}");
}

/// `keelctl logs -f` running in the background; its lines arrive on a channel.
fn follow_logs(ctl: &Ctl) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = keelctl_cmd()
        .args(["logs", "-f", "--node", &ctl.node, "--known-nodes"])
        .arg(&ctl.known)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run keelctl logs -f");
    let out = child.stdout.take().expect("keelctl's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, timeout: Duration) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}

#[test]
fn qemu_api_refusals_logs_follow_replay_and_reboot_with_state() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-api-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dev_key = build_dir().join("keys/dev_ed25519");
    let stranger = ssh_keygen(&dir);
    let state = dir.join("state.img");
    std::fs::File::create(&state).and_then(|f| f.set_len(64 << 20)).expect("a blank state disk");
    let port = free_port();
    let ctl = Ctl { node: format!("127.0.0.1:{port}"), known: dir.join("known_nodes") };
    // A real reboot: QEMU resets the machine and the same console goes on.
    let cfg = VmConfig {
        uuid: Some(UUID.into()),
        hostfwd: vec![(port, 7443)],
        disks: vec![state],
        no_reboot: false,
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("api_state", &cfg);
    vm.expect_ready();
    vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    let fingerprint = field(&listening, "fingerprint").unwrap_or_default().to_string();
    let api = Api::new(port, Some(&fingerprint)).with_key(&dev_key);

    let good = write(&dir, "good.toml", &config(2, "api-node"));
    let (ok, out) =
        ctl.run(&["apply", good.to_str().unwrap_or_default(), "--key", dev_key.to_str().unwrap_or_default()]);
    assert!(ok && out.contains("generation 2"), "apply: {out}");

    // logs -f: a line the node logs after the stream started (generation 3 did not exist before) arrives.
    let (mut follower, lines) = follow_logs(&ctl);
    wait_line(&lines, "config.accepted generation=2", STEP_TIMEOUT)
        .unwrap_or_else(|seen| panic!("keelctl logs -f did not start with the buffer; got {seen:?}"));
    let third = config(3, "api-node-3");
    let (code, v) = api.push(&third, &String::from_utf8_lossy(&ssh_sign(&third, &dev_key, "keel-config"))).unwrap();
    assert_eq!((code, v["accepted"].as_bool(), v["converged"].as_bool()), (200, Some(true), Some(true)), "{v}");
    let streamed = wait_line(&lines, "config.accepted generation=3 source=api", STEP_TIMEOUT)
        .unwrap_or_else(|seen| panic!("keelctl logs -f did not stream the push's line; got {seen:?}"));
    assert!(streamed.contains("keel: "), "{streamed}");
    let _ = follower.kill();
    let _ = follower.wait();

    // Refused with a reason, kept in status, node unchanged: unsigned, a stranger's key, another node's config.
    let fourth = config(4, "api-node-4");
    assert_refused(&api, "unsigned", &fourth, "", "unsigned", 3, "api-node-3");
    // No signature field at all is the same documented 403 `unsigned`, not the JSON extractor's 422.
    let (code, v) = api.json("PUT", "/v1/config", Some(&json!({"config": fourth}))).expect("PUT");
    assert_eq!((code, v["reason"].as_str()), (403, Some("unsigned")), "a push without a signature field: {v}");
    let strange = String::from_utf8_lossy(&ssh_sign(&fourth, &stranger, "keel-config")).into_owned();
    assert_refused(&api, "stranger's key", &fourth, &strange, "unknown-key", 3, "api-node-3");
    let elsewhere = fourth.replace(UUID, "6b65656c-0000-4000-8000-0000000000ff");
    let sig = String::from_utf8_lossy(&ssh_sign(&elsewhere, &dev_key, "keel-config")).into_owned();
    assert_refused(&api, "another node's", &elsewhere, &sig, "wrong-node", 3, "api-node-3");
    let wrong_ns = String::from_utf8_lossy(&ssh_sign(&fourth, &dev_key, "keel-command")).into_owned();
    assert_refused(&api, "a command signature on a config", &fourth, &wrong_ns, "bad-signature", 3, "api-node-3");

    // A signed reboot, captured: accepted once; the node comes back from its state volume with generation 3
    // and the same identity, and refuses the same command again.
    let st = api.status().expect("status");
    let machine = st["machine_id"].as_str().expect("machine_id").to_string();
    let expires = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 600;
    let doc = format!(
        "action = \"reboot\"\nnode = \"{machine}\"\nnonce = \"e2e-replay-{}\"\nexpires = {expires}\n",
        std::process::id() as u64 * 1_000_003
    );
    let body = json!({"command": doc, "signature": String::from_utf8_lossy(&ssh_sign(&doc, &dev_key, "keel-command"))});
    let (code, v) = api.json("POST", "/v1/reboot", Some(&body)).expect("POST /v1/reboot");
    assert_eq!((code, v["accepted"].as_bool()), (202, Some(true)), "{v}");
    vm.expect("keel: shutdown.start action=reboot reason=api:keel-dev", STEP_TIMEOUT);
    vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
    vm.expect("keel: ready ", BOOT_TIMEOUT);
    let state_line = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!(field(&state_line, "formatted"), Some("false"), "{state_line}");
    vm.expect("keel: config.accepted generation=3 source=state", STEP_TIMEOUT);
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    assert_eq!(field(&listening, "fingerprint"), Some(fingerprint.as_str()), "the identity must survive: {listening}");
    assert_eq!(field(&listening, "identity"), Some("kept"), "{listening}");
    let deadline = Instant::now() + STEP_TIMEOUT;
    let st = loop {
        let st = api.status().expect("status after the reboot");
        if st["config"]["converged_generation"].as_u64() == Some(3) || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(st["config"]["generation"].as_u64(), Some(3), "{}", st["config"]);
    assert_eq!(st["config"]["converged_generation"].as_u64(), Some(3), "{}", st["config"]);
    assert_eq!(st["hostname"].as_str(), Some("api-node-3"), "{st}");
    let (code, v) = api.json("POST", "/v1/reboot", Some(&body)).expect("replay POST /v1/reboot");
    assert_eq!((code, v["accepted"].as_bool(), v["reason"].as_str()), (409, Some(false), Some("replayed")), "{v}");
    vm.expect("keel: api.command_refused action=reboot reason=replayed", STEP_TIMEOUT);
    // keelctl says it in one line too.
    let (ok, out) = ctl.run(&["status"]);
    assert!(ok, "keelctl status after the reboot (same pin): {out}");
    let _ = std::fs::remove_dir_all(dir);
}
