//! keel-bench [N]: boots the production image N times (default 5) and prints the median of each figure next to
//! the foundation's targets. Wall time is measured here, from QEMU's start to the ready line; the rest is what the
//! node reports in that line (kernel uptime, init's own time from exec, PID 1's VmRSS).

use keel_e2e::{build_dir, field, Vm, VmConfig};
use std::time::Duration;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn size_kib(name: &str) -> f64 {
    std::fs::metadata(build_dir().join(name)).map(|m| m.len() as f64 / 1024.0).unwrap_or(f64::NAN)
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    let (mut wall, mut uptime, mut init, mut rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut from_exec = Vec::new();
    // As `make run` boots: a machine UUID (the identity) and a virtio RNG, on the production image.
    let cfg = VmConfig { uuid: Some("6b65656c-0000-4000-8000-000000000001".into()), ..VmConfig::default() };
    for i in 0..runs {
        let mut vm = Vm::boot(&format!("bench-{i}"), &cfg);
        // The kernel's own timestamp of the exec of /init: init's time including its process start-up.
        let exec = vm.expect("Run /init as init process", keel_e2e::BOOT_TIMEOUT);
        let exec_s: f64 = exec
            .trim_start_matches('[')
            .split(']')
            .next()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no printk timestamp in {exec:?} (CONFIG_PRINTK_TIME)"));
        let ready = vm.expect_ready();
        wall.push(vm.started.elapsed().as_secs_f64() * 1000.0);
        let num = |key: &str| -> f64 {
            field(&ready, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {ready}"))
        };
        uptime.push(num("uptime_ms"));
        from_exec.push(num("uptime_ms") - exec_s * 1000.0);
        init.push(num("init_ms"));
        rss.push(num("rss_kib"));
        eprintln!("bench: run {}/{runs} wall_ms={:.0} {}", i + 1, wall[i], ready.trim());
        vm.qmp(r#"{"execute":"quit"}"#);
        let _ = vm.expect_exit(Duration::from_secs(30));
    }
    let kernel = size_kib("vmlinuz");
    let initrd = size_kib("initramfs.cpio.zst");
    println!("Keel boot benchmark: {runs} boots, QEMU TCG, medians");
    println!("{:<34} {:>12} {:>12}", "figure", "median", "target");
    println!("{:<34} {:>9.0} ms {:>12}", "QEMU start -> ready (wall)", median(wall), "-");
    println!("{:<34} {:>9.1} ms {:>12}", "kernel uptime at ready", median(uptime), "-");
    println!("{:<34} {:>9.2} ms {:>12}", "init main() -> ready", median(init), "<= 20 ms");
    println!("{:<34} {:>9.2} ms {:>12}", "kernel execs /init -> ready", median(from_exec), "-");
    println!("{:<34} {:>8.0} KiB {:>12}", "PID 1 VmRSS at ready", median(rss), "<= 3072 KiB");
    println!("{:<34} {:>8.0} KiB {:>12}", "kernel (bzImage)", kernel, "-");
    println!("{:<34} {:>8.0} KiB {:>12}", "initramfs (cpio.zst)", initrd, "-");
    println!("{:<34} {:>8.0} KiB {:>12}", "kernel + initramfs", kernel + initrd, "<= 5120 KiB");
}
