//! At most two VMs at a time on this machine, across every test process: a VM holds an exclusive lock on one of
//! two lock files for its whole life. The lock files live in one machine-wide directory (`KEEL_VM_SLOTS_DIR`,
//! default `$TMPDIR/keel-vm-slots`), so test runs from several checkouts share the same two slots.
//! A test that runs two VMs at once first takes the one two-VM turn there (`PairTurn`), so two such tests never
//! hold one slot each while waiting for the other.

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
        let names: Vec<String> = (0..SLOTS).map(|i| format!(".vm-slot-{i}.lock")).collect();
        Slot { _file: lock_one_of(dir, &names, timeout, "no free VM slot: other VMs hold both") }
    }
}

/// The turn of a test that runs two VMs at once: it takes this before booting either and holds it while both live.
/// Two such tests could otherwise each hold one slot and wait for the other forever. Tests with one VM at a time
/// do not take it: they never wait for a slot while holding one.
pub struct PairTurn {
    _file: File,
}

impl PairTurn {
    pub fn take(dir: &Path, timeout: Duration) -> PairTurn {
        let names = [".vm-pair.lock".to_string()];
        PairTurn { _file: lock_one_of(dir, &names, timeout, "another two-VM test kept its turn") }
    }
}

/// An exclusive lock on the first free of `names` in `dir`, polling until `timeout` (then panics with `why`).
fn lock_one_of(dir: &Path, names: &[String], timeout: Duration, why: &str) -> File {
    let deadline = Instant::now() + timeout;
    loop {
        for name in names {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open VM lock {}: {e}", path.display()));
            if file.try_lock().is_ok() {
                return file;
            }
        }
        assert!(Instant::now() < deadline, "{why} for {}s", timeout.as_secs());
        std::thread::sleep(Duration::from_millis(200));
    }
}
