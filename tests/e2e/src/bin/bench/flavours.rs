//! The kernel flavours side by side: `virt` (kernel-config/keel.config) and `metal` (+ metal.config, the default),
//! as `make kernel KEEL_KERNEL=…` builds them into `build/vmlinuz-<flavour>`: their size, the initramfs that ships
//! with the metal image (firmware and microcode included) and the production initramfs' size without them, and
//! the boot from QEMU's start to ready with each kernel and the same initramfs, N times each (medians). A flavour
//! not built is reported as such (`make bench` builds both).

use keel_e2e::{build_dir, field, Initrd, Vm, VmConfig, BOOT_TIMEOUT};

pub fn run(runs: usize) {
    println!("Kernel flavours: {runs} boots each, QEMU TCG, medians (same initramfs)");
    println!("{:<8} {:>14} {:>18} {:>22}", "flavour", "vmlinuz KiB", "ready (wall) ms", "kernel uptime at ready ms");
    for flavour in ["virt", "metal"] {
        let kernel = build_dir().join(format!("vmlinuz-{flavour}"));
        let Ok(meta) = std::fs::metadata(&kernel) else {
            println!("{flavour:<8} not built (make kernel KEEL_KERNEL={flavour})");
            continue;
        };
        let (mut wall, mut uptime) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let cfg = VmConfig { kernel: Some(kernel.clone()), initrd: Initrd::Production, ..VmConfig::default() };
            let mut vm = Vm::boot(&format!("bench-flavour-{flavour}-{i}"), &cfg);
            let ready = vm.expect("keel: ready ", BOOT_TIMEOUT);
            wall.push(vm.started.elapsed().as_secs_f64() * 1000.0);
            uptime.push(field(&ready, "uptime_ms").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN));
        }
        println!(
            "{flavour:<8} {:>14.1} {:>18.1} {:>22.1}",
            meta.len() as f64 / 1024.0,
            super::median(wall),
            super::median(uptime)
        );
    }
    let kib = |name: &str| std::fs::metadata(build_dir().join(name)).map(|m| m.len() / 1024).unwrap_or(0);
    println!(
        "initramfs: {} KiB shipped = {} KiB early microcode + {} KiB root (firmware inside: {})",
        kib("initramfs.cpio.zst"),
        kib("microcode.cpio"),
        kib("initramfs-root.cpio.zst"),
        std::fs::read_to_string(build_dir().join("firmware/summary"))
            .unwrap_or_else(|_| "see make image".into())
            .trim()
    );
}
