//! At most two VMs at a time on this machine, across every test process: a VM holds an exclusive lock on one of
//! two lock files for its whole life. The lock files live in one machine-wide directory (`KEEL_VM_SLOTS_DIR`,
//! default `$TMPDIR/keel-vm-slots`), so test runs from several checkouts share the same two slots.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SLOTS: usize = 2;

/// The machine-wide directory holding the slot lock files.
pub fn lock_dir() -> PathBuf {
    let dir = match std::env::var_os("KEEL_VM_SLOTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("keel-vm-slots"),
    };
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub struct Slot {
    _file: File,
}

impl Slot {
    pub fn acquire(dir: &Path, timeout: Duration) -> Slot {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..SLOTS {
                let path = dir.join(format!(".vm-slot-{i}.lock"));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("cannot open VM slot lock {}: {e}", path.display()));
                if file.try_lock().is_ok() {
                    return Slot { _file: file };
                }
            }
            assert!(Instant::now() < deadline, "no free VM slot after {}s: other VMs hold both", timeout.as_secs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
