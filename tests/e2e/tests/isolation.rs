//! End to end: a service running as root (uid 0) with no capabilities tries to take the node over
//! (`keel-testhelper attack`): read the API's private key (directly and through /proc/1/root), rewrite the highest
//! accepted config generation, open a disk for writing (at /dev and as a node it makes itself), `kill(1,
//! SIGTERM)`, write the host name sysctl, leave its cgroup, mount. Every attempt fails with
//! the error in the service's own log, and the node is unchanged: still up and serving, the same generation (a
//! next one is still accepted), the same host name, no shutdown.

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::services::{default_demo, lines_with, Ctl};
use keel_e2e::{build_dir, free_port, http_get, Initrd, Vm, VmConfig, STEP_TIMEOUT};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8a1";
const HOSTNAME: &str = "keel-0a1b2c3d";
const ATTACKS: [&str; 8] = [
    "read-api-key",
    "read-api-key-via-proc",
    "write-highest-generation",
    "write-block-device",
    "kill-pid1",
    "write-hostname",
    "escape-cgroup",
    "mount",
];

fn blank_disk() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("isolation_attack.img");
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path).and_then(|f| f.set_len(128 << 20)).expect("make a sparse disk image");
    path
}

fn config(generation: u64, attacker: bool) -> String {
    let attack = "[[service]]\nname = \"attack\"\nexec = \"/usr/libexec/keel-testhelper\"\nargs = [\"attack\"]\n\
                  uid = 0\ngid = 0\nrestart = \"never\"\n";
    format!(
        "version = 1\ngeneration = {generation}\n\n{}\n\n{}",
        default_demo().trim_end(),
        if attacker { attack } else { "" }
    )
}

#[test]
fn qemu_a_root_service_without_capabilities_cannot_touch_the_node() {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    let server = FileServer::start();
    let publish = |text: &str| {
        server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    let (demo_port, api_port) = (free_port(), free_port());
    let cfg = VmConfig {
        initrd: Initrd::Test,
        uuid: Some(UUID.into()),
        // A blank disk: the node makes it its state volume (/var), so there is a disk to go after and the
        // records under attack live on it.
        disks: vec![blank_disk()],
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(demo_port, 8080), (api_port, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("isolation_attack", &cfg);
    vm.expect_ready();
    vm.expect_anywhere("keel: config.converged generation=1", STEP_TIMEOUT);
    let ctl = Ctl::new(api_port, "isolation");

    publish(&config(2, true));
    let done = "testhelper: attack done";
    let deadline = Instant::now() + Duration::from_secs(300);
    while lines_with(&vm.transcript(), &["keel: service.log name=attack ", done]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no '{done}' from the attack service (console in target/e2e/isolation_attack.log)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let transcript = vm.transcript();
    let own_log = lines_with(&transcript, &["keel: service.log name=attack "]);
    eprintln!("the attack service's log:\n{}", own_log.join("\n"));
    for attack in ATTACKS {
        let refused = lines_with(&own_log, &[&format!("testhelper: attack {attack} refused error=")]);
        assert_eq!(
            refused.len(),
            1,
            "attack {attack} must be refused with its error in the service's log: {own_log:#?}"
        );
    }
    assert!(lines_with(&own_log, &["SUCCEEDED"]).is_empty(), "{own_log:#?}");
    vm.expect_anywhere("keel: service.done name=attack state=stopped", STEP_TIMEOUT);

    // The node is unchanged: up, serving, generation 2, its host name, no shutdown begun.
    let status = ctl.status();
    assert_eq!(status["config"]["generation"], 2, "{status}");
    assert_eq!(status["network"]["hostname"], HOSTNAME, "{status}");
    let hello = http_get(demo_port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hello, format!("hello from {HOSTNAME}, config generation 2\n"));
    let transcript = vm.transcript();
    for bad in ["shutdown.start", "Kernel panic", "panicked"] {
        assert!(lines_with(&transcript, &[bad]).is_empty(), "{bad:?} on the console");
    }
    // highest-generation was not rewritten: the next generation is still accepted.
    publish(&config(3, false));
    vm.expect_anywhere("keel: config.converged generation=3", STEP_TIMEOUT);
}
