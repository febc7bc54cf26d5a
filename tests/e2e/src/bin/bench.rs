//! keel-bench [N]: boots the production image N times (default 5) per network mode and prints the median of each
//! figure next to its target. Wall time is measured here, from QEMU's start to the ready line; the rest is what
//! the node reports (kernel uptime, init's own time from main(), PID 1's VmRSS, init time to network ready) and
//! the kernel's printk timestamp of its exec of /init. Then the boot media: QEMU start -> ready for a PXE boot
//! (`build/pxe/` over TFTP) and a UEFI disk boot (`build/keel.img` under OVMF), BENCH_MEDIA_RUNS times each
//! (default: N, at most 3: OVMF under TCG is slow), next to the direct kernel boot, and the media sizes. Then the
//! state volume (`bench/storage.rs`): disk visible -> /var mounted, on the first boot, a clean one, after a cut.
//! Then the services (`bench/services.rs`); `BENCH_ONLY=services` runs only those. Then the node API
//! (`bench/api.rs`); `BENCH_ONLY=api` runs only that. Then Keel side by side with a busybox sh init on the same
//! kernel, in four setups (`bench/side.rs`); `BENCH_ONLY=side` runs only that. Then the kernel flavours
//! (`bench/flavours.rs`: virt and metal, sizes and boot to ready); `BENCH_ONLY=flavours` runs only those.
//! `BENCH_ONLY=boot` stops after the boot table (with `KEEL_BUILD_DIR=<another build>` it measures that build);
//! `BENCH_ONLY=memory` boots only for PID 1's memory by kind at ready, network ready and converged (`bench/memory.rs`).

#[path = "bench/storage.rs"]
mod storage;

#[path = "bench/services.rs"]
mod services;

// OCI image services: pull + unpack + start, start from the store, against a plain service.
#[path = "bench/oci.rs"]
mod oci;

#[path = "bench/api.rs"]
mod api;

#[path = "bench/side.rs"]
mod side;

#[path = "bench/compress.rs"]
mod compress;

#[path = "bench/flavours.rs"]
mod flavours;

#[path = "bench/memory.rs"]
mod memory;

use keel_e2e::{build_dir, field, media, Boot, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT, UEFI_BOOT_TIMEOUT};
use std::time::Duration;

/// As `make run` boots: the machine's identity.
const UUID: &str = "6b65656c-0000-4000-8000-000000000001";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn size_kib(name: &str) -> f64 {
    std::fs::metadata(build_dir().join(name)).map(|m| m.len() as f64 / 1024.0).unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    uptime: Vec<f64>,
    init: Vec<f64>,
    from_exec: Vec<f64>,
    rss: Vec<f64>,
    net: Vec<f64>,
    rss_net: Vec<f64>,
    memory: memory::Memory,
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn boot(name: &str, cfg: &VmConfig, s: &mut Samples) {
    let mut vm = Vm::boot(name, cfg);
    // The kernel's own timestamp of the exec of /init: init's time including its process start-up.
    let exec = vm.expect("Run /init as init process", BOOT_TIMEOUT);
    let exec_ms = exec
        .trim_start_matches('[')
        .split(']')
        .next()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|t| t * 1000.0)
        .unwrap_or_else(|| panic!("no printk timestamp in {exec:?} (CONFIG_PRINTK_TIME)"));
    let ready = vm.expect_ready();
    s.wall.push(vm.started.elapsed().as_secs_f64() * 1000.0);
    s.uptime.push(num(&ready, "uptime_ms"));
    s.init.push(num(&ready, "init_ms"));
    s.from_exec.push(num(&ready, "uptime_ms") - exec_ms);
    s.rss.push(num(&ready, "rss_kib"));
    let net = vm.expect("keel: net.ready ", STEP_TIMEOUT);
    s.net.push(num(&net, "init_ms"));
    if let Some(rss) = field(&net, "rss_kib").and_then(|v| v.parse().ok()) {
        s.rss_net.push(rss);
    }
    s.memory.collect(&mut vm);
    eprintln!("bench: {name} wall_ms={:.0} {} | {}", s.wall.last().unwrap_or(&0.0), ready.trim(), net.trim());
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
}

/// hostname + 20 sysctls + 20 files: the issue's convergence benchmark.
fn big_config(generation: u64) -> String {
    let sysctls = [
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.all.accept_source_route", "0"),
        ("net.ipv4.conf.all.log_martians", "1"),
        ("net.ipv4.conf.default.accept_redirects", "0"),
        ("net.ipv4.conf.default.send_redirects", "0"),
        ("net.ipv4.conf.default.accept_source_route", "0"),
        ("net.ipv4.conf.default.log_martians", "1"),
        ("net.ipv4.conf.default.rp_filter", "1"),
        ("net.ipv4.conf.all.rp_filter", "1"),
        ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
        ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
        ("net.ipv4.tcp_timestamps", "1"),
        ("net.ipv4.tcp_sack", "1"),
        ("net.ipv4.ip_default_ttl", "63"),
        ("net.ipv4.tcp_fin_timeout", "30"),
        ("net.ipv4.tcp_keepalive_time", "600"),
        ("net.ipv6.conf.all.accept_redirects", "0"),
        ("net.ipv6.conf.default.accept_redirects", "0"),
        ("net.ipv4.ip_forward", "1"),
    ];
    let mut t =
        format!("version = 1\ngeneration = {generation}\n[node]\nhostname = \"bench-{generation}\"\n[sysctl]\n");
    for (k, v) in sysctls {
        t.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    for i in 0..20 {
        t.push_str(&format!(
            "[[file]]\npath = \"/run/bench/f{i}\"\ncontent = \"file {i} of generation {generation}\\n\"\n"
        ));
    }
    t
}

/// Config applied → converged inside the node, and what an idle (304) poll costs.
fn config_bench(runs: usize) -> (Vec<f64>, f64) {
    use keel_e2e::http_server::{ssh_sign, FileServer};
    let key = build_dir().join("keys/dev_ed25519");
    let server = FileServer::start();
    let cfg = VmConfig {
        append: format!("keel.config=http://10.0.2.2:{}/node.toml keel.config_interval=1", server.port),
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("bench-config", &cfg);
    vm.expect_ready();
    let mut converge = Vec::new();
    for i in 0..runs {
        let generation = 10 + i as u64;
        let text = big_config(generation);
        server.put("/node.toml.sig", ssh_sign(&text, &key, "keel-config"));
        server.put("/node.toml", text.into_bytes());
        let line = vm.expect(&format!("keel: config.converged generation={generation} "), STEP_TIMEOUT);
        converge.push(num(&line, "ms"));
    }
    let (before_polls, before_bytes) = (server.not_modified(), server.idle_bytes());
    std::thread::sleep(Duration::from_secs(5));
    let polls = server.not_modified() - before_polls;
    let per_poll = if polls > 0 { (server.idle_bytes() - before_bytes) as f64 / polls as f64 } else { f64::NAN };
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
    (converge, per_poll)
}

/// Wall time from QEMU's start to ready, in ms.
fn boot_media(name: &str, cfg: &VmConfig) -> f64 {
    let mut vm = Vm::boot(name, cfg);
    let ready = vm.expect("keel: ready ", UEFI_BOOT_TIMEOUT);
    let wall = vm.started.elapsed().as_secs_f64() * 1000.0;
    eprintln!("bench: {name} wall_ms={wall:.0} {}", ready.trim());
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
    wall
}

fn media_rows(runs: usize, uuid: Option<String>, direct_dhcp: f64) {
    let pxe_cfg =
        VmConfig { boot: Boot::Pxe { dir: media::pxe_dir(), uefi: false }, uuid: uuid.clone(), ..VmConfig::default() };
    let disk_cfg =
        VmConfig { boot: Boot::Uefi { disk: media::disk_image() }, uuid: uuid.clone(), ..VmConfig::default() };
    // Secure Boot enforcing (make sb-vars): the same disk, and the UKI over the firmware's own PXE.
    let vars = std::env::temp_dir().join(format!("keel-bench-sb-{}.fd", std::process::id()));
    let sb = |disks: Vec<std::path::PathBuf>, bootfiles: Vec<String>| VmConfig {
        boot: Boot::SecureBoot { vars: vars.clone(), disks, tftp: Some(keel_e2e::build_dir().join("pxe")), bootfiles },
        uuid: uuid.clone(),
        ..VmConfig::default()
    };
    let (sb_disk_cfg, sb_pxe_cfg) = (sb(vec![media::disk_image()], vec![]), sb(vec![], vec!["keel.efi".into()]));
    let (mut pxe, mut disk, mut sb_disk, mut sb_pxe) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        pxe.push(boot_media(&format!("bench-pxe-{i}"), &pxe_cfg));
        disk.push(boot_media(&format!("bench-uefi-{i}"), &disk_cfg));
        media::sb_vars(&vars);
        sb_disk.push(boot_media(&format!("bench-sb-disk-{i}"), &sb_disk_cfg));
        media::sb_vars(&vars);
        sb_pxe.push(boot_media(&format!("bench-sb-pxe-{i}"), &sb_pxe_cfg));
    }
    let _ = std::fs::remove_file(&vars);
    println!("Boot media: {runs} boots each, QEMU TCG, medians, DHCP");
    let row = |name: &str, v: f64, unit: &str| println!("{name:<36} {v:>9.1} {unit:<3} {:>14}", "-");
    row("QEMU start -> ready, direct kernel", direct_dhcp, "ms");
    row("QEMU start -> ready, PXE (iPXE+TFTP)", median(pxe), "ms");
    row("QEMU start -> ready, UEFI disk (OVMF)", median(disk), "ms");
    row("... UEFI disk, Secure Boot enforcing", median(sb_disk), "ms");
    row("... UEFI PXE of the signed UKI, SB on", median(sb_pxe), "ms");
    for (name, bytes) in media::sizes() {
        row(name, bytes as f64 / 1024.0, "KiB");
    }
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    // BENCH_ONLY=services: only the services benchmarks.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("services") {
        return services::run(runs);
    }
    // BENCH_ONLY=oci: only the OCI image services (tests/e2e/src/bin/bench/oci.rs).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("oci") {
        return oci::run(runs);
    }
    // BENCH_ONLY=api: only the node API's figures (tests/e2e/src/bin/bench/api.rs).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("api") {
        return api::run(runs);
    }
    // BENCH_ONLY=flavours: only the kernel flavours (virt, metal): sizes and boot to ready.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("flavours") {
        return flavours::run(runs);
    }
    // BENCH_ONLY=side: only Keel against the busybox peer (tests/e2e/src/bin/bench/side.rs).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("side") {
        return side::run(runs);
    }
    // BENCH_ONLY=compress: initramfs compressions (make compress-bench builds them; tests/e2e/src/bin/bench/compress.rs).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("compress") {
        return compress::run(runs);
    }
    // BENCH_ONLY=media: only the boot media (direct kernel, PXE, UEFI disk, Secure Boot disk and UEFI PXE) and sizes.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("media") {
        let cfg = VmConfig { uuid: Some(UUID.to_string()), ..VmConfig::default() };
        let direct: Vec<f64> = (0..runs).map(|i| boot_media(&format!("bench-direct-{i}"), &cfg)).collect();
        return media_rows(runs, Some(UUID.to_string()), median(direct));
    }
    // As `make run` boots: a machine UUID (the identity), a virtio RNG, the production image.
    let uuid = Some(UUID.to_string());
    let dhcp_cfg = VmConfig { uuid: uuid.clone(), ..VmConfig::default() };
    let static_cfg =
        VmConfig { uuid, append: "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off".into(), ..VmConfig::default() };
    // BENCH_ONLY=memory: PID 1's memory at every milestone, which the node logs with keel.log=debug.
    let (dhcp_cfg, static_cfg) = match memory::every_milestone() {
        true => (
            VmConfig { append: "keel.log=debug".into(), ..dhcp_cfg },
            VmConfig { append: format!("{} keel.log=debug", static_cfg.append), ..static_cfg },
        ),
        false => (dhcp_cfg, static_cfg),
    };
    let (mut dhcp, mut fixed) = (Samples::default(), Samples::default());
    for i in 0..runs {
        boot(&format!("bench-dhcp-{i}"), &dhcp_cfg, &mut dhcp);
        boot(&format!("bench-static-{i}"), &static_cfg, &mut fixed);
    }
    // BENCH_ONLY=memory: only where PID 1's memory is, at ready, network ready and converged.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("memory") {
        dhcp.memory.print("DHCP");
        return fixed.memory.print("static");
    }
    let (converge, idle_bytes) = config_bench(runs);
    let all = |f: fn(&Samples) -> &Vec<f64>| [f(&dhcp).clone(), f(&fixed).clone()].concat();
    let kernel = size_kib("vmlinuz");
    let initrd = size_kib("initramfs.cpio.zst");
    println!("Keel boot benchmark: {runs} boots per network mode, QEMU TCG, medians");
    println!("{:<36} {:>12} {:>14}", "figure", "median", "target");
    let row = |name: &str, v: f64, unit: &str, target: &str| println!("{name:<36} {v:>9.1} {unit:<3} {target:>14}");
    row("QEMU start -> ready (wall)", median(all(|s| &s.wall)), "ms", "-");
    row("kernel uptime at ready", median(all(|s| &s.uptime)), "ms", "-");
    row("init main() -> ready", median(all(|s| &s.init)), "ms", "<= 20 ms");
    row("kernel execs /init -> ready", median(all(|s| &s.from_exec)), "ms", "-");
    row("init main() -> network ready, static", median(fixed.net.clone()), "ms", "<= 10 ms");
    row("init main() -> network ready, DHCP", median(dhcp.net.clone()), "ms", "<= 50 ms");
    row("config accepted -> converged (1+20+20)", median(converge), "ms", "<= 20 ms");
    row("idle poll (304), HTTP bytes", idle_bytes, "B", "-");
    row("PID 1 VmRSS at ready", median(all(|s| &s.rss)), "KiB", "<= 3072 KiB");
    row("PID 1 VmRSS at network ready", median(all(|s| &s.rss_net)), "KiB", "-");
    row("PID 1 RSS at converged, DHCP", dhcp.memory.median("converged", "rss_kib"), "KiB", "<= 4096 KiB");
    row("PID 1 RSS at converged, static", fixed.memory.median("converged", "rss_kib"), "KiB", "<= 4096 KiB");
    row("kernel (bzImage)", kernel, "KiB", "-");
    row("initramfs (cpio.zst)", initrd, "KiB", "-");
    row("kernel + initramfs", kernel + initrd, "KiB", "-");
    // The size target is the virt pair's (make virt-image): servers' drivers and firmware are the metal image's.
    let (virt_kernel, virt_initrd) = (size_kib("virt/vmlinuz"), size_kib("virt/initramfs.cpio.zst"));
    row("virt kernel + its initramfs", virt_kernel + virt_initrd, "KiB", "<= 5120 KiB");
    dhcp.memory.print("DHCP");
    // BENCH_ONLY=boot: only this table (before/after comparisons: KEEL_BUILD_DIR points at another build).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("boot") {
        return;
    }
    let media_runs = std::env::var("BENCH_MEDIA_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(runs.min(3)).max(1);
    let st = storage::bench(runs.min(3));
    row("disk -> /var mounted, first (mkfs)", median(st.first), "ms", "-");
    row("disk -> /var mounted, clean", median(st.clean), "ms", "-");
    row("disk -> /var mounted, power cut (fsck)", median(st.after_cut), "ms", "-");
    media_rows(media_runs, Some(UUID.to_string()), median(dhcp.wall.clone()));
    services::run(runs);
    oci::run(runs.min(3));
    api::run(runs);
    side::run(runs);
    flavours::run(runs);
}
