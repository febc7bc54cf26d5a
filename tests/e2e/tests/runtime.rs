//! End to end, the controllers as one runtime: dependencies between resource kinds hold on a real node. A service
//! with `after = ["volume:data"]` starts only once the volume is mounted (a blank disk: partitioned and formatted
//! first); a config that drops the service and its volume together stops the service before the volume is
//! unmounted; `keel.hostname=` is still the node's name after the network came up; a config URL with an IPv6
//! literal is pulled (QEMU's user network: the guest's SLAAC address, the host at `[fec0::2]`).

use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::services::{lines_with, service};
use keel_e2e::{build_dir, free_port, http_get, Vm, VmConfig, STEP_TIMEOUT};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The index of the first console line containing all of `needles`, waiting up to `timeout` for it.
fn line_index(vm: &Vm, needles: &[&str], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let t = vm.transcript();
        if let Some(i) = t.iter().position(|l| needles.iter().all(|n| l.contains(n))) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "VM {:?}: no console line with {needles:?} within {}s (console in target/e2e/{}.log)",
            vm.name,
            timeout.as_secs(),
            vm.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn publish(server: &FileServer, text: &str) {
    let key = build_dir().join("keys/dev_ed25519");
    assert!(key.exists(), "{} is missing: make image makes it", key.display());
    server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
    server.put("/node.toml", text.as_bytes().to_vec());
}

#[test]
fn qemu_a_service_after_its_volume_starts_after_the_mount_and_stops_before_the_unmount() {
    let scratch = std::env::temp_dir().join(format!("keel-e2e-runtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let data: PathBuf = scratch.join("data.img");
    std::fs::File::create(&data).and_then(|f| f.set_len(32 << 20)).expect("data disk");
    let server = FileServer::start();
    // The writer ignores its stop signal (SIGWINCH), so its stop takes its whole stop timeout: an unmount that
    // did not wait for it would come first.
    let writer = service(
        "writer",
        "/usr/libexec/keel-demo",
        &[],
        "env = { KEEL_DEMO_PORT = \"8082\" }\nafter = [\"volume:data\"]\nstop_signal = \"SIGWINCH\"\n\
         stop_timeout = 3\nrestart = \"always\"",
    );
    let volume = "[[storage.volume]]\nname = \"data\"\ndevice = \"serial:disk0\"\nmount = \"/var/lib/data\"\n";
    publish(&server, &format!("version = 1\ngeneration = 2\n{volume}\n{writer}"));
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1 keel.state=none", server.port),
        disks: vec![data],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("runtime_volume_order", &cfg);
    vm.expect_ready();
    let blocked = line_index(&vm, &["keel: service.blocked name=writer waiting=volume:data"], STEP_TIMEOUT);
    let mounted = line_index(&vm, &["keel: storage.mounted name=data "], STEP_TIMEOUT);
    let started = line_index(&vm, &["keel: service.start name=writer "], STEP_TIMEOUT);
    assert!(blocked < mounted && mounted < started, "the writer started before its volume was mounted");
    line_index(&vm, &["keel: config.converged generation=2"], STEP_TIMEOUT);

    // Generation 3 drops both: the writer is stopped (3 s: SIGWINCH ignored, then SIGKILL) before the unmount.
    publish(&server, "version = 1\ngeneration = 3\n");
    let stopped = line_index(&vm, &["keel: service.stopped name=writer "], STEP_TIMEOUT);
    let unmounted = line_index(&vm, &["keel: storage.unmounted name=data "], STEP_TIMEOUT);
    assert!(stopped < unmounted, "the volume was unmounted under its running service");
    line_index(&vm, &["keel: config.converged generation=3"], STEP_TIMEOUT);
    let t = vm.transcript();
    assert!(lines_with(&t, &["storage.unmount_failed"]).is_empty(), "{:#?}", lines_with(&t, &["storage."]));
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn qemu_keel_hostname_survives_network_bring_up() {
    let port = free_port();
    let cfg = VmConfig { append: "keel.hostname=edge-7".into(), hostfwd: vec![(port, 8080)], ..VmConfig::default() };
    let mut vm = Vm::boot("runtime_hostname", &cfg);
    let ready = vm.expect_ready();
    assert!(ready.contains("hostname=edge-7"), "{ready}");
    vm.expect_anywhere("keel: net.ready", STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.converged generation=1", STEP_TIMEOUT);
    // The demo answers with the host name it reads from the kernel, after DHCP and the default config applied.
    let hello = http_get(port, "/", STEP_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hello, "hello from edge-7, config generation 1\n");
    let renamed = lines_with(&vm.transcript(), &["keel: net.hostname "]);
    assert!(renamed.iter().all(|l| l.contains("name=edge-7")), "the network renamed the node: {renamed:#?}");
}

#[test]
fn qemu_config_pulled_from_an_ipv6_literal_url() {
    let server = FileServer::start_ipv6();
    publish(&server, "version = 1\ngeneration = 2\n[sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n");
    let url = format!("http://[fec0::2]:{}/node.toml", server.port);
    let cfg = VmConfig { append: format!("keel.config={url} keel.config_interval=1"), ..VmConfig::default() };
    let mut vm = Vm::boot("runtime_ipv6_pull", &cfg);
    vm.expect_ready();
    // SLAAC takes a moment after the link is up: failures before it are retried with backoff.
    vm.expect_anywhere(&format!("keel: config.accepted generation=2 source={url}"), STEP_TIMEOUT);
    vm.expect_anywhere("keel: config.converged generation=2", STEP_TIMEOUT);
    let t = vm.transcript();
    assert!(lines_with(&t, &["config.pull_stopped"]).is_empty(), "{:#?}", lines_with(&t, &["config."]));
}
