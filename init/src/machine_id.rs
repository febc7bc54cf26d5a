//! The machine id: 32 lowercase hex digits naming this node. Which id, in order:
//! 1. the SMBIOS product UUID when the firmware sets a real one (QEMU: `-uuid`): it names the hardware, so it holds
//!    with or without a disk, and survives a replaced or wiped state volume;
//! 2. else the id recorded on the state volume (`/var/lib/keel/machine-id`), so a machine without a UUID keeps its
//!    id across reboots;
//! 3. else a random id, recorded on the state volume when there is one (without one it lasts this boot only).
//!
//! The early boot knows only 1 or 3 ([`MachineId::detect`]); [`settle`] applies 2 once /var is mounted, and records
//! the id in use (atomically: temp file, fsync, rename), so the file always names the id the node last ran with.

use std::fmt;
use std::path::Path;

/// Where the state volume keeps the id.
pub const RECORD: &str = "/var/lib/keel/machine-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId {
    hex: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Smbios,
    Random,
    /// Recorded on the state volume by an earlier boot.
    State,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Smbios => "smbios",
            Source::Random => "random",
            Source::State => "state",
        })
    }
}

impl MachineId {
    pub fn as_str(&self) -> &str {
        &self.hex
    }

    /// The first eight hex digits: enough to tell nodes apart in a host name.
    pub fn short(&self) -> &str {
        &self.hex[..8]
    }

    /// `keel-<short id>`.
    pub fn default_hostname(&self) -> String {
        format!("keel-{}", self.short())
    }

    /// From an SMBIOS UUID string. Firmware placeholders (all zeros, all ones) are not identities.
    pub fn from_smbios_uuid(text: &str) -> Option<MachineId> {
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
        let valid = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let placeholder = hex.bytes().all(|b| b == b'0') || hex.bytes().all(|b| b == b'f');
        (valid && !placeholder).then_some(MachineId { hex, source: Source::Smbios })
    }

    pub fn from_random(bytes: [u8; 16]) -> MachineId {
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        MachineId { hex, source: Source::Random }
    }

    /// An id as recorded on the state volume: 32 hex digits (surrounding white space ignored).
    pub fn from_record(text: &str) -> Option<MachineId> {
        let hex = text.trim().to_ascii_lowercase();
        let valid = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let placeholder = hex.bytes().all(|b| b == b'0') || hex.bytes().all(|b| b == b'f');
        (valid && !placeholder).then_some(MachineId { hex, source: Source::State })
    }

    /// SMBIOS when present and real, else 16 bytes from the kernel's random pool.
    pub fn detect() -> MachineId {
        if let Some(id) =
            std::fs::read_to_string("/sys/class/dmi/id/product_uuid").ok().and_then(|t| MachineId::from_smbios_uuid(&t))
        {
            return id;
        }
        let mut bytes = [0u8; 16];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut bytes);
        }
        if bytes == [0u8; 16] {
            // No randomness source at all: still give each boot something distinct.
            let t = crate::clock::uptime().as_nanos().to_le_bytes();
            bytes.copy_from_slice(&t[..16]);
        }
        MachineId::from_random(bytes)
    }
}

/// What [`settle`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub id: MachineId,
    /// The id the record held before, when it was readable and differs from `id` (SMBIOS wins over it).
    pub replaced: Option<String>,
    /// The record now names `id`.
    pub recorded: bool,
    /// Why the record could not be read or written.
    pub error: Option<String>,
}

/// The id this node keeps (see the module doc). `record` is the file on the state volume, `None` when /var is not
/// persistent (then the early id stands).
pub fn settle(early: MachineId, record: Option<&Path>) -> Settled {
    let Some(path) = record else {
        return Settled { id: early, replaced: None, recorded: false, error: None };
    };
    let mut error = None;
    let stored = match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = MachineId::from_record(&text);
            if id.is_none() {
                error = Some(format!("{}: not a machine id, replaced", path.display()));
            }
            id
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            error = Some(format!("{}: {e}", path.display()));
            None
        }
    };
    let already = stored.clone();
    let (id, replaced) = match stored {
        Some(s) if early.source != Source::Smbios => (s, None),
        Some(s) if s.hex == early.hex => (early, None),
        Some(s) => (early, Some(s.hex)),
        None => (early, None),
    };
    let recorded = already.is_some_and(|s| s.hex == id.hex) || {
        let text = format!("{}\n", id.hex);
        match crate::controller::files::write_atomic(path, text.as_bytes(), 0o644, None) {
            Ok(()) => true,
            Err(e) => {
                error = Some(format!("{}: {e}", path.display()));
                false
            }
        }
    };
    Settled { id, replaced, recorded, error }
}

/// Settles the boot's id once /var is known (`persistent`: it is the state volume) and logs
/// `machine_id.settled`. When the id changed, the host is named after it again (unless `keel.hostname` named it:
/// `fixed_hostname`) and /run/keel/machine-id rewritten.
pub fn adopt(id: &mut MachineId, hostname: &mut String, fixed_hostname: bool, persistent: bool) {
    let s = settle(id.clone(), persistent.then_some(Path::new(RECORD)));
    if let Some(e) = &s.error {
        log::warn!("machine_id.record_failed error={}", crate::logging::q(e));
    }
    if s.id.hex != id.hex {
        if !fixed_hostname {
            *hostname = s.id.default_hostname();
            if let Err(e) = crate::hostname::converge(hostname) {
                log::error!("boot.hostname_failed hostname={hostname} error={e}");
            }
        }
        let _ = std::fs::write("/run/keel/machine-id", format!("{}\n", s.id.hex));
    }
    log::info!(
        "machine_id.settled machine_id={} source={} persistent={persistent} recorded={} replaced={} hostname={hostname}",
        s.id.hex,
        s.id.source,
        s.recorded,
        s.replaced.as_deref().unwrap_or("-")
    );
    *id = s.id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smbios_uuid_becomes_machine_id() {
        let id = MachineId::from_smbios_uuid("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9\n").unwrap();
        assert_eq!(id.as_str(), "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
        assert_eq!(id.short(), "0a1b2c3d");
        assert_eq!(id.default_hostname(), "keel-0a1b2c3d");
        assert_eq!(id.source, Source::Smbios);
    }

    #[test]
    fn placeholder_and_garbage_uuids_are_refused() {
        assert!(MachineId::from_smbios_uuid("00000000-0000-0000-0000-000000000000").is_none());
        assert!(MachineId::from_smbios_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF").is_none());
        assert!(MachineId::from_smbios_uuid("not-a-uuid").is_none());
        assert!(MachineId::from_smbios_uuid("").is_none());
    }

    #[test]
    fn random_ids_are_hex() {
        let id = MachineId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
        assert_eq!(id.source, Source::Random);
        assert!(crate::cmdline::valid_hostname(&id.default_hostname()));
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-machine-id-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("lib/keel/machine-id")
    }

    #[test]
    fn a_random_id_is_recorded_and_the_record_wins_on_the_next_boot() {
        let path = scratch("random");
        let first = settle(MachineId::from_random([1; 16]), Some(&path));
        assert_eq!(
            (first.id.as_str(), first.id.source, first.recorded),
            ("01".repeat(16).as_str(), Source::Random, true)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", "01".repeat(16)));
        // The next boot draws another random id; the recorded one is kept.
        let second = settle(MachineId::from_random([2; 16]), Some(&path));
        assert_eq!((second.id.as_str(), second.id.source), ("01".repeat(16).as_str(), Source::State));
        assert!(second.recorded && second.error.is_none() && second.replaced.is_none());
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn smbios_wins_over_the_record_and_is_recorded() {
        let path = scratch("smbios");
        settle(MachineId::from_random([1; 16]), Some(&path));
        let smbios = MachineId::from_smbios_uuid("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9").unwrap();
        let s = settle(smbios.clone(), Some(&path));
        assert_eq!(s.id, smbios);
        assert_eq!(s.replaced.as_deref(), Some("01".repeat(16).as_str()), "the disk came from another machine");
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), smbios.as_str());
        // Same hardware again: nothing to replace.
        let again = settle(smbios.clone(), Some(&path));
        assert_eq!((again.id, again.replaced, again.recorded), (smbios, None, true));
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_garbled_record_is_replaced_and_no_state_volume_keeps_the_early_id() {
        let path = scratch("garbled");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "0000\n").unwrap();
        let s = settle(MachineId::from_random([3; 16]), Some(&path));
        assert_eq!((s.id.source, s.recorded), (Source::Random, true));
        assert!(s.error.unwrap().contains("not a machine id"));
        assert_eq!(MachineId::from_record(&std::fs::read_to_string(&path).unwrap()).unwrap().as_str(), "03".repeat(16));
        let none = settle(MachineId::from_random([4; 16]), None);
        assert_eq!((none.id.as_str(), none.recorded), ("04".repeat(16).as_str(), false));
        assert!(MachineId::from_record("00000000000000000000000000000000").is_none());
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap().parent().unwrap());
    }
}
