//! What the installed node keeps from the network boot that installed it, written to its new state volume
//! (blocking; run off the event loop): the machine id, the API identity (key and certificate: the fingerprint
//! operators pinned stays), the accepted config (so the disk boot runs the same generation), the rollback floor,
//! and the install record.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the new state volume is mounted while it is filled.
pub const MOUNT: &str = "/run/keel/install-state";
/// The install record, relative to /var.
pub const RECORD: &str = "lib/keel/install.json";

/// The directories under /var/lib/keel carried over as they are.
const TREES: [&str; 2] = ["api", "config"];

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Record {
    pub disk: String,
    pub sha256: String,
    pub machine_id: String,
    pub generation: u64,
    /// Unix seconds.
    pub at: u64,
}

/// Copies `from` (a /var) into `to` (the new state volume's root): see the module doc.
pub fn carry(from: &Path, to: &Path, machine_id: &str, floor: &str, record: &Record) -> Result<Vec<String>, String> {
    let keel = to.join("lib/keel");
    mkdir(&keel)?;
    let mut copied = Vec::new();
    for tree in TREES {
        let src = from.join("lib/keel").join(tree);
        if src.is_dir() {
            copy_tree(&src, &keel.join(tree))?;
            copied.push(tree.to_string());
        }
    }
    write(&keel.join("machine-id"), format!("{machine_id}\n").as_bytes(), 0o644)?;
    write(&keel.join("rollback-floor"), floor.as_bytes(), 0o600)?;
    let text = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    write(&to.join(RECORD), &text, 0o644)?;
    copied.extend(["machine-id".into(), "rollback-floor".into(), "install.json".into()]);
    std::fs::File::open(&keel).and_then(|d| d.sync_all()).map_err(|e| format!("fsync {}: {e}", keel.display()))?;
    Ok(copied)
}

fn mkdir(p: &Path) -> Result<(), String> {
    std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Regular files and directories, modes kept; anything else (links, devices) is not Keel's and is skipped.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    mkdir(dst)?;
    let entries = std::fs::read_dir(src).map_err(|e| format!("read {}: {e}", src.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("read {}: {e}", src.display()))?;
        let (from, to): (PathBuf, PathBuf) = (e.path(), dst.join(e.file_name()));
        let meta = std::fs::symlink_metadata(&from).map_err(|e| format!("stat {}: {e}", from.display()))?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else if meta.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| format!("read {}: {e}", from.display()))?;
            write(&to, &bytes, meta.permissions().mode() & 0o7777)?;
        }
    }
    Ok(())
}

/// Mounts the new state volume (ext4) on [`MOUNT`], runs `f` on it, and unmounts it whatever `f` returned.
pub fn with_mounted<T>(device: &Path, f: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let at = Path::new(MOUNT);
    mkdir(at)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some(device), at, Some("ext4"), flags, None::<&str>)
        .map_err(|e| format!("mount {} on {MOUNT}: {e}", device.display()))?;
    let result = f(at);
    let unmounted = umount2(at, MntFlags::empty()).map_err(|e| format!("unmount {MOUNT}: {e}"));
    let value = result?;
    unmounted?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_identity_config_floor_and_the_record() {
        let base = std::env::temp_dir().join(format!("keel-install-carry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (var, new) = (base.join("var"), base.join("new"));
        std::fs::create_dir_all(var.join("lib/keel/api")).unwrap();
        std::fs::create_dir_all(var.join("lib/keel/config")).unwrap();
        std::fs::create_dir_all(var.join("lib/keel/artifacts/sha256")).unwrap();
        std::fs::write(var.join("lib/keel/api/key.pem"), "KEY").unwrap();
        std::fs::write(var.join("lib/keel/config/node.toml"), "generation = 7").unwrap();
        std::fs::write(var.join("lib/keel/artifacts/sha256/x"), "big").unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let rec = Record { disk: "/dev/vda".into(), sha256: "ab".into(), machine_id: "m".into(), generation: 7, at: 1 };
        let copied = carry(&var, &new, "0123", "image=1.2\n", &rec).unwrap();
        assert!(copied.contains(&"api".to_string()) && copied.contains(&"config".to_string()), "{copied:?}");
        assert_eq!(std::fs::read_to_string(new.join("lib/keel/api/key.pem")).unwrap(), "KEY");
        assert_eq!(std::fs::read_to_string(new.join("lib/keel/config/node.toml")).unwrap(), "generation = 7");
        assert_eq!(std::fs::read_to_string(new.join("lib/keel/machine-id")).unwrap(), "0123\n");
        assert_eq!(std::fs::read_to_string(new.join("lib/keel/rollback-floor")).unwrap(), "image=1.2\n");
        assert!(!new.join("lib/keel/artifacts").exists(), "downloads are not carried");
        let back: Record = serde_json::from_slice(&std::fs::read(new.join(RECORD)).unwrap()).unwrap();
        assert_eq!(back, rec);
        let _ = std::fs::remove_dir_all(base);
    }
}
