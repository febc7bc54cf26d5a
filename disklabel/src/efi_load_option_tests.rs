use super::*;

/// Slot A of `make disk`: partition 2, 1 MiB + 64 MiB in, 64 MiB long, GUID 2c5ba79e-43c4-45b9-8b69-a96cc15f475e.
fn slot_a() -> HardDrive {
    HardDrive {
        number: 2,
        start_lba: 0x2_0800,
        size_lba: 0x2_0000,
        guid: Guid::from_fields(0x2c5b_a79e, 0x43c4, 0x45b9, [0x8b, 0x69, 0xa9, 0x6c, 0xc1, 0x5f, 0x47, 0x5e]),
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn encodes_the_layout_efibootmgr_writes() {
    // What `efibootmgr -c -d /dev/vda -p 2 -l '\keel.efi' -L 'Keel A'` stores (after efivarfs's 4 attribute bytes).
    let want = hex("01000000 4600 \
         4b0065006500 6c002000 41000000 \
         04012a00 02000000 0008020000000000 0000020000000000 \
         9ea75b2c c443 b945 8b69a96cc15f475e 02 02 \
         04041800 5c006b0065006500 6c002e00 6500660069000000 \
         7fff0400");
    let got = encode("Keel A", &slot_a(), "\\keel.efi");
    assert_eq!(got, want);
    let back = decode(&got).unwrap();
    assert_eq!(back.attributes, ACTIVE);
    assert_eq!(back.description, "Keel A");
    assert_eq!(back.disk, Some(slot_a()));
    assert_eq!(back.file.as_deref(), Some("\\keel.efi"));
}

#[test]
fn decodes_firmware_entries_and_rejects_broken_ones() {
    // An OVMF entry: description, then a firmware-volume path (not a disk), then optional data.
    let mut fv = 1u32.to_le_bytes().to_vec();
    fv.extend_from_slice(&24u16.to_le_bytes());
    fv.extend(utf16z("EFI Internal Shell"));
    fv.extend(node(4, 7, &[0xAA; 16]));
    fv.extend(node(0x7f, 0xff, &[]));
    fv.extend_from_slice(b"\x4e\xac\x08\x81");
    let o = decode(&fv).unwrap();
    assert_eq!((o.description.as_str(), o.disk, o.file), ("EFI Internal Shell", None, None));
    let good = encode("Keel B", &slot_a(), "\\keel.efi");
    assert!(decode(&good[..good.len() - 5]).is_none(), "a truncated device path");
    let mut zero_len = good.clone();
    let hd_at = 6 + utf16z("Keel B").len();
    zero_len[hd_at + 2] = 0;
    assert!(decode(&zero_len).is_none(), "a node of length 0 would loop forever");
    assert!(decode(&[1, 0]).is_none());
}

#[test]
fn boot_variables_names_and_orders() {
    assert_eq!(boot_name(0x1a), "Boot001A");
    assert_eq!(boot_number("Boot001A"), Some(0x1a));
    assert_eq!(boot_number("Boot001a"), Some(0x1a));
    assert_eq!(boot_number("BootOrder"), None);
    assert_eq!(boot_number("BootNext"), None);
    assert_eq!(encode_order(&[3, 0x100]), [3, 0, 0, 1]);
    assert_eq!(decode_order(&[3, 0, 0, 1, 9]), [3, 0x100]);
}

#[test]
fn plans_entries_reusing_ours_and_taking_free_numbers() {
    let a = encode("Keel A", &slot_a(), "\\keel.efi");
    let mut moved = slot_a();
    moved.start_lba += 2048;
    let a_moved = encode("Keel A", &moved, "\\keel.efi");
    let b = encode("Keel B", &moved, "\\keel.efi");
    let firmware = encode("UEFI Misc Device", &slot_a(), "\\EFI\\BOOT\\BOOTX64.EFI");
    let existing = vec![(0, firmware.clone()), (1, firmware), (2, a.clone())];
    // Ours, unchanged: nothing to write.
    assert_eq!(plan_entry(&existing, "Keel A", &a, &[]), EntryPlan { number: 2, write: None });
    // Ours, changed: rewritten in place.
    assert_eq!(plan_entry(&existing, "Keel A", &a_moved, &[]), EntryPlan { number: 2, write: Some(a_moved) });
    // New: the lowest number neither the firmware nor this plan uses.
    assert_eq!(plan_entry(&existing, "Keel B", &b, &[]), EntryPlan { number: 3, write: Some(b.clone()) });
    assert_eq!(plan_entry(&existing, "Keel B", &b, &[3]), EntryPlan { number: 4, write: Some(b) });
}

#[test]
fn commit_puts_the_slot_first_and_the_old_one_next() {
    assert_eq!(commit_order(&[0, 1], 3, Some(2)), [3, 2, 0, 1]);
    assert_eq!(commit_order(&[3, 2, 0, 1], 2, Some(3)), [2, 3, 0, 1]);
    assert_eq!(commit_order(&[2, 0], 2, None), [2, 0]);
    assert_eq!(commit_order(&[], 4, Some(4)), [4]);
}
