//! Storage figures for keel-bench: the time from the node's first look for its state disk (the disk is visible:
//! the kernel probed it before /init ran) to the state volume mounted on /var, as the node logs it
//! (`storage.state mode=volume … ms=`). Three cases, each on a fresh 64 MiB disk image: the first boot
//! (partition + mke2fs), a later boot after a clean shutdown (probe + mount), and a boot after a power cut
//! (probe + e2fsck -p + mount).

use keel_e2e::{field, Vm, VmConfig, STEP_TIMEOUT};
use std::path::{Path, PathBuf};

pub struct StorageFigures {
    pub first: Vec<f64>,
    pub clean: Vec<f64>,
    pub after_cut: Vec<f64>,
}

fn state_ms(vm: &mut Vm, formatted: &str, checked: bool) -> f64 {
    let line = vm.expect("keel: storage.state mode=volume", STEP_TIMEOUT);
    assert_eq!(field(&line, "formatted"), Some(formatted), "{line}");
    let fsck = vm.transcript().iter().any(|l| l.contains("keel: storage.fsck name=state "));
    assert_eq!(fsck, checked, "e2fsck expected: {checked}; {line}");
    field(&line, "ms").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no ms in {line}"))
}

fn blank(dir: &Path) -> PathBuf {
    let path = dir.join("state.img");
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path).and_then(|f| f.set_len(64 << 20)).expect("state disk image");
    path
}

/// `runs` disks, each booted three times (first, clean, after a power cut).
pub fn bench(runs: usize) -> StorageFigures {
    let dir = std::env::temp_dir().join(format!("keel-bench-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench scratch directory");
    let mut f = StorageFigures { first: Vec::new(), clean: Vec::new(), after_cut: Vec::new() };
    for i in 0..runs {
        let cfg = VmConfig { disks: vec![blank(&dir)], ..VmConfig::default() };
        let mut vm = Vm::boot(&format!("bench-storage-first-{i}"), &cfg);
        f.first.push(state_ms(&mut vm, "true", false));
        vm.qmp(r#"{"execute":"system_powerdown"}"#);
        vm.expect("keel: shutdown.unmounted ", STEP_TIMEOUT);
        vm.expect_exit(STEP_TIMEOUT);
        drop(vm);
        let mut vm = Vm::boot(&format!("bench-storage-clean-{i}"), &cfg);
        f.clean.push(state_ms(&mut vm, "false", false));
        drop(vm); // SIGKILL: the filesystem stays dirty
        let mut vm = Vm::boot(&format!("bench-storage-cut-{i}"), &cfg);
        f.after_cut.push(state_ms(&mut vm, "false", true));
    }
    let _ = std::fs::remove_dir_all(&dir);
    f
}
