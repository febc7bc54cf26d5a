//! The machine id: 32 lowercase hex digits naming this node. It is derived from the SMBIOS product UUID when the
//! firmware sets a real one (QEMU: `-uuid`), so the same machine keeps its id across reboots without any disk; else
//! it is random for this boot (the state volume will persist it once storage lands).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId {
    hex: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Smbios,
    Random,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Smbios => "smbios",
            Source::Random => "random",
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
}
