//! Disk labels as bytes, without I/O: the GUID partition table Keel writes and reads ([`gpt`]) and the UEFI
//! boot entries it writes and reads ([`efi_load_option`]). What reads a disk or efivarfs lives in the init; what
//! is here takes arbitrary bytes and never panics (fuzz targets `gpt_parse`, `efi_load_option`).

pub mod efi_load_option;
pub mod gpt;
