//! Initramfs compression (`BENCH_ONLY=compress`, run by `make compress-bench`): the production initramfs
//! compressed each way the kernel can unpack (`build/compress/initramfs.cpio.<variant>`), booted on a kernel
//! with every `CONFIG_RD_*` decompressor (`build/compress/vmlinuz`). For each: the bytes (what PXE moves), the
//! kernel's own unpack time under TCG (its printk timestamps of "Trying to unpack rootfs image as initramfs" and
//! "Freeing initrd memory"), and QEMU start -> the exec of /init and Keel's ready (the host's clock).

use super::median;
use keel_e2e::{build_dir, Initrd, Vm, VmConfig, BOOT_TIMEOUT};
use std::time::Duration;

/// In the order printed; `make compress-bench` writes one file per variant.
pub const VARIANTS: [&str; 8] = ["none", "gzip9", "lz4hc", "zstd3", "zstd9", "zstd19", "zstd22", "xz"];

struct Run {
    unpack_s: f64,
    exec_s: f64,
    ready_wall: f64,
}

fn stamp(line: &str) -> f64 {
    super::side::printk_s(line).unwrap_or_else(|| panic!("no printk timestamp in {line:?} (CONFIG_PRINTK_TIME)"))
}

fn boot(name: &str, initrd: &std::path::Path) -> Run {
    let cfg = VmConfig { initrd: Initrd::Custom(initrd.to_path_buf()), ..VmConfig::default() };
    let mut vm = Vm::boot(name, &cfg);
    let start = vm.expect("Trying to unpack rootfs image as initramfs", BOOT_TIMEOUT);
    let freed = vm.expect("Freeing initrd memory", BOOT_TIMEOUT);
    vm.expect("Run /init as init process", BOOT_TIMEOUT);
    vm.expect_ready();
    let ready_wall = vm.started.elapsed().as_secs_f64();
    let exec_s = match vm.console.arrival("Run /init as init process") {
        Some((_, t)) => t.duration_since(vm.started).as_secs_f64(),
        None => f64::NAN,
    };
    let run = Run { unpack_s: stamp(&freed) - stamp(&start), exec_s, ready_wall };
    eprintln!("bench: {name} unpack_s={:.3} exec_s={:.3} ready_wall_s={:.3}", run.unpack_s, run.exec_s, ready_wall);
    vm.qmp(r#"{"execute":"quit"}"#);
    let _ = vm.expect_exit(Duration::from_secs(30));
    run
}

pub fn run(runs: usize) {
    let dir = build_dir();
    let present: Vec<_> =
        VARIANTS.iter().map(|v| (*v, dir.join(format!("initramfs.cpio.{v}")))).filter(|(_, p)| p.exists()).collect();
    assert!(
        !present.is_empty(),
        "no initramfs variants in {}: run 'make compress-bench' (it builds them and the kernel)",
        dir.display()
    );
    let mut rows = Vec::new();
    for (variant, path) in &present {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let boots: Vec<Run> = (0..runs).map(|i| boot(&format!("bench-compress-{variant}-{i}"), path)).collect();
        rows.push((variant, bytes, boots));
    }
    let kernel = std::fs::metadata(dir.join("vmlinuz")).map(|m| m.len()).unwrap_or(0);
    println!("Initramfs compression: {runs} boots each, QEMU TCG, 1 vCPU, medians (kernel with every RD_*)");
    println!(
        "{:<8} {:>10} {:>14} {:>11} {:>14} {:>12} {:>14}",
        "variant", "bytes", "+kernel (MiB)", "unpack (s)", "->/init (s)", "ready (s)", "1 Gb/s (ms)"
    );
    for (variant, bytes, boots) in rows {
        println!(
            "{:<8} {:>10} {:>14.2} {:>11.3} {:>14.3} {:>12.3} {:>14.1}",
            variant,
            bytes,
            (bytes + kernel) as f64 / 1048576.0,
            median(boots.iter().map(|r| r.unpack_s).collect()),
            median(boots.iter().map(|r| r.exec_s).collect()),
            median(boots.iter().map(|r| r.ready_wall).collect()),
            bytes as f64 * 8.0 / 1e9 * 1000.0
        );
    }
    println!("(unpack: the kernel's initramfs unpack, by its printk timestamps; ->/init and ready: QEMU start -> the exec of /init and keel ready, by the host's clock)");
}
