//! End to end: the node pulls its signed config over HTTPS from a server on the host, trusting only the CA bundle
//! baked into its image (/etc/keel/ca.pem; the test adds it to the production initramfs as `make image
//! KEEL_CA_BUNDLE=…` would). A certificate from another CA, for another name, or expired is refused with a reason
//! that says so, while the node keeps its last good config and keeps trying; an image without a bundle says that
//! it has none, in the console and in status.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::tls::{initrd_with_ca, TestCa};
use keel_e2e::{build_dir, free_port, Initrd, Vm, VmConfig, STEP_TIMEOUT};
use std::path::PathBuf;

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
/// How the guest reaches the host's loopback (QEMU user networking); the server certificate's IP SAN.
const HOST: &str = "10.0.2.2";

fn config(generation: u64, hostname: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[node]\nuuid = \"{UUID}\"\nhostname = \"{hostname}\"\n\
         [[file]]\npath = \"/run/keel/hello\"\ncontent = \"gen {generation} over https\\n\"\n"
    )
}

fn dev_key() -> PathBuf {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    key
}

fn publish(server: &FileServer, text: &str) {
    // Signature first: the node fetches it only after it sees a new config.
    server.put("/node.toml.sig", ssh_sign(text, &dev_key(), "keel-config"));
    server.put("/node.toml", text.as_bytes().to_vec());
}

/// Waits for the next `config.fetch_failed` line whose error contains `reason` (earlier failures, from before the
/// server changed its certificate, are skipped).
fn expect_failure(vm: &mut Vm, url: &str, reason: &str) -> String {
    for _ in 0..6 {
        let line = vm.expect("keel: config.fetch_failed ", STEP_TIMEOUT);
        assert!(line.contains(&format!("url={url} ")), "{line}");
        if line.contains(reason) {
            return line;
        }
    }
    panic!("no config.fetch_failed with {reason:?} in the console (see target/e2e/{}.log)", vm.name);
}

#[test]
fn qemu_pulls_config_over_https_trusting_only_the_ca_in_the_image() {
    let scratch = std::env::temp_dir().join(format!("keel-e2e-https-{}", std::process::id()));
    let ca = TestCa::new("keel e2e CA");
    let server = FileServer::start_tls(&ca.issue(&[HOST]));
    publish(&server, &config(2, "edge-tls"));
    let initrd = initrd_with_ca(ca.pem.as_bytes(), &scratch.join("initramfs-ca.cpio.zst"));
    let url = format!("https://{HOST}:{}/node.toml", server.port);
    let cfg = VmConfig {
        uuid: Some(UUID.into()),
        initrd: Initrd::Custom(initrd),
        append: format!("keel.config={url} keel.config_interval=1"),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("https_pull", &cfg);
    vm.expect_ready();
    let accepted = vm.expect(&format!("keel: config.accepted generation=2 source={url}"), STEP_TIMEOUT);
    assert!(accepted.contains("signer=keel-dev"), "{accepted}");
    vm.expect_anywhere("keel: net.hostname name=edge-tls", STEP_TIMEOUT);
    vm.expect_anywhere("keel: files.apply op=write path=/run/keel/hello", STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=2", STEP_TIMEOUT);

    // Idle polls over TLS are conditional GETs too, answered 304.
    let before = server.not_modified();
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(server.not_modified() > before, "idle https polls must be conditional GETs answered 304");

    // Generation 3 is served, but each certificate below is refused with what is wrong with it.
    let stranger = TestCa::new("someone else's CA");
    server.set_identity(&stranger.issue(&[HOST]));
    publish(&server, &config(3, "edge-3"));
    expect_failure(&mut vm, &url, "untrusted certificate");
    server.set_identity(&ca.issue(&["config.example", "10.0.2.99"]));
    let line = expect_failure(&mut vm, &url, "wrong host name");
    assert!(line.contains(HOST), "the reason names the host the certificate is not for: {line}");
    server.set_identity(&ca.issue_expired(&[HOST]));
    expect_failure(&mut vm, &url, "expired certificate");
    let transcript = vm.transcript();
    assert!(
        !transcript.iter().any(|l| l.contains("config.accepted generation=3")),
        "a config from a server the node cannot trust must never be applied"
    );

    // A trusted certificate again: the node, which never stopped trying, takes generation 3.
    server.set_identity(&ca.issue(&[HOST]));
    vm.expect(&format!("keel: config.accepted generation=3 source={url}"), STEP_TIMEOUT);
    vm.expect("keel: config.converged generation=3", STEP_TIMEOUT);
    vm.expect_anywhere("keel: net.hostname name=edge-3", STEP_TIMEOUT);
    let _ = std::fs::remove_dir_all(scratch);
}

#[test]
fn qemu_https_pull_without_a_ca_bundle_says_so_and_keeps_trying() {
    let scratch = std::env::temp_dir().join(format!("keel-e2e-https-noca-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let ca = TestCa::new("keel e2e CA");
    let server = FileServer::start_tls(&ca.issue(&[HOST]));
    publish(&server, &config(2, "edge-tls"));
    let url = format!("https://{HOST}:{}/node.toml", server.port);
    let api = free_port();
    // The production image: built without KEEL_CA_BUNDLE, so it trusts no CA at all.
    let baked = std::fs::read_to_string(build_dir().join("ca.manifest")).unwrap_or_default();
    let has_bundle = baked.lines().any(|l| l.split_whitespace().take(2).eq(["file", "/etc/keel/ca.pem"]));
    assert!(!has_bundle, "this test needs an image built without KEEL_CA_BUNDLE");
    let cfg = VmConfig {
        uuid: Some(UUID.into()),
        append: format!("keel.config={url} keel.config_interval=1"),
        hostfwd: vec![(api, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("https_no_ca", &cfg);
    vm.expect_ready();
    let reason = "no CA bundle in the image (/etc/keel/ca.pem)";
    let first = expect_failure(&mut vm, &url, reason);
    assert!(first.contains("KEEL_CA_BUNDLE"), "the reason says how to fix it: {first}");
    assert!(first.contains("retry_in_s="), "{first}");
    expect_failure(&mut vm, &url, reason);
    expect_failure(&mut vm, &url, reason);

    // Status shows it too, and the node runs the image's default config meanwhile.
    let status = |args: &[&str]| {
        let out = keel_e2e::keelctl_cmd()
            .arg("status")
            .args(args)
            .args(["--node", &format!("127.0.0.1:{api}"), "--known-nodes"])
            .arg(scratch.join("known_nodes"))
            .output()
            .expect("run keelctl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "keelctl status: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let text = status(&["-o", "json"]);
    assert!(text.contains(&format!("\"url\": \"{url}\"")), "status must show the pull: {text}");
    assert!(text.contains(reason), "status must show the pull's last error: {text}");
    assert!(text.contains("\"generation\": 1"), "the node keeps the image's default config: {text}");
    let text = status(&[]);
    assert!(text.contains(&format!("pull from {url} FAILING (")) && text.contains(reason), "{text}");
    assert!(server.requests() == 0, "without a CA bundle the node must not talk to the server at all");
    let _ = std::fs::remove_dir_all(scratch);
}
