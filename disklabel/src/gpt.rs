//! GUID partition tables: a small pure writer (protective MBR, primary header and entries, backup entries and
//! header at the end of the disk) for the one layout Keel makes (one partition spanning the disk), and a reader
//! for the partition names and types of any GPT. CRC32 is ours (IEEE 802.3, as UEFI specifies).

use std::fmt;

/// Keel's partition type: "a Keel volume" (state or a config volume). Made up once for Keel (random, version 4);
/// tools that do not know it show an unknown type, which is what keeps other systems' automounters off it.
pub const KEEL_TYPE: Guid =
    Guid::from_fields(0x8a3e_2f6b, 0x51c4, 0x4c7d, [0x9d, 0x2e, 0x6b, 0x65, 0x65, 0x6c, 0x76, 0x31]);

/// Entries in the table (the UEFI minimum array of 16 KiB) and their size.
const ENTRIES: u32 = 128;
const ENTRY_SIZE: u32 = 128;
const HEADER_SIZE: u32 = 92;
/// The partition starts 1 MiB in, as every current partitioner aligns it.
pub const ALIGN_BYTES: u64 = 1 << 20;

/// A GUID as stored on disk: the first three fields little-endian, the last eight bytes as they are.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    /// A random (version 4) GUID from 16 random bytes (the caller reads them from the kernel's generator).
    pub fn v4(mut b: [u8; 16]) -> Guid {
        b[7] = (b[7] & 0x0f) | 0x40; // version 4, in the little-endian third field
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        Guid(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]])
        )?;
        b[8..10].iter().try_for_each(|x| write!(f, "{x:02x}"))?;
        f.write_str("-")?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, reflected, as zlib and UEFI compute it).
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("sector size {0} is not 512 or 4096")]
    SectorSize(u32),
    #[error("the disk ({0} bytes) is too small for a partition after the 1 MiB alignment")]
    TooSmall(u64),
    #[error("partition name {0:?} is longer than 36 UTF-16 units")]
    Name(String),
}

/// What to write: one partition of `type_guid`, named `name`, from 1 MiB to the end of the usable area.
#[derive(Debug, Clone)]
pub struct Layout {
    pub sector: u32,
    pub disk_bytes: u64,
    pub disk_guid: Guid,
    pub part_guid: Guid,
    pub type_guid: Guid,
    pub name: String,
}

/// The bytes to write: `head` at offset 0 and `tail` at `tail_offset` (which ends at the end of the disk).
#[derive(Debug, Clone)]
pub struct Image {
    pub head: Vec<u8>,
    pub tail_offset: u64,
    pub tail: Vec<u8>,
    /// The partition, in bytes from the start of the disk.
    pub part_start: u64,
    pub part_bytes: u64,
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn le_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// The CHS address of `lba` in the 255-head, 63-sector geometry every tool assumes; all ones when it is
/// beyond what CHS can say (UEFI's rule for the protective MBR).
fn chs(lba: u64) -> [u8; 3] {
    let (cylinder, rest) = (lba / (255 * 63), lba % (255 * 63));
    if cylinder > 1023 {
        return [0xFF; 3];
    }
    let (head, sector) = ((rest / 63) as u8, (rest % 63 + 1) as u8);
    [head, sector | ((cylinder >> 2) as u8 & 0xC0), cylinder as u8]
}

/// One partition to write: its extent in sectors (inclusive), type, GUID and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPart {
    pub first_lba: u64,
    pub last_lba: u64,
    pub type_guid: Guid,
    pub guid: Guid,
    pub name: String,
}

/// The sectors partitions may use on a disk of `disk_bytes` (first, last; inclusive), or None when the disk is
/// too small for the tables.
pub fn usable(sector: u32, disk_bytes: u64) -> Option<(u64, u64)> {
    let ss = sector as u64;
    let sectors = disk_bytes / ss;
    let entry_sectors = (ENTRIES * ENTRY_SIZE) as u64 / ss;
    let last = sectors.checked_sub(1)?;
    let last_usable = last.checked_sub(1 + entry_sectors)?;
    let first_usable = 2 + entry_sectors;
    (last_usable > first_usable).then_some((first_usable, last_usable))
}

/// Lays out the protective MBR, both headers and both entry arrays for Keel's one-partition volume disk.
pub fn build(l: &Layout) -> Result<Image, GptError> {
    if l.sector != 512 && l.sector != 4096 {
        return Err(GptError::SectorSize(l.sector));
    }
    let ss = l.sector as u64;
    let part_first = ALIGN_BYTES / ss;
    let entry_sectors = (ENTRIES * ENTRY_SIZE) as u64 / ss;
    let sectors = l.disk_bytes / ss;
    let last_usable = match usable(l.sector, l.disk_bytes) {
        Some((_, last)) if last > part_first && sectors >= part_first + 2 * entry_sectors + 3 => last,
        _ => return Err(GptError::TooSmall(l.disk_bytes)),
    };
    let part = NewPart {
        first_lba: part_first,
        last_lba: last_usable,
        type_guid: l.type_guid,
        guid: l.part_guid,
        name: l.name.clone(),
    };
    build_parts(l.sector, l.disk_bytes, l.disk_guid, &[part])
}

/// Lays out a GPT holding `parts` (in order, numbered from 1), each inside the usable area.
pub fn build_parts(sector: u32, disk_bytes: u64, disk_guid: Guid, parts: &[NewPart]) -> Result<Image, GptError> {
    if sector != 512 && sector != 4096 {
        return Err(GptError::SectorSize(sector));
    }
    let ss = sector as u64;
    let (first_usable, last_usable) = usable(sector, disk_bytes).ok_or(GptError::TooSmall(disk_bytes))?;
    let entry_sectors = (ENTRIES * ENTRY_SIZE) as u64 / ss;
    let last = disk_bytes / ss - 1;
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate().take(ENTRIES as usize) {
        let name: Vec<u16> = p.name.encode_utf16().collect();
        if name.len() > 36 {
            return Err(GptError::Name(p.name.clone()));
        }
        if p.first_lba < first_usable || p.last_lba > last_usable || p.last_lba < p.first_lba {
            return Err(GptError::TooSmall(disk_bytes));
        }
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.0);
        e[16..32].copy_from_slice(&p.guid.0);
        put_u64(e, 32, p.first_lba);
        put_u64(e, 40, p.last_lba);
        for (j, unit) in name.iter().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);

    let header = |my_lba: u64, alternate: u64, entries_lba: u64| {
        let mut h = vec![0u8; ss as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        put_u32(&mut h, 8, 0x0001_0000);
        put_u32(&mut h, 12, HEADER_SIZE);
        put_u64(&mut h, 24, my_lba);
        put_u64(&mut h, 32, alternate);
        put_u64(&mut h, 40, first_usable);
        put_u64(&mut h, 48, last_usable);
        h[56..72].copy_from_slice(&disk_guid.0);
        put_u64(&mut h, 72, entries_lba);
        put_u32(&mut h, 80, ENTRIES);
        put_u32(&mut h, 84, ENTRY_SIZE);
        put_u32(&mut h, 88, entries_crc);
        let crc = crc32(&h[..HEADER_SIZE as usize]);
        put_u32(&mut h, 16, crc);
        h
    };

    // LBA 0: a protective MBR, one partition of type 0xEE covering the disk (capped at 2^32-1 sectors).
    let mut head = vec![0u8; ((2 + entry_sectors) * ss) as usize];
    let pmbr = &mut head[446..462];
    pmbr[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    pmbr[4] = 0xEE;
    pmbr[5..8].copy_from_slice(&chs(last));
    put_u32(pmbr, 8, 1);
    put_u32(pmbr, 12, u32::try_from(last).unwrap_or(u32::MAX));
    head[510] = 0x55;
    head[511] = 0xAA;
    head[ss as usize..2 * ss as usize].copy_from_slice(&header(1, last, 2));
    head[2 * ss as usize..].copy_from_slice(&entries);

    let backup_entries_lba = last - entry_sectors;
    let mut tail = entries;
    tail.extend_from_slice(&header(last, 1, backup_entries_lba));
    let (part_start, part_bytes) =
        parts.first().map(|p| (p.first_lba * ss, (p.last_lba - p.first_lba + 1) * ss)).unwrap_or((0, 0));
    Ok(Image { head, tail_offset: backup_entries_lba * ss, tail, part_start, part_bytes })
}

/// One used entry of a GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based slot: the kernel's partition number.
    pub number: u32,
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// A GPT as read from the start of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub sector: u32,
    pub disk_guid: Guid,
    /// Both CRCs (header and entries) were right.
    pub valid: bool,
    pub entries: Vec<Entry>,
}

/// Reads the primary GPT from the first bytes of a disk (`head` must reach past the entry array to see the
/// entries; a shorter buffer still recognises the header).
pub fn parse(head: &[u8]) -> Option<Table> {
    [512u32, 4096].into_iter().find_map(|ss| parse_at(head, ss))
}

fn parse_at(head: &[u8], sector: u32) -> Option<Table> {
    let h = head.get(sector as usize..sector as usize + HEADER_SIZE as usize)?;
    if &h[0..8] != b"EFI PART" {
        return None;
    }
    let header_size = le_u32(h, 12)?;
    let header_ok = header_size as usize == h.len() && {
        let mut copy = h.to_vec();
        copy[16..20].fill(0);
        crc32(&copy) == le_u32(h, 16)?
    };
    let disk_guid = Guid(h.get(56..72)?.try_into().ok()?);
    let entries_lba = le_u64(h, 72)?;
    let (count, size) = (le_u32(h, 80)?, le_u32(h, 84)?);
    let start = entries_lba.checked_mul(sector as u64).and_then(|s| usize::try_from(s).ok());
    let len = (count as usize).checked_mul(size as usize);
    let array = match (start, len) {
        (Some(s), Some(n)) if size >= 128 && count <= 4096 => s.checked_add(n).and_then(|end| head.get(s..end)),
        _ => None,
    };
    let Some(array) = array else {
        return Some(Table { sector, disk_guid, valid: false, entries: Vec::new() });
    };
    let entries = array
        .chunks_exact(size as usize)
        .enumerate()
        .filter(|(_, e)| e[0..16] != [0u8; 16])
        .filter_map(|(i, e)| {
            let units: Vec<u16> =
                e[56..128].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
            Some(Entry {
                number: i as u32 + 1,
                type_guid: Guid(e[0..16].try_into().ok()?),
                guid: Guid(e[16..32].try_into().ok()?),
                first_lba: le_u64(e, 32)?,
                last_lba: le_u64(e, 40)?,
                name: String::from_utf16_lossy(&units),
            })
        })
        .collect();
    let valid = header_ok && crc32(array) == le_u32(h, 88)?;
    Some(Table { sector, disk_guid, valid, entries })
}

#[cfg(test)]
#[path = "gpt_tests.rs"]
mod tests;
