//! Side by side (`BENCH_ONLY=side`): Keel against the simplest init there is, a busybox `sh` script that mounts
//! /proc, /sys and /dev, brings up lo and eth0, runs udhcpc and prints a line (`image/peer/`, built by `make
//! peer`), booted on Keel's own kernel with the same QEMU flags. Both boot alternately `runs` times in each of
//! four setups (1 and 2 vCPUs, with and without virtio-rng); the medians and the ratios are printed, then where
//! Keel's boot time goes (from the kernel's printk timestamps of its own lines).
//!
//! Wall times are taken here, from QEMU's start to the console line. Keel is "network up" at `net.ready` and
//! "converged" at `config.converged generation=1` of the image's default config (the demo service running);
//! the peer is "network up" when udhcpc has bound and the script has configured the address and route.

use super::median;
use keel_e2e::{build_dir, field, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::time::Duration;

/// As `make run` boots: the machine's identity (the peer ignores it; the flags stay the same).
const UUID: &str = "6b65656c-0000-4000-8000-000000000001";
/// Both machines get the same memory.
const MEMORY_MIB: u32 = 512;

/// One boot of Keel. `*_t` are kernel uptimes (s) from printk timestamps; `*_wall` seconds from QEMU's start.
struct KeelRun {
    net_wall: f64,
    converged_wall: f64,
    rss_kib: f64,
    exec_t: f64,
    ready_t: f64,
    dhcp_start_t: f64,
    dhcp_bound_t: f64,
    net_t: f64,
    converged_t: f64,
}

struct PeerRun {
    net_wall: f64,
    rss_kib: f64,
    exec_t: f64,
    net_t: f64,
}

/// The printk timestamp of a console line, `[    1.234567] …`, in seconds.
pub fn printk_s(line: &str) -> Option<f64> {
    line.trim_start().strip_prefix('[')?.split(']').next()?.trim().parse().ok()
}

fn stamp(line: &str) -> f64 {
    printk_s(line).unwrap_or_else(|| panic!("no printk timestamp in {line:?} (CONFIG_PRINTK_TIME)"))
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn base(cpus: u32, rng: bool, initrd: Initrd) -> VmConfig {
    VmConfig { initrd, uuid: Some(UUID.into()), memory_mib: MEMORY_MIB, cpus, rng, ..VmConfig::default() }
}

fn quit(mut vm: Vm) {
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
}

fn boot_keel(name: &str, cfg: &VmConfig) -> KeelRun {
    let mut vm = Vm::boot(name, cfg);
    let exec = vm.expect("Run /init as init process", BOOT_TIMEOUT);
    let net = vm.expect("keel: net.ready ", BOOT_TIMEOUT);
    let net_wall = vm.started.elapsed().as_secs_f64();
    let converged = vm.expect("keel: config.converged generation=1 ", STEP_TIMEOUT);
    let converged_wall = vm.started.elapsed().as_secs_f64();
    // Printed before net.ready; their order among themselves varies.
    let short = Duration::from_secs(5);
    let ready = vm.expect_anywhere("keel: ready ", short);
    let dhcp_start = vm.expect_anywhere("keel: net.dhcp.start ", short);
    let dhcp_bound = vm.expect_anywhere("keel: net.dhcp.bound ", short);
    let run = KeelRun {
        net_wall,
        converged_wall,
        rss_kib: field(&converged, "rss_kib").and_then(|v| v.parse().ok()).unwrap_or_else(|| num(&net, "rss_kib")),
        exec_t: stamp(&exec),
        ready_t: stamp(&ready),
        dhcp_start_t: stamp(&dhcp_start),
        dhcp_bound_t: stamp(&dhcp_bound),
        net_t: stamp(&net),
        converged_t: stamp(&converged),
    };
    eprintln!(
        "bench: {name} net_wall_s={:.3} converged_wall_s={:.3} rss_kib={} exec={:.3} ready={:.3} dhcp={:.3}-{:.3} \
         net={:.3} converged={:.3}",
        run.net_wall,
        run.converged_wall,
        run.rss_kib,
        run.exec_t,
        run.ready_t,
        run.dhcp_start_t,
        run.dhcp_bound_t,
        run.net_t,
        run.converged_t
    );
    quit(vm);
    run
}

fn boot_peer(name: &str, cfg: &VmConfig) -> PeerRun {
    let mut vm = Vm::boot(name, cfg);
    let exec = vm.expect("Run /init as init process", BOOT_TIMEOUT);
    let up = vm.expect("peer: ", BOOT_TIMEOUT);
    let net_wall = vm.started.elapsed().as_secs_f64();
    assert!(up.contains("peer: network up "), "VM {name:?}: the busybox peer got no lease: {up}");
    let run = PeerRun { net_wall, rss_kib: num(&up, "rss_kib"), exec_t: stamp(&exec), net_t: num(&up, "uptime_s") };
    eprintln!("bench: {name} net_wall_s={net_wall:.3} exec={:.3} {}", run.exec_t, up.trim());
    quit(vm);
    run
}

fn med<T>(runs: &[T], f: impl Fn(&T) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

/// The peer's initramfs, `build/peer/initramfs.cpio.zst` (`make peer`; `make bench` builds it).
fn peer_initrd() -> std::path::PathBuf {
    let path = build_dir().join("peer/initramfs.cpio.zst");
    assert!(path.exists(), "{} is missing: build it with 'make peer' (make bench does)", path.display());
    path
}

pub fn run(runs: usize) {
    let peer = peer_initrd();
    let setups = [(1, false), (1, true), (2, false), (2, true)];
    let mut results = Vec::new();
    for (cpus, rng) in setups {
        let (mut keel, mut bb) = (Vec::new(), Vec::new());
        let tag = format!("{cpus}cpu-{}", if rng { "rng" } else { "norng" });
        for i in 0..runs {
            keel.push(boot_keel(&format!("bench-side-keel-{tag}-{i}"), &base(cpus, rng, Initrd::Production)));
            bb.push(boot_peer(&format!("bench-side-peer-{tag}-{i}"), &base(cpus, rng, Initrd::Custom(peer.clone()))));
        }
        results.push((cpus, rng, keel, bb));
    }
    println!(
        "Side by side: Keel vs busybox sh + udhcpc on the same kernel and QEMU flags (TCG, {MEMORY_MIB} MiB, \
         virtio-net, -uuid), {runs} alternating boots per setup, medians"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>7} {:>12} {:>7} {:>10} {:>10} {:>6}",
        "setup", "keel net", "peer net", "ratio", "keel conv.", "ratio", "keel RSS", "peer RSS", "ratio"
    );
    for (cpus, rng, keel, bb) in &results {
        let (k_net, p_net) = (med(keel, |r| r.net_wall), med(bb, |r| r.net_wall));
        let k_conv = med(keel, |r| r.converged_wall);
        let (k_rss, p_rss) = (med(keel, |r| r.rss_kib), med(bb, |r| r.rss_kib));
        println!(
            "{:<18} {:>8.2} s {:>8.2} s {:>7.2} {:>10.2} s {:>7.2} {:>6.0} KiB {:>6.0} KiB {:>6.2}",
            format!("{cpus} vCPU, {}", if *rng { "virtio-rng" } else { "no rng" }),
            k_net,
            p_net,
            k_net / p_net,
            k_conv,
            k_conv / p_net,
            k_rss,
            p_rss,
            k_rss / p_rss
        );
    }
    println!("(ratios are Keel / peer; target: keel converged / peer network up <= 1.00 in every setup)");
    println!("Where the boot time goes (medians, s): QEMU start -> kernel t=0 -> /init exec -> ...");
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}",
        "setup", "qemu", "kernel", "->ready", "->dhcp", "dhcp", "->net", "->conv", "peer qemu", "kernel", "->net"
    );
    for (cpus, rng, keel, bb) in &results {
        println!(
            "{:<18} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>9.3} {:>9.3} {:>9.3}",
            format!("{cpus} vCPU, {}", if *rng { "virtio-rng" } else { "no rng" }),
            med(keel, |r| r.net_wall - r.net_t),
            med(keel, |r| r.exec_t),
            med(keel, |r| r.ready_t - r.exec_t),
            med(keel, |r| r.dhcp_start_t - r.ready_t),
            med(keel, |r| r.dhcp_bound_t - r.dhcp_start_t),
            med(keel, |r| r.net_t - r.dhcp_bound_t),
            med(keel, |r| r.converged_t - r.net_t),
            med(bb, |r| r.net_wall - r.net_t),
            med(bb, |r| r.exec_t),
            med(bb, |r| r.net_t - r.exec_t),
        );
    }
    println!(
        "(qemu: QEMU start -> kernel t=0, firmware and loading; kernel: t=0 -> exec of /init, incl. unpacking the \
         initramfs; ->ready: /init exec -> keel ready; ->dhcp: ready -> DHCP start; dhcp: DISCOVER -> bound; \
         ->net: bound -> net.ready; ->conv: net.ready -> config.converged)"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_printk_timestamps() {
        assert_eq!(super::printk_s("[    1.234567] keel: ready uptime_ms=1"), Some(1.234567));
        assert_eq!(super::printk_s("peer: network up"), None);
    }
}
