//! What a disk or partition holds, read from its own bytes (no blkid): a partition table, a filesystem (with its
//! label and, for ext*, whether it was cleanly unmounted), other data, or nothing at all.
//!
//! "Blank" is strict on purpose: no signature we know AND the first 2 MiB and the last 1 MiB all zero. A
//! filesystem we have never heard of (ZFS, bcache, an old md superblock at the end) is data, never "blank".

use super::gpt;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How much of the start and of the end of a device is read.
pub const HEAD_BYTES: u64 = 2 << 20;
pub const TAIL_BYTES: u64 = 1 << 20;
/// What is read first: past the furthest signature [`classify`] looks for (btrfs, at 64 KiB + 555).
const QUICK_BYTES: u64 = 128 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Vfat,
    Exfat,
    Ntfs,
    Xfs,
    Btrfs,
    Swap,
    Luks,
    Lvm2,
    MdRaid,
    Iso9660,
}

impl FsKind {
    /// ext2/3/4: what the ext4 driver mounts.
    pub fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }

    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Exfat => "exfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
            FsKind::Luks => "crypto_LUKS",
            FsKind::Lvm2 => "LVM2_member",
            FsKind::MdRaid => "linux_raid_member",
            FsKind::Iso9660 => "iso9660",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fs {
    pub kind: FsKind,
    pub label: Option<String>,
    /// ext* only: false when the superblock says it was not cleanly unmounted, has errors, or has a journal to
    /// replay; e2fsck runs before such a filesystem is mounted.
    pub clean: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    Gpt(gpt::Table),
    Mbr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Blank,
    Table(Table),
    Fs(Fs),
    /// Non-zero bytes at this offset and no signature we know.
    Data {
        offset: u64,
    },
    /// Reading it failed (an I/O error, no medium): nothing is ever written to it.
    Unreadable(String),
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Blank => f.write_str("blank"),
            Content::Table(Table::Gpt(t)) => write!(f, "a gpt partition table ({} partitions)", t.entries.len()),
            Content::Table(Table::Mbr) => f.write_str("an msdos partition table"),
            Content::Fs(Fs { kind, label: Some(l), .. }) => write!(f, "{} labelled {l:?}", kind.name()),
            Content::Fs(Fs { kind, label: None, .. }) => write!(f, "{} without a label", kind.name()),
            Content::Data { offset } => write!(f, "unrecognised data at byte {offset}"),
            Content::Unreadable(e) => write!(f, "unreadable ({e})"),
        }
    }
}

fn at<const N: usize>(b: &[u8], offset: usize) -> Option<[u8; N]> {
    b.get(offset..offset + N)?.try_into().ok()
}

fn has(b: &[u8], offset: usize, magic: &[u8]) -> bool {
    b.get(offset..offset + magic.len()) == Some(magic)
}

/// A fixed-size label field: up to the first NUL, trailing spaces trimmed; empty is no label.
fn label(b: &[u8], offset: usize, len: usize) -> Option<String> {
    let raw = b.get(offset..offset + len)?;
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let text = String::from_utf8_lossy(&raw[..end]).trim_end().to_string();
    (!text.is_empty()).then_some(text)
}

const EXT_SB: usize = 1024;
const EXT_VALID_FS: u16 = 0x1;
const EXT_ERROR_FS: u16 = 0x2;
const EXT_COMPAT_JOURNAL: u32 = 0x4;
const EXT_INCOMPAT_RECOVER: u32 = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x8;
/// Incompat features ext3 knows: filetype, recover, journal_dev, meta_bg. Anything beyond is ext4.
const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x8 | 0x10;
/// Ro-compat features ext3 knows: sparse_super, large_file, btree_dir.
const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;

fn ext(b: &[u8]) -> Option<Fs> {
    let sb = b.get(EXT_SB..EXT_SB + 1024)?;
    if u16::from_le_bytes(at(sb, 56)?) != 0xEF53 {
        return None;
    }
    let state = u16::from_le_bytes(at(sb, 58)?);
    let compat = u32::from_le_bytes(at(sb, 92)?);
    let incompat = u32::from_le_bytes(at(sb, 96)?);
    let ro_compat = u32::from_le_bytes(at(sb, 100)?);
    let kind = if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        FsKind::Ext4
    } else if compat & EXT_COMPAT_JOURNAL != 0 || incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    let clean = state & EXT_VALID_FS != 0 && state & EXT_ERROR_FS == 0 && incompat & EXT_INCOMPAT_RECOVER == 0;
    Some(Fs { kind, label: label(sb, 120, 16), clean })
}

fn fs(kind: FsKind, label: Option<String>) -> Option<Fs> {
    Some(Fs { kind, label, clean: true })
}

/// Every filesystem-like signature we know, at the start of a device.
fn filesystem(b: &[u8]) -> Option<Fs> {
    // mkswap keeps whatever was in the first page beyond its header: its magic wins over an old superblock.
    if has(b, 4086, b"SWAPSPACE2") || has(b, 4086, b"SWAP-SPACE") || has(b, 65526, b"SWAPSPACE2") {
        return fs(FsKind::Swap, label(b, 1024 + 28, 16));
    }
    if let Some(e) = ext(b) {
        return Some(e);
    }
    if has(b, 0, b"XFSB") {
        return fs(FsKind::Xfs, label(b, 108, 12));
    }
    if has(b, 65536 + 64, b"_BHRfS_M") {
        return fs(FsKind::Btrfs, label(b, 65536 + 299, 256));
    }
    if has(b, 0, b"LUKS\xba\xbe") {
        return fs(FsKind::Luks, label(b, 24, 48).filter(|_| has(b, 6, &[0, 2])));
    }
    if (0..4).any(|s| has(b, s * 512, b"LABELONE") && has(b, s * 512 + 24, b"LVM2 001")) {
        return fs(FsKind::Lvm2, None);
    }
    if [0usize, 4096].iter().any(|&o| at::<4>(b, o) == Some(0xa92b_4efc_u32.to_le_bytes())) {
        return fs(FsKind::MdRaid, None);
    }
    if has(b, 32769, b"CD001") {
        return fs(FsKind::Iso9660, label(b, 32768 + 40, 32));
    }
    if has(b, 3, b"NTFS    ") {
        return fs(FsKind::Ntfs, None);
    }
    if has(b, 3, b"EXFAT   ") {
        return fs(FsKind::Exfat, None);
    }
    if has(b, 510, &[0x55, 0xAA]) && (has(b, 54, b"FAT1") || has(b, 54, b"FAT     ") || has(b, 82, b"FAT32   ")) {
        let at = if has(b, 82, b"FAT32   ") { 71 } else { 43 };
        return fs(FsKind::Vfat, label(b, at, 11).filter(|l| l != "NO NAME"));
    }
    None
}

/// Classifies a device from its first bytes (`head`, up to [`HEAD_BYTES`]) and its last bytes (`tail`, up to
/// [`TAIL_BYTES`], ending at `size`; empty when the head already covers the device).
pub fn classify(head: &[u8], tail: &[u8], size: u64) -> Content {
    if let Some(t) = gpt::parse(head) {
        return Content::Table(Table::Gpt(t));
    }
    if let Some(f) = filesystem(head) {
        return Content::Fs(f);
    }
    if has(head, 510, &[0x55, 0xAA]) {
        return Content::Table(Table::Mbr);
    }
    if let Some(i) = head.iter().position(|&b| b != 0) {
        return Content::Data { offset: i as u64 };
    }
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Content::Data { offset: size - tail.len() as u64 + i as u64 };
    }
    Content::Blank
}

/// Reads the head and tail of a device (or of a regular file standing in for one) and classifies it.
pub fn probe(path: &Path, size: u64) -> std::io::Result<Content> {
    let mut f = std::fs::File::open(path)?;
    // Most devices say what they hold in their first KiB: read 128 KiB first (every signature above lies in it,
    // and so does a GPT header), and all of the head and the tail only when that is not conclusive: nothing
    // but zeros so far, or a GPT whose entries lie further on. The answer is the same either way.
    let quick_len = size.min(QUICK_BYTES);
    let mut quick = Vec::with_capacity(quick_len as usize);
    (&mut f).take(quick_len).read_to_end(&mut quick)?;
    let known = classify(&quick, &[], size);
    let conclusive = match &known {
        Content::Table(Table::Gpt(t)) => t.valid,
        _ => quick.iter().any(|&b| b != 0),
    };
    if conclusive {
        return Ok(known);
    }
    // The rest of the head, on from where the quick read stopped.
    let head_len = size.min(HEAD_BYTES);
    let mut head = quick;
    head.reserve((head_len - quick_len) as usize);
    (&mut f).take(head_len - quick_len).read_to_end(&mut head)?;
    let tail_start = size.saturating_sub(TAIL_BYTES).max(head_len);
    let mut tail = vec![0u8; (size - tail_start) as usize];
    f.read_exact_at(&mut tail, tail_start)?;
    Ok(classify(&head, &tail, size))
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
