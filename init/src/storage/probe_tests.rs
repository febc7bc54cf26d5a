use super::*;
use std::process::Command;

fn zeros() -> Vec<u8> {
    vec![0u8; HEAD_BYTES as usize]
}

fn with(mut b: Vec<u8>, offset: usize, bytes: &[u8]) -> Vec<u8> {
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    b
}

fn head_only(head: &[u8]) -> Content {
    classify(head, &[], head.len() as u64)
}

/// An ext superblock with the given state and feature words, labelled `label`.
fn ext_sb(state: u16, compat: u32, incompat: u32, ro_compat: u32, label: &str) -> Vec<u8> {
    let mut b = zeros();
    let sb = 1024;
    b[sb + 56..sb + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
    b[sb + 58..sb + 60].copy_from_slice(&state.to_le_bytes());
    b[sb + 92..sb + 96].copy_from_slice(&compat.to_le_bytes());
    b[sb + 96..sb + 100].copy_from_slice(&incompat.to_le_bytes());
    b[sb + 100..sb + 104].copy_from_slice(&ro_compat.to_le_bytes());
    b[sb + 120..sb + 120 + label.len()].copy_from_slice(label.as_bytes());
    b
}

fn fs_of(c: Content) -> Fs {
    match c {
        Content::Fs(f) => f,
        other => panic!("expected a filesystem, got {other:?}"),
    }
}

#[test]
fn zeros_are_blank_and_any_other_byte_is_data() {
    let tail = vec![0u8; TAIL_BYTES as usize];
    let size = 64 << 20;
    assert_eq!(classify(&zeros(), &tail, size), Content::Blank);
    assert_eq!(classify(&with(zeros(), 1 << 20, &[7]), &tail, size), Content::Data { offset: 1 << 20 });
    // An ext4 superblock 1 MiB in (a partition whose table was zapped) is not blank either.
    let shifted = with(zeros(), (1 << 20) + 1024 + 56, &[0x53, 0xEF]);
    assert!(matches!(classify(&shifted, &tail, size), Content::Data { .. }));
    // Something at the very end (an md 0.90 superblock, a GPT backup) is data too.
    let mut t = tail.clone();
    t[TAIL_BYTES as usize - 1] = 1;
    assert_eq!(classify(&zeros(), &t, size), Content::Data { offset: size - 1 });
}

#[test]
fn ext_superblocks_kind_label_and_cleanliness() {
    let ext4 = fs_of(head_only(&ext_sb(1, 0x4, 0x2 | 0x40 | 0x200, 0x1, "KEEL_STATE")));
    assert_eq!(ext4, Fs { kind: FsKind::Ext4, label: Some("KEEL_STATE".into()), clean: true });
    assert_eq!(fs_of(head_only(&ext_sb(1, 0x4, 0x2, 0x1, ""))).kind, FsKind::Ext3);
    assert_eq!(fs_of(head_only(&ext_sb(1, 0, 0x2, 0x3, ""))).kind, FsKind::Ext2);
    assert_eq!(fs_of(head_only(&ext_sb(1, 0, 0x2, 0x3, ""))).label, None);
    // Not cleanly unmounted, errors recorded, or a journal to replay: e2fsck first.
    assert!(!fs_of(head_only(&ext_sb(0, 0x4, 0x40, 0, "a"))).clean);
    assert!(!fs_of(head_only(&ext_sb(1 | 2, 0x4, 0x40, 0, "a"))).clean);
    assert!(!fs_of(head_only(&ext_sb(1, 0x4, 0x40 | 0x4, 0, "a"))).clean);
}

#[test]
fn foreign_filesystems_are_recognised() {
    let cases: Vec<(Vec<u8>, FsKind, Option<&str>)> = vec![
        (with(with(zeros(), 0, b"XFSB"), 108, b"scratch"), FsKind::Xfs, Some("scratch")),
        (with(with(zeros(), 65536 + 64, b"_BHRfS_M"), 65536 + 299, b"pool"), FsKind::Btrfs, Some("pool")),
        (with(with(zeros(), 4086, b"SWAPSPACE2"), 1024 + 28, b"swap0"), FsKind::Swap, Some("swap0")),
        (with(zeros(), 0, b"LUKS\xba\xbe\x00\x01"), FsKind::Luks, None),
        (with(with(zeros(), 512, b"LABELONE"), 512 + 24, b"LVM2 001"), FsKind::Lvm2, None),
        (with(zeros(), 4096, &0xa92b_4efc_u32.to_le_bytes()), FsKind::MdRaid, None),
        (with(with(zeros(), 32769, b"CD001"), 32768 + 40, b"CIDATA"), FsKind::Iso9660, Some("CIDATA")),
        (with(zeros(), 3, b"NTFS    "), FsKind::Ntfs, None),
        (with(zeros(), 3, b"EXFAT   "), FsKind::Exfat, None),
    ];
    for (bytes, kind, label) in cases {
        let f = fs_of(head_only(&bytes));
        assert_eq!((f.kind, f.label.as_deref()), (kind, label), "{}", kind.name());
    }
}

#[test]
fn fat_is_told_apart_from_an_mbr() {
    let mbr = with(with(zeros(), 510, &[0x55, 0xAA]), 446 + 4, &[0x83]);
    assert_eq!(head_only(&mbr), Content::Table(Table::Mbr));
    let fat32 = with(with(with(zeros(), 510, &[0x55, 0xAA]), 82, b"FAT32   "), 71, b"EFI        ");
    assert_eq!(fs_of(head_only(&fat32)), Fs { kind: FsKind::Vfat, label: Some("EFI".into()), clean: true });
    let fat16 = with(with(with(zeros(), 510, &[0x55, 0xAA]), 54, b"FAT16   "), 43, b"NO NAME    ");
    assert_eq!(fs_of(head_only(&fat16)).label, None);
}

#[test]
fn a_gpt_wins_over_its_protective_mbr() {
    let layout = gpt::Layout {
        sector: 512,
        disk_bytes: 64 << 20,
        disk_guid: gpt::Guid([1; 16]),
        part_guid: gpt::Guid([2; 16]),
        type_guid: gpt::KEEL_TYPE,
        name: "data".into(),
    };
    let img = gpt::build(&layout).unwrap();
    match head_only(&with(zeros(), 0, &img.head)) {
        Content::Table(Table::Gpt(t)) => assert_eq!(t.entries[0].name, "data"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn describes_what_it_found() {
    assert_eq!(Content::Blank.to_string(), "blank");
    assert_eq!(head_only(&ext_sb(1, 0, 0x40, 0, "x")).to_string(), "ext4 labelled \"x\"");
    assert_eq!(Content::Data { offset: 512 }.to_string(), "unrecognised data at byte 512");
}

/// What the real mke2fs and mkswap write is recognised, read from a file the way a device is read.
#[test]
fn reads_what_mke2fs_and_mkswap_make() {
    let dir = std::env::temp_dir().join(format!("keel-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fs.img");
    let size: u64 = 16 << 20;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    assert_eq!(probe(&img, size).unwrap(), Content::Blank);
    let ok = Command::new("/usr/sbin/mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "probe-me"])
        .arg(&img)
        .status()
        .expect("mke2fs (e2fsprogs) is needed for this test; make setup installs it");
    assert!(ok.success());
    assert_eq!(
        probe(&img, size).unwrap(),
        Content::Fs(Fs { kind: FsKind::Ext4, label: Some("probe-me".into()), clean: true })
    );
    if Command::new("mkswap").args(["-L", "sw"]).arg(&img).output().map(|o| o.status.success()).unwrap_or(false) {
        assert_eq!(fs_of(probe(&img, size).unwrap()).kind, FsKind::Swap);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Reading the first 128 KiB first gives the same answers as reading it all: data only near the end, a GPT whose
/// entries lie beyond 128 KiB (still read whole), a valid GPT, blank.
#[test]
fn the_quick_read_answers_as_the_full_one() {
    use std::os::unix::fs::FileExt;
    let dir = std::env::temp_dir().join(format!("keel-probe-quick-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    let size: u64 = 8 << 20;
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size).unwrap();
    assert_eq!(probe(&img, size).unwrap(), Content::Blank);
    f.write_all_at(b"x", size - 10).unwrap();
    assert_eq!(probe(&img, size).unwrap(), Content::Data { offset: size - 10 });
    f.write_all_at(&[0], size - 10).unwrap();
    f.write_all_at(b"y", (1 << 20) + 7).unwrap();
    assert_eq!(probe(&img, size).unwrap(), Content::Data { offset: (1 << 20) + 7 });
    f.write_all_at(&[0], (1 << 20) + 7).unwrap();
    let layout = gpt::Layout {
        sector: 512,
        disk_bytes: size,
        disk_guid: gpt::Guid([1; 16]),
        part_guid: gpt::Guid([2; 16]),
        type_guid: gpt::KEEL_TYPE,
        name: "quick".into(),
    };
    let built = gpt::build(&layout).unwrap();
    f.write_all_at(&built.head, 0).unwrap();
    match probe(&img, size).unwrap() {
        Content::Table(Table::Gpt(t)) => assert!(t.valid && t.entries[0].name == "quick"),
        other => panic!("{other:?}"),
    }
    // The same header pointing at an entry array 512 KiB in: found there, not taken for an invalid table.
    let mut head = built.head.clone();
    let (array, moved) = (head[1024..1024 + 16384].to_vec(), 1024u64);
    head[512 + 72..512 + 80].copy_from_slice(&moved.to_le_bytes());
    head[512 + 16..512 + 20].fill(0);
    let crc = gpt::crc32(&head[512..512 + 92]);
    head[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&head[..1024], 0).unwrap();
    f.write_all_at(&array, moved * 512).unwrap();
    match probe(&img, size).unwrap() {
        Content::Table(Table::Gpt(t)) => assert!(t.valid && t.entries[0].name == "quick", "{t:?}"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
