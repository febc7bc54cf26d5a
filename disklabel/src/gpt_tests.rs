use super::*;
use std::process::Command;

const DISK: Guid = Guid::from_fields(0x1111_1111, 0x2222, 0x4333, [0x84, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55]);
const PART: Guid = Guid::from_fields(0xaaaa_aaaa, 0xbbbb, 0x4ccc, [0x8d, 0xdd, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]);

fn layout(disk_bytes: u64, sector: u32) -> Layout {
    Layout { sector, disk_bytes, disk_guid: DISK, part_guid: PART, type_guid: KEEL_TYPE, name: "KEEL_STATE".into() }
}

fn disk_image(img: &Image, disk_bytes: u64) -> Vec<u8> {
    let mut disk = vec![0u8; disk_bytes as usize];
    disk[..img.head.len()].copy_from_slice(&img.head);
    let t = img.tail_offset as usize;
    disk[t..t + img.tail.len()].copy_from_slice(&img.tail);
    disk
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn guids_print_in_the_usual_mixed_endian_form() {
    assert_eq!(KEEL_TYPE.to_string(), "8a3e2f6b-51c4-4c7d-9d2e-6b65656c7631");
    assert_eq!(DISK.0[..4], [0x11; 4]);
    assert_eq!(PART.to_string(), "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    assert_eq!(Guid::default().0, [0; 16]);
}

#[test]
fn round_trips_with_512_and_4096_byte_sectors() {
    for sector in [512u32, 4096] {
        let bytes = 64 << 20;
        let img = build(&layout(bytes, sector)).unwrap();
        assert_eq!(img.part_start, 1 << 20);
        assert_eq!(img.tail_offset + img.tail.len() as u64, bytes, "the backup ends at the end of the disk");
        let disk = disk_image(&img, bytes);
        let t = parse(&disk[..2 << 20]).unwrap();
        assert_eq!(t.sector, sector);
        assert!(t.valid);
        assert_eq!(t.disk_guid, DISK);
        assert_eq!(t.entries.len(), 1);
        let e = &t.entries[0];
        assert_eq!((e.number, e.type_guid, e.guid, e.name.as_str()), (1, KEEL_TYPE, PART, "KEEL_STATE"));
        assert_eq!(e.first_lba * sector as u64, img.part_start);
        assert_eq!((e.last_lba - e.first_lba + 1) * sector as u64, img.part_bytes);
        // The backup header names the primary as its alternate, and its entries are the same bytes.
        let backup = &disk[(bytes - sector as u64) as usize..];
        assert_eq!(&backup[0..8], b"EFI PART");
        assert_eq!(le_u64(backup, 32), Some(1));
        assert_eq!(&disk[2 * sector as usize..][..16384], &img.tail[..16384]);
    }
}

#[test]
fn a_damaged_table_is_still_a_table_but_not_valid() {
    let img = build(&layout(8 << 20, 512)).unwrap();
    let mut disk = disk_image(&img, 8 << 20);
    disk[1024 + 56] ^= 1; // a byte of the first entry's name
    let t = parse(&disk).unwrap();
    assert!(!t.valid);
    // A head too short for the entries still shows that a GPT is there.
    let t = parse(&disk[..1024]).unwrap();
    assert!(!t.valid && t.entries.is_empty());
    assert!(parse(&[0u8; 4096]).is_none());
}

#[test]
fn refuses_what_it_cannot_lay_out() {
    assert_eq!(build(&layout(1 << 20, 512)).unwrap_err(), GptError::TooSmall(1 << 20));
    assert_eq!(build(&layout(64 << 20, 520)).unwrap_err(), GptError::SectorSize(520));
    let long = Layout { name: "x".repeat(37), ..layout(64 << 20, 512) };
    assert!(matches!(build(&long), Err(GptError::Name(_))));
}

#[test]
fn protective_mbr_chs() {
    assert_eq!(chs(131_071), [0x28, 0x20, 0x08]);
    assert_eq!(chs(1), [0x00, 0x02, 0x00]);
    assert_eq!(chs(u32::MAX as u64), [0xFF; 3]);
}

fn sgdisk() -> &'static str {
    let path = "/usr/sbin/sgdisk";
    assert!(std::path::Path::new(path).exists(), "{path} is missing: apt-get install gdisk (make setup does)");
    path
}

/// The same layout made by gdisk's sgdisk: byte for byte what we write, and sgdisk finds nothing wrong with ours.
#[test]
fn identical_to_what_sgdisk_writes() {
    let dir = std::env::temp_dir().join(format!("keel-gpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: u64 = 64 << 20;
    let theirs = dir.join("sgdisk.img");
    std::fs::File::create(&theirs).unwrap().set_len(bytes).unwrap();
    let out = Command::new(sgdisk())
        .args(["-U", &DISK.to_string(), "-n", "1:2048:0", "-t", &format!("1:{KEEL_TYPE}")])
        .args(["-u", &format!("1:{PART}"), "-c", "1:KEEL_STATE"])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs_bytes = std::fs::read(&theirs).unwrap();
    let img = build(&layout(bytes, 512)).unwrap();
    let ours = disk_image(&img, bytes);
    assert_eq!(ours[..img.head.len()], theirs_bytes[..img.head.len()], "protective MBR, primary header and entries");
    assert_eq!(ours[img.tail_offset as usize..], theirs_bytes[img.tail_offset as usize..], "backup entries and header");
    assert!(ours == theirs_bytes);

    let mine = dir.join("keel.img");
    std::fs::write(&mine, &ours).unwrap();
    let verify = Command::new(sgdisk()).arg("-v").arg(&mine).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && text.contains("No problems found"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn v4_guids_carry_the_version_and_variant_bits() {
    let g = Guid::v4([0xff; 16]);
    assert_eq!(g.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    let g = Guid::v4([0; 16]);
    assert_eq!(g.to_string(), "00000000-0000-4000-8000-000000000000");
}
