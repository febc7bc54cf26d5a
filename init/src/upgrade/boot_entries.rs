//! Carries out the boot-entry plans of [`super::load_option`] on the UEFI variable store: "Keel A" and "Keel B"
//! entries pointing at each slot's `\keel.efi`, `BootNext` for a trial boot, `BootOrder` for a commit.

use super::efivar::{Vars, GLOBAL};
use super::load_option::{self, boot_name};
use super::slots::{Layout, Slot, SLOT_FILE};

/// Makes sure both slots have their entry; returns (A's number, B's number).
pub fn ensure(vars: &Vars, layout: &Layout) -> Result<(u16, u16), String> {
    let existing = vars.boot_entries().map_err(|e| format!("list boot entries: {e}"))?;
    let mut numbers = Vec::new();
    for slot in [Slot::A, Slot::B] {
        let want = load_option::encode(slot.entry(), &layout.part(slot).hd, SLOT_FILE);
        let plan = load_option::plan_entry(&existing, slot.entry(), &want, &numbers);
        if let Some(bytes) = &plan.write {
            vars.set(&boot_name(plan.number), GLOBAL, bytes)
                .map_err(|e| format!("write {} ({}): {e}", boot_name(plan.number), slot.entry()))?;
            log::info!("upgrade.boot_entry name={} slot={slot}", boot_name(plan.number));
        }
        numbers.push(plan.number);
    }
    Ok((numbers[0], numbers[1]))
}

fn number(entries: (u16, u16), slot: Slot) -> u16 {
    match slot {
        Slot::A => entries.0,
        Slot::B => entries.1,
    }
}

/// Boots `slot` once, on the next boot only: `BootNext`. Returns its entry number.
pub fn prepare_trial(vars: &Vars, layout: &Layout, slot: Slot) -> Result<u16, String> {
    let n = number(ensure(vars, layout)?, slot);
    vars.set("BootNext", GLOBAL, &load_option::encode_order(&[n])).map_err(|e| format!("write BootNext: {e}"))?;
    Ok(n)
}

/// Makes `slot` the one the firmware boots from now on, with the other slot next in line.
pub fn make_default(vars: &Vars, layout: &Layout, slot: Slot) -> Result<Vec<u16>, String> {
    let entries = ensure(vars, layout)?;
    let current = vars.get("BootOrder", GLOBAL).map_err(|e| format!("read BootOrder: {e}"))?.unwrap_or_default();
    let current = load_option::decode_order(&current);
    let order = load_option::commit_order(&current, number(entries, slot), Some(number(entries, slot.other())));
    if order != current {
        vars.set("BootOrder", GLOBAL, &load_option::encode_order(&order))
            .map_err(|e| format!("write BootOrder: {e}"))?;
    }
    Ok(order)
}

/// Cancels a trial boot that has not happened yet.
pub fn clear_next(vars: &Vars) -> Result<(), String> {
    vars.remove("BootNext", GLOBAL).map_err(|e| format!("remove BootNext: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::gpt::{Entry, Guid, Table};
    use std::path::PathBuf;

    #[test]
    fn trial_then_commit_on_a_variable_store() {
        let dir = std::env::temp_dir().join(format!("keel-boot-entries-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let vars = Vars { dir: dir.clone() };
        let e = |number: u32, name: &str| Entry {
            number,
            type_guid: Guid([9; 16]),
            guid: Guid([number as u8; 16]),
            first_lba: number as u64 * 1000,
            last_lba: number as u64 * 1000 + 999,
            name: name.into(),
        };
        let table =
            Table { sector: 512, disk_guid: Guid([0; 16]), valid: true, entries: vec![e(2, "KEEL_A"), e(3, "KEEL_B")] };
        let layout = super::super::slots::from_table("/dev/vda".into(), &table, &|n| {
            Some(PathBuf::from(format!("/dev/vda{n}")))
        })
        .unwrap();
        // The firmware's own entries 0 and 1, booted in that order.
        let firmware = load_option::encode("UEFI Misc Device", &layout.a.hd, "\\EFI\\BOOT\\BOOTX64.EFI");
        vars.set("Boot0000", GLOBAL, &firmware).unwrap();
        vars.set("Boot0001", GLOBAL, &firmware).unwrap();
        vars.set("BootOrder", GLOBAL, &[0, 0, 1, 0]).unwrap();

        assert_eq!(prepare_trial(&vars, &layout, Slot::B).unwrap(), 3);
        assert_eq!(vars.get("BootNext", GLOBAL).unwrap(), Some(vec![3, 0]));
        let b = load_option::decode(&vars.get("Boot0003", GLOBAL).unwrap().unwrap()).unwrap();
        assert_eq!((b.description.as_str(), b.disk, b.file.as_deref()), ("Keel B", Some(layout.b.hd), Some(SLOT_FILE)));
        assert_eq!(vars.get("BootOrder", GLOBAL).unwrap(), Some(vec![0, 0, 1, 0]), "a trial leaves the order alone");

        assert_eq!(make_default(&vars, &layout, Slot::B).unwrap(), [3, 2, 0, 1]);
        assert_eq!(make_default(&vars, &layout, Slot::A).unwrap(), [2, 3, 0, 1]);
        assert_eq!(vars.boot_entries().unwrap().len(), 4, "entries are reused, not added again");
        clear_next(&vars).unwrap();
        assert_eq!(vars.get("BootNext", GLOBAL).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
