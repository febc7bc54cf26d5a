//! UEFI load options as the firmware holds them (keel-disklabel's `efi_load_option::decode`, as the init runs it
//! on every `Boot####` variable, whatever wrote them): never panics. A decoded hard-drive/file entry encodes
//! to bytes that decode back to it, and `BootOrder` values round-trip.
#![no_main]

use keel_disklabel::efi_load_option::{self as lo, ACTIVE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let order = lo::decode_order(data);
    assert_eq!(lo::decode_order(&lo::encode_order(&order)), order);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(n) = lo::boot_number(text) {
            assert_eq!(lo::boot_number(&lo::boot_name(n)), Some(n));
        }
    }

    let Some(o) = lo::decode(data) else { return };
    let (Some(disk), Some(file)) = (o.disk, o.file) else { return };
    // The init encodes only its own short descriptions and paths; NUL ends a UTF-16 string, so none inside.
    if o.description.contains('\0') || file.contains('\0') || o.description.len() + file.len() > 16 * 1024 {
        return;
    }
    let bytes = lo::encode(&o.description, &disk, &file);
    let back = lo::decode(&bytes).expect("an encoded load option decodes");
    assert_eq!(back.attributes, ACTIVE);
    assert_eq!(back.description, o.description);
    assert_eq!(back.disk, Some(disk));
    assert_eq!(back.file, Some(file));
});
