//! OCI image services (`BENCH_ONLY=oci`): against a real TLS `docker-registry` on the host, a ~20 MiB image (the
//! test helper and 19 MiB of incompressible filler, one uncompressed layer) pulled, unpacked and started (time
//! from the config's acceptance, and PID 1's highest VmRSS sampled during the pull), then the same image started
//! again (already in the store), against the same binary started as a plain service.

use super::median;
use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::registry::{incompressible, layout, tar, TestRegistry};
use keel_e2e::services::{lines_with, printk_secs, testhelper_binary, Ctl};
use keel_e2e::{build_dir, field, free_port, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::path::Path;
use std::time::{Duration, Instant};

const FILLER: usize = 19 << 20;

fn image_service(name: &str, reference: &str, port: usize) -> String {
    format!("[[service]]\nname = \"{name}\"\nimage = \"{reference}\"\nargs = [\"container\", \"{port}\"]\n")
}

fn plain_service(name: &str, port: usize) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nexec = \"/usr/libexec/keel-testhelper\"\nargs = [\"container\", \"{port}\"]\n"
    )
}

pub fn run(runs: usize) {
    let key = build_dir().join("keys/dev_ed25519");
    let registry = TestRegistry::start("bench", false);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e/bench_oci_layout");
    let helper = testhelper_binary();
    let big = incompressible(FILLER);
    let layer = tar(&[("bin/", b"", 0o755), ("bin/helper", &helper, 0o755), ("filler", &big, 0o644)]);
    let image = layout(&dir, &[layer], r#"{"Entrypoint":["/bin/helper"]}"#);
    registry.push(&dir, "keel/bench", None);
    let reference = format!("{}/keel/bench@sha256:{}", registry.guest_host(), image.manifest_hex);
    let registry_entry =
        format!("[[registry]]\nhost = \"{}\"\nca = \"\"\"\n{}\"\"\"\n", registry.guest_host(), registry.ca_pem);

    let disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e/bench_oci_state.img");
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk).and_then(|f| f.set_len(512 << 20)).expect("make a sparse disk image");
    let server = FileServer::start();
    let publish = |text: &str| {
        server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    let api = free_port();
    let cfg = VmConfig {
        initrd: Initrd::Test,
        disks: vec![disk.clone()],
        memory_mib: 512,
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(api, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("bench-oci", &cfg);
    vm.expect("keel: ready ", BOOT_TIMEOUT);
    let ctl = Ctl::new(api, "bench-oci");
    let mut services = registry_entry.clone();
    // The image boots its default config as generation 1.
    let mut generation = 2u64;
    let mut apply = |vm: &mut Vm, services: &str, name: &str, sample_rss: bool| -> (f64, f64) {
        publish(&format!("version = 1\ngeneration = {generation}\n{services}"));
        let accepted = vm.expect(&format!("keel: config.accepted generation={generation} "), STEP_TIMEOUT);
        let mut peak = 0f64;
        if sample_rss {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !vm.transcript().iter().any(|l| l.contains(&format!("keel: service.start name={name} "))) {
                assert!(Instant::now() < deadline, "{name} did not start within 600 s");
                peak = peak.max(ctl.rss_kib() as f64);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let start = vm.expect(&format!("keel: service.start name={name} "), Duration::from_secs(600));
        generation += 1;
        ((printk_secs(&start) - printk_secs(&accepted)) * 1000.0, peak)
    };

    // First: pull + unpack + start.
    services.push_str(&image_service("img-0", &reference, 9200));
    let (first, peak) = apply(&mut vm, &services, "img-0", true);
    // Logged before the start line `apply` waited for: read from the transcript, not awaited.
    let pulled = lines_with(&vm.transcript(), &["keel: service.pulled name=img-0 "]);
    let pull_ms: f64 = pulled.first().and_then(|l| field(l, "ms")).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let (mut again, mut plain) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        services.push_str(&image_service(&format!("img-{i}"), &reference, 9200 + i));
        again.push(apply(&mut vm, &services, &format!("img-{i}"), false).0);
        services.push_str(&plain_service(&format!("plain-{i}"), 9300 + i));
        plain.push(apply(&mut vm, &services, &format!("plain-{i}"), false).0);
    }
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
    let _ = std::fs::remove_file(&disk);

    let mib = (FILLER + helper.len()) as f64 / (1 << 20) as f64;
    println!("OCI image services: a {mib:.1} MiB image, QEMU TCG; then {runs} starts each, medians");
    let row = |name: &str, v: f64, unit: &str| println!("{name:<40} {v:>9.1} {unit:<3}");
    row("accepted -> started, pull+unpack (first)", first, "ms");
    row("  of which: the pull (node's ms=)", pull_ms, "ms");
    row("PID 1 VmRSS peak during the pull", peak, "KiB");
    row("accepted -> started, image in the store", median(again), "ms");
    row("accepted -> started, same binary plain", median(plain), "ms");
}
