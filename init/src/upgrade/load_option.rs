//! UEFI boot entries as bytes (`Boot####`, `BootOrder`, `BootNext`): pure, in `keel-disklabel` (fuzzed there);
//! efivarfs I/O is in [`super::efivar`].

pub use keel_disklabel::efi_load_option::*;
