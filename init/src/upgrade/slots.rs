//! The two boot slots of a Keel disk (`make disk`): GPT partitions named KEEL_A and KEEL_B, each a whole-partition
//! FAT file system holding `\keel.efi`. Which one is running comes from systemd-stub's LoaderDevicePartUUID (the
//! partition the firmware loaded the UKI from); the ESP's fallback `\EFI\BOOT\BOOTX64.EFI` is the factory copy of
//! slot A, so booting it counts as running slot A.

use super::load_option::HardDrive;
use crate::storage::gpt;
use crate::storage::sysfs::{self, Roots};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "KEEL_A",
            Slot::B => "KEEL_B",
        }
    }

    /// The boot entry's description.
    pub fn entry(self) -> &'static str {
        match self {
            Slot::A => "Keel A",
            Slot::B => "Keel B",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The file each slot's FAT holds, as a UEFI path.
pub const SLOT_FILE: &str = "\\keel.efi";

/// One slot partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPart {
    pub slot: Slot,
    /// The partition's device node (/dev/vda2).
    pub node: PathBuf,
    pub bytes: u64,
    pub hd: HardDrive,
}

/// The disk holding both slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk: PathBuf,
    pub a: SlotPart,
    pub b: SlotPart,
    /// Every partition GUID on that disk (to tell "booted from this disk's ESP" from "booted elsewhere").
    pub guids: Vec<gpt::Guid>,
}

impl Layout {
    pub fn part(&self, slot: Slot) -> &SlotPart {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

/// Finds the slots in one disk's GPT; `nodes` maps a partition number to its device node.
pub fn from_table(disk: PathBuf, table: &gpt::Table, nodes: &dyn Fn(u32) -> Option<PathBuf>) -> Option<Layout> {
    let find = |slot: Slot| {
        let e = table.entries.iter().find(|e| e.name == slot.label())?;
        let size_lba = e.last_lba.checked_sub(e.first_lba)? + 1;
        Some(SlotPart {
            slot,
            node: nodes(e.number)?,
            bytes: size_lba * table.sector as u64,
            hd: HardDrive { number: e.number, start_lba: e.first_lba, size_lba, guid: e.guid },
        })
    };
    Some(Layout { disk, a: find(Slot::A)?, b: find(Slot::B)?, guids: table.entries.iter().map(|e| e.guid).collect() })
}

/// Which slot runs, given the loader's partition GUID (any case): the slot with that GUID, A when it is another
/// partition of the slots' disk (its ESP), None when the UKI came from elsewhere.
pub fn running(layout: &Layout, loader_part: &str) -> Option<Slot> {
    let want = loader_part.trim().to_ascii_lowercase();
    let is = |g: &gpt::Guid| g.to_string() == want;
    if is(&layout.b.hd.guid) {
        Some(Slot::B)
    } else if is(&layout.a.hd.guid) || layout.guids.iter().any(is) {
        Some(Slot::A)
    } else {
        None
    }
}

/// Scans the system's disks for one whose GPT has both KEEL_A and KEEL_B; with several, the one the loader's
/// partition is on.
pub fn discover(roots: &Roots, loader_part: Option<&str>) -> Option<Layout> {
    let mut found = Vec::new();
    for disk in sysfs::scan(roots, &|n| !n.starts_with("loop") && !n.starts_with("ram")) {
        let mut head = vec![0u8; 34 * 4096];
        let Ok(mut f) = std::fs::File::open(&disk.node) else { continue };
        let n = f.read(&mut head).unwrap_or(0);
        let Some(table) = gpt::parse(&head[..n]) else { continue };
        let nodes = |number: u32| disk.partitions.iter().find(|p| p.number == number).map(|p| p.node.clone());
        if let Some(layout) = from_table(disk.node.clone(), &table, &nodes) {
            found.push(layout);
        }
    }
    let booted = |l: &&Layout| loader_part.is_some_and(|p| running(l, p).is_some());
    found.iter().find(booted).or(found.first()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::gpt::{Entry, Guid, Table};

    fn guid(n: u8) -> Guid {
        Guid([n; 16])
    }

    fn table() -> Table {
        let e = |number, name: &str, first, last| Entry {
            number,
            type_guid: guid(9),
            guid: guid(number as u8),
            first_lba: first,
            last_lba: last,
            name: name.into(),
        };
        Table {
            sector: 512,
            disk_guid: guid(0),
            valid: true,
            entries: vec![
                e(1, "EFI system partition", 2048, 133119),
                e(2, "KEEL_A", 133120, 264191),
                e(3, "KEEL_B", 264192, 395263),
            ],
        }
    }

    #[test]
    fn finds_both_slots_and_which_runs() {
        let nodes = |n: u32| Some(PathBuf::from(format!("/dev/vda{n}")));
        let l = from_table("/dev/vda".into(), &table(), &nodes).unwrap();
        assert_eq!(l.a.node, PathBuf::from("/dev/vda2"));
        assert_eq!(l.b.hd, HardDrive { number: 3, start_lba: 264192, size_lba: 131072, guid: guid(3) });
        assert_eq!(l.b.bytes, 64 << 20);
        let upper = |g: Guid| g.to_string().to_ascii_uppercase();
        assert_eq!(running(&l, &upper(guid(3))), Some(Slot::B));
        assert_eq!(running(&l, &guid(2).to_string()), Some(Slot::A));
        assert_eq!(running(&l, &upper(guid(1))), Some(Slot::A), "the ESP's fallback copy is slot A");
        assert_eq!(running(&l, &guid(7).to_string()), None, "booted from another disk");
        let mut one = table();
        one.entries.retain(|e| e.name != "KEEL_B");
        assert!(from_table("/dev/vda".into(), &one, &nodes).is_none());
        assert_eq!(Slot::A.other(), Slot::B);
    }
}
