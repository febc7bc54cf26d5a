//! End to end: an operator drives a node only through its API with keelctl — status, config push (accepted and
//! refused), plan, signed reboot — and keelctl pins the node's TLS identity on first use.

use keel_e2e::http_server::ssh_keygen;
use keel_e2e::{build_dir, field, free_port, keelctl, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::Command;

const UUID: &str = "6b65656c-0000-4000-8000-0000000000a1";

struct Ctl {
    node: String,
    known: PathBuf,
}

impl Ctl {
    /// Runs keelctl; returns (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(keelctl())
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
         [sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[[file]]\npath = \"/run/keel/api\"\ncontent = \"pushed\\n\"\n"
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

    // Refused: signed by a stranger, or older than what runs. The node keeps generation 2.
    let strange = write(&dir, "stranger.toml", &config(3, "stranger"));
    let (ok, out) =
        ctl.run(&["apply", strange.to_str().unwrap_or_default(), "--key", stranger.to_str().unwrap_or_default()]);
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
