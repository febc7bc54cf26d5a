//! UEFI variables through efivarfs (`/sys/firmware/efi/efivars`, mounted by the early boot when the firmware is
//! UEFI): each variable is a file `Name-vendor-guid` holding 4 bytes of attributes, then the value. A write is one
//! `write()` of attributes + value; efivarfs marks some files immutable, so that flag is cleared first.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// EFI_GLOBAL_VARIABLE: Boot####, BootOrder, BootNext, BootCurrent.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// systemd's loader interface (systemd-stub sets LoaderDevicePartUUID).
pub const LOADER: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
pub const NV_BS_RT: u32 = 0x7;

/// The variable store: efivarfs, or a directory in tests.
#[derive(Debug, Clone)]
pub struct Vars {
    pub dir: PathBuf,
}

// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS take a long in the kernel's ABI, though the flags are an int.
nix::ioctl_read!(get_flags, b'f', 1, libc::c_long);
nix::ioctl_write_ptr!(set_flags, b'f', 2, libc::c_long);
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

impl Vars {
    pub fn system() -> Vars {
        Vars { dir: EFIVARS.into() }
    }

    /// Whether there is a variable store at all (UEFI boot with efivarfs mounted).
    pub fn available(&self) -> bool {
        self.dir.join(format!("BootOrder-{GLOBAL}")).exists() || self.dir.join(format!("BootCurrent-{GLOBAL}")).exists()
    }

    fn path(&self, name: &str, vendor: &str) -> PathBuf {
        self.dir.join(format!("{name}-{vendor}"))
    }

    /// The value (without the attributes); None when the variable does not exist.
    pub fn get(&self, name: &str, vendor: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(name, vendor)) {
            Ok(b) if b.len() >= 4 => Ok(Some(b[4..].to_vec())),
            Ok(_) => Ok(Some(Vec::new())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every global `Boot####` entry: (number, value).
    pub fn boot_entries(&self) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
        let suffix = format!("-{GLOBAL}");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            let Some(n) = name.strip_suffix(&suffix).and_then(super::load_option::boot_number) else { continue };
            if let Some(v) = self.get(&super::load_option::boot_name(n), GLOBAL)? {
                out.push((n, v));
            }
        }
        out.sort_by_key(|(n, _)| *n);
        Ok(out)
    }

    /// Creates or replaces a non-volatile variable.
    pub fn set(&self, name: &str, vendor: &str, value: &[u8]) -> std::io::Result<()> {
        let path = self.path(name, vendor);
        if path.exists() {
            clear_immutable(&path);
        }
        let mut data = NV_BS_RT.to_le_bytes().to_vec();
        data.extend_from_slice(value);
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path)?;
        // efivarfs takes the whole variable in one write; a short write would be a different variable.
        let n = f.write(&data)?;
        if n != data.len() {
            return Err(std::io::Error::other(format!("{name}: short write {n} of {}", data.len())));
        }
        Ok(())
    }

    pub fn remove(&self, name: &str, vendor: &str) -> std::io::Result<()> {
        let path = self.path(name, vendor);
        clear_immutable(&path);
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Best effort: a store without the flag (a test directory) has nothing to clear.
fn clear_immutable(path: &Path) {
    let Ok(f) = std::fs::File::open(path) else { return };
    let mut flags: libc::c_long = 0;
    // SAFETY: both ioctls read or write exactly one c_long through a valid pointer on an open file.
    unsafe {
        if get_flags(f.as_raw_fd(), &mut flags).is_ok() && flags & FS_IMMUTABLE_FL != 0 {
            flags &= !FS_IMMUTABLE_FL;
            let _ = set_flags(f.as_raw_fd(), &flags);
        }
    }
}

/// A UTF-16LE string variable (LoaderDevicePartUUID), up to its NUL.
pub fn utf16_value(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_attribute_prefixed_files() {
        let dir = std::env::temp_dir().join(format!("keel-efivar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let vars = Vars { dir: dir.clone() };
        assert!(!vars.available());
        vars.set("BootOrder", GLOBAL, &[1, 0, 0, 0]).unwrap();
        assert!(vars.available());
        let raw = std::fs::read(dir.join(format!("BootOrder-{GLOBAL}"))).unwrap();
        assert_eq!(raw, [7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(vars.get("BootOrder", GLOBAL).unwrap(), Some(vec![1, 0, 0, 0]));
        assert_eq!(vars.get("BootNext", GLOBAL).unwrap(), None);
        vars.set("Boot0001", GLOBAL, b"one").unwrap();
        vars.set("Boot000A", GLOBAL, b"ten").unwrap();
        vars.set("Boot0002", LOADER, b"other vendor").unwrap();
        let entries = vars.boot_entries().unwrap();
        assert_eq!(entries, vec![(1, b"one".to_vec()), (10, b"ten".to_vec())]);
        vars.remove("Boot0001", GLOBAL).unwrap();
        vars.remove("Boot0001", GLOBAL).unwrap();
        assert_eq!(vars.boot_entries().unwrap().len(), 1);
        let uuid: Vec<u8> = "2C5BA79E-43C4".encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
        assert_eq!(utf16_value(&uuid), "2C5BA79E-43C4");
        let _ = std::fs::remove_dir_all(dir);
    }
}
