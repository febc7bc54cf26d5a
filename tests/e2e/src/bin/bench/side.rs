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

/// One boot of Keel: when each line reached the host, in seconds from QEMU's start (the host's clock: under a
/// loaded TCG host the guest's own clock runs off, so its printk timestamps are not used for the phases).
struct KeelRun {
    exec: f64,
    ready: f64,
    dhcp_start: f64,
    dhcp_bound: f64,
    net: f64,
    converged: f64,
    rss_kib: f64,
}

struct PeerRun {
    exec: f64,
    net: f64,
    rss_kib: f64,
}

/// The printk timestamp of a console line, `[    1.234567] …`, in seconds.
pub fn printk_s(line: &str) -> Option<f64> {
    line.trim_start().strip_prefix('[')?.split(']').next()?.trim().parse().ok()
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// When the first console line containing `needle` arrived, in seconds from QEMU's start, and the line.
fn at(vm: &Vm, needle: &str) -> (f64, String) {
    match vm.console.arrival(needle) {
        Some((line, t)) => (t.duration_since(vm.started).as_secs_f64(), line),
        None => panic!("VM {:?}: no console line containing {needle:?}", vm.name),
    }
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
    vm.expect("keel: net.ready ", BOOT_TIMEOUT);
    let converged = vm.expect("keel: config.converged generation=1 ", STEP_TIMEOUT);
    let (net, net_line) = at(&vm, "keel: net.ready ");
    let rss_kib =
        field(&converged, "rss_kib").and_then(|v| v.parse().ok()).unwrap_or_else(|| num(&net_line, "rss_kib"));
    let run = KeelRun {
        exec: at(&vm, "Run /init as init process").0,
        ready: at(&vm, "keel: ready ").0,
        dhcp_start: at(&vm, "keel: net.dhcp.start ").0,
        dhcp_bound: at(&vm, "keel: net.dhcp.bound ").0,
        net,
        converged: at(&vm, "keel: config.converged generation=1 ").0,
        rss_kib,
    };
    eprintln!(
        "bench: {name} exec={:.3} ready={:.3} dhcp={:.3}-{:.3} net={:.3} converged={:.3} rss_kib={}",
        run.exec, run.ready, run.dhcp_start, run.dhcp_bound, run.net, run.converged, run.rss_kib
    );
    quit(vm);
    run
}

fn boot_peer(name: &str, cfg: &VmConfig) -> PeerRun {
    let mut vm = Vm::boot(name, cfg);
    let up = vm.expect("peer: ", BOOT_TIMEOUT);
    assert!(up.contains("peer: network up "), "VM {name:?}: the busybox peer got no lease: {up}");
    let run = PeerRun {
        exec: at(&vm, "Run /init as init process").0,
        net: at(&vm, "peer: ").0,
        rss_kib: num(&up, "rss_kib"),
    };
    eprintln!("bench: {name} exec={:.3} net={:.3} {}", run.exec, run.net, up.trim());
    quit(vm);
    run
}

/// A boot that fails (under a loaded TCG host the kernel sometimes panics early, "IO-APIC + timer doesn't
/// work") is tried again, up to three times, so one flake does not lose the whole run; each failure is printed.
fn retried<T>(name: &str, boot: impl Fn(&str) -> T) -> T {
    for attempt in 1..=3 {
        let name = if attempt == 1 { name.to_string() } else { format!("{name}-retry{attempt}") };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boot(&name))) {
            Ok(run) => return run,
            Err(_) => eprintln!("bench: {name} failed (attempt {attempt} of 3; its console is under target/e2e/)"),
        }
    }
    panic!("bench: {name} failed three times")
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
            let (keel_cfg, peer_cfg) =
                (base(cpus, rng, Initrd::Production), base(cpus, rng, Initrd::Custom(peer.clone())));
            keel.push(retried(&format!("bench-side-keel-{tag}-{i}"), |n| boot_keel(n, &keel_cfg)));
            bb.push(retried(&format!("bench-side-peer-{tag}-{i}"), |n| boot_peer(n, &peer_cfg)));
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
        let (k_net, p_net) = (med(keel, |r| r.net), med(bb, |r| r.net));
        let k_conv = med(keel, |r| r.converged);
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
    println!("Where the boot time goes (medians, s, by when each console line reached the host):");
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>10} {:>8}",
        "setup", "->/init", "->ready", "->dhcp", "dhcp", "->net", "->conv", "peer->/init", "->net"
    );
    for (cpus, rng, keel, bb) in &results {
        println!(
            "{:<18} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} | {:>10.3} {:>8.3}",
            format!("{cpus} vCPU, {}", if *rng { "virtio-rng" } else { "no rng" }),
            med(keel, |r| r.exec),
            med(keel, |r| r.ready - r.exec),
            med(keel, |r| r.dhcp_start - r.ready),
            med(keel, |r| r.dhcp_bound - r.dhcp_start),
            med(keel, |r| r.net - r.dhcp_bound),
            med(keel, |r| r.converged - r.net),
            med(bb, |r| r.exec),
            med(bb, |r| r.net - r.exec),
        );
    }
    println!(
        "(->/init: QEMU start -> the kernel's exec of /init: firmware, loading, kernel start-up, unpacking the \
         initramfs; ->ready: /init -> keel ready; ->dhcp: ready -> DHCP start; dhcp: start -> lease bound; \
         ->net: bound -> net.ready; ->conv: net.ready -> config.converged, the demo running)"
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
