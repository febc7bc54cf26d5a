//! End to end: the node pulls its signed config from an HTTP server on the host, converges to it, and refuses
//! every config it must refuse — each with its reason — while it keeps running the last good one.

use keel_e2e::http_server::{ssh_keygen, ssh_sign, FileServer};
use keel_e2e::{build_dir, Vm, VmConfig, STEP_TIMEOUT};

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

fn config(generation: u64, hostname: &str, extra: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[node]\nuuid = \"{UUID}\"\nhostname = \"{hostname}\"\n\
         [sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[[file]]\npath = \"/run/hello\"\ncontent = \"gen {generation}\\n\"\n{extra}"
    )
}

fn other_node(generation: u64) -> String {
    config(generation, "other", "").replace(UUID, "ffffffff-0000-4000-8000-000000000009")
}

fn expired(generation: u64) -> String {
    config(generation, "expired", "").replace("[sysctl]", "expires = 2020-01-01T00:00:00Z\n[sysctl]")
}

struct Served<'a> {
    server: &'a FileServer,
}

impl Served<'_> {
    fn publish(&self, text: &str, sig: Option<Vec<u8>>) {
        // Signature first: the node fetches it only after it sees a new config.
        match sig {
            Some(s) => self.server.put("/node.toml.sig", s),
            None => self.server.remove("/node.toml.sig"),
        }
        self.server.put("/node.toml", text.as_bytes().to_vec());
    }
}

#[test]
fn qemu_pulls_signed_config_converges_and_refuses_what_it_must() {
    let dev_key = build_dir().join("keys/dev_ed25519");
    assert!(dev_key.exists(), "{} is missing: make image makes it", dev_key.display());
    let scratch = std::env::temp_dir().join(format!("keel-e2e-config-{}", std::process::id()));
    let stranger = ssh_keygen(&scratch);
    let server = FileServer::start();
    let served = Served { server: &server };
    let sign = |text: &str| Some(ssh_sign(text, &dev_key, "keel-config"));

    let good = config(2, "edge-2", "");
    served.publish(&good, sign(&good));
    let cfg = VmConfig {
        uuid: Some(UUID.into()),
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("config_pull", &cfg);
    vm.expect_ready();
    // The image's default (generation 1) first, then the served generation 2.
    vm.expect("keel: config.accepted generation=1 source=image", STEP_TIMEOUT);
    let accepted = vm.expect("keel: config.accepted generation=2 source=http://10.0.2.2", STEP_TIMEOUT);
    assert!(accepted.contains("signer=keel-dev") && accepted.contains("fingerprint=SHA256:"), "{accepted}");
    vm.expect_anywhere("keel: net.hostname name=edge-2", STEP_TIMEOUT);
    vm.expect_anywhere("keel: sysctl.apply key=net.ipv4.ip_forward value=1", STEP_TIMEOUT);
    vm.expect_anywhere("keel: files.apply op=write path=/run/hello", STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);

    // Each of these is refused with its reason; none of them is applied.
    let tampered = config(3, "tampered", "");
    let dev = |text: &str| Some(ssh_sign(text, &dev_key, "keel-config"));
    let refusals: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        ("bad-signature", tampered.clone(), dev(&tampered.replace("tampered", "tempered"))),
        ("unsigned", config(4, "unsigned", ""), None),
        (
            "unknown-key",
            config(5, "stranger", ""),
            Some(ssh_sign(&config(5, "stranger", ""), &stranger, "keel-config")),
        ),
        ("bad-signature", config(6, "wrong-ns", ""), Some(ssh_sign(&config(6, "wrong-ns", ""), &dev_key, "file"))),
        ("not-newer", config(2, "replayed", ""), dev(&config(2, "replayed", ""))),
        ("malformed", "version = 1\ngeneration = 7\n[node\n".into(), dev("version = 1\ngeneration = 7\n[node\n")),
        ("invalid", config(8, "bad_host_name", ""), dev(&config(8, "bad_host_name", ""))),
        ("wrong-node", other_node(9), dev(&other_node(9))),
        ("expired", expired(10), dev(&expired(10))),
    ];
    for (reason, text, sig) in refusals {
        served.publish(&text, sig);
        let line = vm.expect("keel: config.rejected ", STEP_TIMEOUT);
        assert!(line.contains(&format!("reason={reason} ")), "expected reason={reason}: {line}");
        assert!(line.contains("source=http://10.0.2.2"), "{line}");
    }
    let transcript = vm.transcript();
    let applied_later = transcript.iter().filter(|l| l.contains("keel: config.accepted generation=")).count();
    assert_eq!(applied_later, 2, "a refused config must never be applied");
    assert!(
        !transcript.iter().any(|l| l.contains("net.hostname name=") && !l.contains("name=edge-2")),
        "host name changed"
    );

    // The server goes away; the node keeps trying, and takes the next good config when it is back.
    server.set_down(true);
    vm.expect("keel: config.fetch_failed ", STEP_TIMEOUT);
    let next = config(11, "edge-11", "");
    served.publish(&next, sign(&next));
    server.set_down(false);
    vm.expect("keel: config.accepted generation=11", STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=11", STEP_TIMEOUT);
    vm.expect_anywhere("keel: net.hostname name=edge-11", STEP_TIMEOUT);

    // Unchanged config: polls are conditional and answered 304.
    let before = server.not_modified();
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(server.not_modified() > before, "idle polls must be conditional GETs answered 304");
    let _ = std::fs::remove_dir_all(scratch);
}
