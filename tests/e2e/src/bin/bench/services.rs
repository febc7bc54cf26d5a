//! Services benchmarks: config applied → service running (the node logs `apply_ms` on each new definition's first
//! `service.start`: from the config reaching the services task to the program's exec; `sandbox_ms` is the part the
//! child spent building its mount namespace), and PID 1's VmRSS with 20 supervised services against none.

use super::median;
use keel_e2e::http_server::{ssh_sign, FileServer};
use keel_e2e::services::{lines_with, printk_secs, Ctl};
use keel_e2e::{build_dir, field, free_port, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::time::Duration;

const SERVICES: usize = 20;

fn demo(name: &str, port: usize) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nexec = \"/usr/libexec/keel-demo\"\nenv = {{ KEEL_DEMO_PORT = \"{port}\" }}\n\
         uid = 65534\ngid = 65534\nrestart = \"always\"\n"
    )
}

fn config(generation: u64, services: usize, probes: usize) -> String {
    let mut t = format!("version = 1\ngeneration = {generation}\n\n");
    for i in 0..services {
        t.push_str(&demo(&format!("bench-{i}"), 9000 + i));
    }
    for i in 0..probes {
        t.push_str(&demo(&format!("probe-{i}"), 9100 + i));
    }
    t
}

fn ms(line: &str, key: &str) -> f64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// PID 1's VmRSS after things settled: the median of a few reads a second apart.
fn settled_rss(ctl: &Ctl) -> f64 {
    std::thread::sleep(Duration::from_secs(3));
    median(
        (0..3)
            .map(|_| {
                std::thread::sleep(Duration::from_secs(1));
                ctl.rss_kib() as f64
            })
            .collect(),
    )
}

pub fn run(runs: usize) {
    let key = build_dir().join("keys/dev_ed25519");
    let server = FileServer::start();
    let publish = |text: &str| {
        server.put("/node.toml.sig", ssh_sign(text, &key, "keel-config"));
        server.put("/node.toml", text.as_bytes().to_vec());
    };
    let api = free_port();
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        hostfwd: vec![(api, 7443)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("bench-services", &cfg);
    vm.expect("keel: ready ", BOOT_TIMEOUT);
    vm.expect("keel: config.converged generation=1 ", STEP_TIMEOUT);
    let ctl = Ctl::new(api, "bench-services");

    // No services at all (the image's demo removed).
    publish(&config(2, 0, 0));
    vm.expect("keel: config.converged generation=2 ", STEP_TIMEOUT);
    let rss_none = settled_rss(&ctl);

    // Twenty at once.
    publish(&config(3, SERVICES, 0));
    vm.expect("keel: config.converged generation=3 ", STEP_TIMEOUT);
    let starts: Vec<f64> =
        lines_with(&vm.transcript(), &["keel: service.start name=bench-"]).iter().map(|l| ms(l, "apply_ms")).collect();
    assert_eq!(starts.len(), SERVICES, "every bench service starts once");
    let rss_twenty = settled_rss(&ctl);

    // One new service per config: applied → running, by the node's clock and by the kernel's timestamps from the
    // config's acceptance.
    let (mut one, mut from_accept, mut cgroup, mut spawn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sandbox = Vec::new();
    for i in 0..runs {
        let generation = 4 + i as u64;
        publish(&config(generation, SERVICES, i + 1));
        let accepted = vm.expect(&format!("keel: config.accepted generation={generation} "), STEP_TIMEOUT);
        let start = vm.expect(&format!("keel: service.start name=probe-{i} "), STEP_TIMEOUT);
        one.push(ms(&start, "apply_ms"));
        cgroup.push(ms(&start, "cgroup_ms"));
        spawn.push(ms(&start, "spawn_ms"));
        sandbox.push(ms(&start, "sandbox_ms"));
        from_accept.push((printk_secs(&start) - printk_secs(&accepted)) * 1000.0);
        vm.expect(&format!("keel: config.converged generation={generation} "), STEP_TIMEOUT);
    }
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));

    let max = starts.iter().copied().fold(f64::NAN, f64::max);
    println!("Services: {runs} single-service applies, QEMU TCG, medians");
    let row = |name: &str, v: f64, unit: &str, target: &str| println!("{name:<36} {v:>9.1} {unit:<3} {target:>14}");
    row("config applied -> service exec'd", median(one), "ms", "<= 10 ms");
    row("  of which: cgroup made", median(cgroup), "ms", "-");
    row("  of which: fork -> exec", median(spawn), "ms", "-");
    row("    of which: own mount namespace", median(sandbox), "ms", "-");
    row("config accepted -> service exec'd", median(from_accept), "ms", "-");
    row("applied -> 20 services exec'd, med", median(starts), "ms", "-");
    row("applied -> 20 services exec'd, last", max, "ms", "-");
    row("PID 1 VmRSS, no services", rss_none, "KiB", "-");
    row("PID 1 VmRSS, 20 services", rss_twenty, "KiB", "-");
    // The budget: 20 services cost PID 1 at most a quarter of its 4 MiB.
    row("PID 1 VmRSS added by 20 services", rss_twenty - rss_none, "KiB", "<= 1024 KiB");
    row("PID 1 VmRSS per supervised service", (rss_twenty - rss_none) / SERVICES as f64, "KiB", "-");
}
