use super::*;
use crate::storage::gpt;
use crate::storage::probe::{FsKind, Table};

fn fs(kind: FsKind, label: Option<&str>, clean: bool) -> Content {
    Content::Fs(Fs { kind, label: label.map(str::to_string), clean })
}

fn gpt_table(n: usize) -> Content {
    Content::Table(Table::Gpt(gpt::Table {
        sector: 512,
        disk_guid: gpt::Guid::default(),
        valid: true,
        entries: vec![],
    }))
    .with_entries(n)
}

trait WithEntries {
    fn with_entries(self, n: usize) -> Content;
}

impl WithEntries for Content {
    fn with_entries(self, n: usize) -> Content {
        match self {
            Content::Table(Table::Gpt(mut t)) => {
                t.entries = (0..n as u32)
                    .map(|i| gpt::Entry {
                        number: i + 1,
                        type_guid: gpt::KEEL_TYPE,
                        guid: gpt::Guid::default(),
                        first_lba: 2048,
                        last_lba: 4096,
                        name: String::new(),
                    })
                    .collect();
                Content::Table(Table::Gpt(t))
            }
            other => other,
        }
    }
}

fn dev(content: Content) -> DeviceView {
    DeviceView { content, read_only: false, mounted: vec![] }
}

fn whole(content: Content) -> DiskView {
    DiskView { disk: dev(content), held: false, parts: vec![] }
}

fn with_parts(parts: Vec<(Option<&str>, Content)>) -> DiskView {
    DiskView {
        disk: dev(gpt_table(parts.len())),
        held: false,
        parts: parts.into_iter().map(|(n, c)| (n.map(str::to_string), dev(c))).collect(),
    }
}

fn want(label: Option<&'static str>, wipe: bool) -> Want<'static> {
    Want { label, partlabel: "data", wipe, read_only: false, mount: Path::new("/var/lib/data"), over_tmpfs: false }
}

/// A plan in a few words: "partition,format,mount on disk", "mounted on part 0", "blocked: …".
fn show(p: &Plan) -> String {
    let on = |o: &On| match o {
        On::Disk => "disk".to_string(),
        On::Part(i) => format!("part {i}"),
    };
    match p {
        Plan::Mounted(o) => format!("mounted on {}", on(o)),
        Plan::Steps(o, steps) => {
            format!("{} on {}", steps.iter().map(ToString::to_string).collect::<Vec<_>>().join(","), on(o))
        }
        Plan::Blocked(r) => format!("blocked: {r}"),
    }
}

fn run(disk: &DiskView, selected: Option<usize>, w: &Want) -> String {
    show(&plan(disk, selected, w, &MountPoint::Free))
}

#[test]
fn the_matrix() {
    let ext4 = |l: Option<&str>| fs(FsKind::Ext4, l, true);
    let data = Some("data");
    #[rustfmt::skip]
    let cases: Vec<(&str, DiskView, Option<usize>, Want, &str)> = vec![
        ("blank disk", whole(Content::Blank), None, want(data, false), "partition,format,mount on disk"),
        ("blank disk, wipe", whole(Content::Blank), None, want(data, true), "partition,format,mount on disk"),
        ("blank partition", with_parts(vec![(None, Content::Blank)]), Some(0), want(data, false), "format,mount on part 0"),
        ("ext4 labelled as wanted", whole(ext4(data)), None, want(data, false), "mount on disk"),
        ("ext4 as wanted, wipe: never reformatted", whole(ext4(data)), None, want(data, true), "mount on disk"),
        ("ext4, no label wanted", whole(ext4(Some("x"))), None, want(None, false), "mount on disk"),
        ("ext3 is mounted by the ext4 driver", whole(fs(FsKind::Ext3, data, true)), None, want(data, false), "mount on disk"),
        ("dirty ext4", whole(fs(FsKind::Ext4, data, false)), None, want(data, false), "fsck,mount on disk"),
        ("ext4 with another label", whole(ext4(Some("other"))), None, want(data, false),
         "blocked: holds ext4 labelled \"other\", not ext4 labelled \"data\": never formatted"),
        ("ext4 with another label, wipe", whole(ext4(Some("other"))), None, want(data, true),
         "blocked: holds ext4 labelled \"other\", not ext4 labelled \"data\": never formatted"),
        ("xfs with our label", whole(fs(FsKind::Xfs, data, true)), None, want(data, false),
         "blocked: holds xfs labelled \"data\", not ext4: set wipe = true to reformat it"),
        ("xfs with our label, wipe", whole(fs(FsKind::Xfs, data, true)), None, want(data, true), "wipe+format,mount on disk"),
        ("xfs without label, wipe", whole(fs(FsKind::Xfs, None, true)), None, want(data, true),
         "blocked: holds xfs without a label, not ext4 labelled \"data\": never formatted"),
        ("xfs, no label wanted, wipe", whole(fs(FsKind::Xfs, Some("x"), true)), None, want(None, true),
         "blocked: holds xfs labelled \"x\": never formatted"),
        ("swap, wipe", whole(fs(FsKind::Swap, None, true)), None, want(data, true),
         "blocked: holds swap without a label, not ext4 labelled \"data\": never formatted"),
        ("unknown data, wipe", whole(Content::Data { offset: 4096 }), None, want(data, true),
         "blocked: holds unrecognised data at byte 4096, not ext4 labelled \"data\": never formatted"),
        ("unreadable", whole(Content::Unreadable("EIO".into())), None, want(data, true),
         "blocked: holds unreadable (EIO), not ext4 labelled \"data\": never formatted"),
        ("an msdos table, wipe", whole(Content::Table(Table::Mbr)), None, want(data, true),
         "blocked: holds an msdos partition table and none of its partitions is this volume's (GPT name \"data\" or filesystem label \"data\")"),
        ("our partition by GPT name", with_parts(vec![(Some("boot"), fs(FsKind::Vfat, None, true)), (Some("data"), ext4(data))]), None,
         want(data, false), "mount on part 1"),
        ("our partition by fs label", with_parts(vec![(Some("x"), ext4(data))]), None, want(data, false), "mount on part 0"),
        ("our partition, blank (made, not formatted)", with_parts(vec![(Some("data"), Content::Blank)]), None,
         want(data, false), "format,mount on part 0"),
        ("our partition holds a foreign fs", with_parts(vec![(Some("data"), fs(FsKind::Btrfs, Some("pool"), true))]), None,
         want(data, true), "blocked: holds btrfs labelled \"pool\", not ext4 labelled \"data\": never formatted"),
        ("a table of strangers", with_parts(vec![(Some("root"), ext4(Some("root"))), (None, Content::Blank)]), None,
         want(data, true), "blocked: holds a gpt partition table (2 partitions) and none of its partitions is this volume's (GPT name \"data\" or filesystem label \"data\")"),
        ("one ext partition, no label wanted", with_parts(vec![(Some("x"), ext4(Some("x")))]), None, want(None, false),
         "mount on part 0"),
        ("two partitions claim to be ours", with_parts(vec![(Some("data"), ext4(data)), (None, ext4(data))]), None,
         want(data, false), "blocked: 2 partitions on the disk look like this volume's: refusing to guess"),
        ("a selected partition with a foreign fs", with_parts(vec![(None, fs(FsKind::Ntfs, None, true))]), Some(0),
         want(data, true), "blocked: holds ntfs without a label, not ext4 labelled \"data\": never formatted"),
    ];
    for (what, disk, selected, w, expected) in cases {
        assert_eq!(run(&disk, selected, &w), expected, "{what}");
    }
}

#[test]
fn read_only_volumes_and_devices_are_never_written() {
    let ro = Want { read_only: true, ..want(Some("data"), true) };
    assert_eq!(run(&whole(Content::Blank), None, &ro), "blocked: blank, and a read-only volume is never formatted");
    // A dirty filesystem mounted read-only is not checked (that would write).
    assert_eq!(run(&whole(fs(FsKind::Ext4, Some("data"), false)), None, &ro), "mount on disk");
    assert_eq!(
        run(&whole(fs(FsKind::Xfs, Some("data"), true)), None, &ro),
        "blocked: holds xfs labelled \"data\", and wipe = true cannot write a read-only device"
    );
    let mut disk = whole(Content::Blank);
    disk.disk.read_only = true;
    assert_eq!(run(&disk, None, &want(None, false)), "blocked: blank, but the device is read-only");
    disk.disk.content = fs(FsKind::Ext4, None, true);
    assert_eq!(run(&disk, None, &want(None, false)), "blocked: the device is read-only: give the volume the ro option");
}

#[test]
fn mounts_are_left_alone_or_reported() {
    let w = want(Some("data"), false);
    let mut disk = whole(fs(FsKind::Ext4, Some("data"), true));
    disk.disk.mounted = vec![(PathBuf::from("/var/lib/data"), false)];
    assert_eq!(run(&disk, None, &w), "mounted on disk");
    disk.disk.mounted = vec![(PathBuf::from("/var/lib/data"), true)];
    assert_eq!(run(&disk, None, &w), "blocked: mounted read-only on /var/lib/data, but the volume is read-write");
    disk.disk.mounted = vec![(PathBuf::from("/mnt"), false)];
    assert_eq!(run(&disk, None, &w), "blocked: in use: mounted on /mnt");
    disk.disk.mounted = vec![];
    let taken = MountPoint::Taken { source: "/dev/vdc".into(), fstype: "ext4".into() };
    assert_eq!(
        show(&plan(&disk, None, &w, &taken)),
        "blocked: /var/lib/data already has /dev/vdc (ext4) mounted on it"
    );
    let tmpfs = MountPoint::Taken { source: "tmpfs".into(), fstype: "tmpfs".into() };
    assert!(show(&plan(&disk, None, &w, &tmpfs)).starts_with("blocked"));
    let over = Want { over_tmpfs: true, ..w.clone() };
    assert_eq!(show(&plan(&disk, None, &over, &tmpfs)), "mount on disk");
    disk.held = true;
    assert!(run(&disk, None, &w).starts_with("blocked: in use"));
}

/// The invariant behind the matrix, over every combination: whatever is on the device, unless it is blank or
/// carries the volume's label with `wipe = true`, no plan partitions or formats it.
#[test]
fn nothing_but_blank_or_a_consented_wipe_is_ever_written() {
    let labels = [None, Some("data"), Some("other")];
    let mut contents = vec![Content::Blank, Content::Table(Table::Mbr), gpt_table(1), Content::Data { offset: 0 }];
    contents.push(Content::Unreadable("EIO".into()));
    for kind in [FsKind::Ext4, FsKind::Ext2, FsKind::Xfs, FsKind::Vfat, FsKind::Swap, FsKind::Luks, FsKind::Btrfs] {
        for l in labels {
            for clean in [true, false] {
                contents.push(fs(kind, l, clean));
            }
        }
    }
    for content in &contents {
        for want_label in [None, Some("data")] {
            for wipe in [false, true] {
                for as_part in [false, true] {
                    let disk = if as_part { with_parts(vec![(None, content.clone())]) } else { whole(content.clone()) };
                    let selected = as_part.then_some(0);
                    let p = plan(&disk, selected, &want(want_label, wipe), &MountPoint::Free);
                    let writes = match &p {
                        Plan::Steps(_, steps) => {
                            steps.iter().any(|s| matches!(s, Step::Partition | Step::Format { .. }))
                        }
                        _ => false,
                    };
                    let consented = wipe
                        && matches!((content, want_label), (Content::Fs(f), Some(l)) if f.label.as_deref() == Some(l) && !f.kind.is_ext());
                    assert!(
                        !writes || *content == Content::Blank || consented,
                        "{content} (want label {want_label:?}, wipe {wipe}, partition {as_part}) → {}",
                        show(&p)
                    );
                }
            }
        }
    }
}
