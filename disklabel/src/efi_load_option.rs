//! UEFI boot entries, as bytes: `EFI_LOAD_OPTION` (UEFI 2.10 §3.1.3) with a hard-drive media device path to a
//! file on a GPT partition, `BootOrder`, `BootNext`, and the pure planning of which `Boot####` variables to
//! write. efibootmgr writes the same layout (`efibootmgr -c -d DISK -p N -l \keel.efi -L "Keel A"`).

use crate::gpt::Guid;

/// `LOAD_OPTION_ACTIVE`: the firmware may boot it.
pub const ACTIVE: u32 = 0x1;

/// A partition as a hard-drive media device path names it (type 4, sub-type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardDrive {
    /// The GPT entry number, 1-based.
    pub number: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    pub guid: Guid,
}

/// One decoded `Boot####`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    pub attributes: u32,
    pub description: String,
    pub disk: Option<HardDrive>,
    pub file: Option<String>,
}

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}

fn node(kind: u8, sub: u8, body: &[u8]) -> Vec<u8> {
    let len = (4 + body.len()) as u16;
    let mut n = vec![kind, sub];
    n.extend_from_slice(&len.to_le_bytes());
    n.extend_from_slice(body);
    n
}

/// `HD(number, GPT, guid, start, size)/\path`, then the end node.
pub fn device_path(disk: &HardDrive, path: &str) -> Vec<u8> {
    let mut hd = Vec::with_capacity(38);
    hd.extend_from_slice(&disk.number.to_le_bytes());
    hd.extend_from_slice(&disk.start_lba.to_le_bytes());
    hd.extend_from_slice(&disk.size_lba.to_le_bytes());
    hd.extend_from_slice(&disk.guid.0);
    hd.push(0x02); // partition format: GPT
    hd.push(0x02); // signature type: GUID
    let mut dp = node(4, 1, &hd);
    dp.extend(node(4, 4, &utf16z(path)));
    dp.extend(node(0x7f, 0xff, &[]));
    dp
}

/// An active load option booting `path` on `disk`, described as `description`, with no optional data.
pub fn encode(description: &str, disk: &HardDrive, path: &str) -> Vec<u8> {
    let dp = device_path(disk, path);
    let mut out = ACTIVE.to_le_bytes().to_vec();
    out.extend_from_slice(&(dp.len() as u16).to_le_bytes());
    out.extend(utf16z(description));
    out.extend(dp);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// UTF-16LE up to the first NUL (or the end); the text and the bytes it took, NUL included.
fn read_utf16z(b: &[u8]) -> (String, usize) {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    let used = (units.len() * 2 + 2).min(b.len());
    (String::from_utf16_lossy(&units), used)
}

/// Decodes a `Boot####` value; None when it is not a well-formed load option. Device path nodes other than
/// hard drive and file path are skipped.
pub fn decode(b: &[u8]) -> Option<LoadOption> {
    let attributes = u32_at(b, 0)?;
    let dp_len = u16_at(b, 4)? as usize;
    let (description, used) = read_utf16z(b.get(6..)?);
    let dp = b.get(6 + used..6 + used + dp_len)?;
    let (mut disk, mut file) = (None, None);
    let mut at = 0;
    while at + 4 <= dp.len() {
        let (kind, sub, len) = (dp[at], dp[at + 1], u16_at(dp, at + 2)? as usize);
        if len < 4 || at + len > dp.len() {
            return None;
        }
        let body = &dp[at + 4..at + len];
        match (kind, sub) {
            (0x7f, 0xff) => break,
            (4, 1) if body.len() >= 38 => {
                disk = Some(HardDrive {
                    number: u32_at(body, 0)?,
                    start_lba: u64_at(body, 4)?,
                    size_lba: u64_at(body, 12)?,
                    guid: Guid(body.get(20..36)?.try_into().ok()?),
                })
            }
            (4, 4) => file = Some(read_utf16z(body).0),
            _ => {}
        }
        at += len;
    }
    Some(LoadOption { attributes, description, disk, file })
}

/// `BootOrder` / `BootNext` values: little-endian u16s.
pub fn encode_order(order: &[u16]) -> Vec<u8> {
    order.iter().flat_map(|n| n.to_le_bytes()).collect()
}

pub fn decode_order(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

/// The variable name of boot entry `n`: `Boot0003`.
pub fn boot_name(n: u16) -> String {
    format!("Boot{n:04X}")
}

/// `Boot####` → its number, for names the firmware lists (hex digits, upper case by the spec; lower accepted).
pub fn boot_number(name: &str) -> Option<u16> {
    let hex = name.strip_prefix("Boot")?;
    (hex.len() == 4 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then(|| u16::from_str_radix(hex, 16).ok())?
}

/// What to write so that an entry described `description` holds exactly `want`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPlan {
    pub number: u16,
    /// None: the entry is already as wanted.
    pub write: Option<Vec<u8>>,
}

/// Plans one entry among the existing `Boot####` values: reuse the entry with the same description (rewritten
/// only if it differs), else take the lowest free number not in `taken` either.
pub fn plan_entry(existing: &[(u16, Vec<u8>)], description: &str, want: &[u8], taken: &[u16]) -> EntryPlan {
    let same = existing.iter().find(|(_, v)| decode(v).is_some_and(|o| o.description == description));
    if let Some((n, v)) = same {
        return EntryPlan { number: *n, write: (v.as_slice() != want).then(|| want.to_vec()) };
    }
    let used = |n: u16| existing.iter().any(|(e, _)| *e == n) || taken.contains(&n);
    let number = (0..=u16::MAX).find(|n| !used(*n)).unwrap_or(u16::MAX);
    EntryPlan { number, write: Some(want.to_vec()) }
}

/// The boot order after committing to `first`: it, then `then` (the slot to fall back to), then everything
/// else in the order it had.
pub fn commit_order(current: &[u16], first: u16, then: Option<u16>) -> Vec<u16> {
    let mut order = vec![first];
    order.extend(then.filter(|t| *t != first));
    let rest: Vec<u16> = current.iter().copied().filter(|n| !order.contains(n)).collect();
    order.extend(rest);
    order
}

#[cfg(test)]
#[path = "efi_load_option_tests.rs"]
mod tests;
