//! What the install controller does, purely: from the config's `[install]`, how this node booted and what the
//! named disk holds, one [`Decision`]; and the partition layout it writes, the one `make disk` makes
//! (image/disk.sh): ESP, KEEL_A, KEEL_B (64 MiB each, 1 MiB aligned), then the state volume to the end.
//!
//! | found on the disk | decision |
//! |---|---|
//! | blank | install |
//! | Keel's install layout whose state partition is still named KEEL_INSTALLING (an install that stopped) | install again |
//! | Keel's install layout, complete | installed (nothing is written) |
//! | anything else carrying `label`, with `wipe = true` | install |
//! | anything else | refused, nothing written |

use crate::storage::gpt::{Guid, NewPart, ALIGN_BYTES, KEEL_TYPE};
use crate::storage::probe::{Content, Table};
use crate::upgrade::slots::Slot;

/// The state partition's GPT name while an install is under way; renamed to KEEL_STATE as its last write.
pub const INSTALLING: &str = "KEEL_INSTALLING";
pub const STATE: &str = crate::storage::state::STATE_LABEL;
pub const ESP_NAME: &str = "EFI system partition";
/// image/media.mk's sizes and types.
pub const ESP_BYTES: u64 = 64 << 20;
pub const SLOT_BYTES: u64 = 64 << 20;
/// The smallest state partition worth installing with (as the state volume's own minimum).
pub const MIN_STATE_BYTES: u64 = crate::storage::state::AUTO_MIN_BYTES;
pub const ESP_TYPE: Guid =
    Guid::from_fields(0xc12a_7328, 0xf81f, 0x11d2, [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b]);
/// KEEL_SLOT_TYPE (image/media.mk).
pub const SLOT_TYPE: Guid =
    Guid::from_fields(0x8c94_f5fd, 0x5600, 0x4e54, [0x8f, 0x54, 0xc5, 0x2c, 0xe9, 0xfa, 0x74, 0xe8]);

/// The smallest disk an install fits on.
pub fn min_disk_bytes() -> u64 {
    ALIGN_BYTES + ESP_BYTES + 2 * SLOT_BYTES + MIN_STATE_BYTES + ALIGN_BYTES
}

/// What the controller found, for one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// This boot came from a Keel disk (a slot is running): the node is installed.
    pub booted_from_disk: bool,
    /// UEFI variables are there (a boot entry can be made).
    pub uefi: bool,
    /// The disk the selector names: Ok((size, what it holds, the labels it carries)) or why none is chosen.
    pub disk: Result<DiskSeen, Found>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSeen {
    pub size: u64,
    pub content: Content,
    /// Every filesystem label and GPT partition name on it.
    pub labels: Vec<String>,
}

/// Why no disk was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing matches yet (waited for).
    NotYet(String),
    /// A selector that can never be installed to (ambiguous, a partition).
    Unusable(String),
}

/// What the config asks for (the parts the plan needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want<'a> {
    pub wipe: bool,
    pub label: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Installed already: this boot is from the disk, or the disk holds a complete install.
    Installed(String),
    /// The disk is not there yet.
    Waiting(String),
    /// Never installed to as things are; the reason says what to change. Nothing is written.
    Refused { code: &'static str, detail: String },
    /// Partition and install; `wipe` when what is there is replaced (not blank, not Keel's own partial install).
    Install { wipe: bool },
}

fn refused(code: &'static str, detail: impl Into<String>) -> Decision {
    Decision::Refused { code, detail: detail.into() }
}

/// Whether `t` is Keel's install layout; Some(true) when its state partition says the install completed.
pub fn install_layout(t: &crate::storage::gpt::Table) -> Option<bool> {
    let names: Vec<&str> = t.entries.iter().map(|e| e.name.as_str()).collect();
    match names.as_slice() {
        [ESP_NAME, "KEEL_A", "KEEL_B", last] if *last == STATE => Some(true),
        [ESP_NAME, "KEEL_A", "KEEL_B", last] if *last == INSTALLING => Some(false),
        _ => None,
    }
}

pub fn decide(want: &Want, seen: &Observed) -> Decision {
    if seen.booted_from_disk {
        return Decision::Installed("booted from its installed disk".into());
    }
    let disk = match &seen.disk {
        Ok(d) => d,
        Err(Found::NotYet(why)) => return Decision::Waiting(why.clone()),
        Err(Found::Unusable(why)) => return refused("disk-unusable", why.clone()),
    };
    if let Content::Table(Table::Gpt(t)) = &disk.content {
        match install_layout(t) {
            Some(true) => return Decision::Installed("the disk holds a complete Keel install".into()),
            Some(false) if seen.uefi => return Decision::Install { wipe: true },
            _ => {}
        }
    }
    if !seen.uefi {
        return refused("not-uefi", "not booted by UEFI firmware: no boot entry can be made for the disk");
    }
    if disk.size < min_disk_bytes() {
        let detail = format!("the disk has {} bytes; an install needs at least {}", disk.size, min_disk_bytes());
        return refused("disk-too-small", detail);
    }
    match &disk.content {
        Content::Blank => Decision::Install { wipe: false },
        Content::Unreadable(e) => refused("disk-unreadable", format!("the disk cannot be read ({e})")),
        other => match want.label {
            Some(l) if want.wipe && disk.labels.iter().any(|x| x == l) => Decision::Install { wipe: true },
            Some(l) if want.wipe => refused(
                "label-mismatch",
                format!(
                    "the disk holds {other} and carries no label {l:?} (it has {:?}); nothing written",
                    disk.labels
                ),
            ),
            _ => refused(
                "not-blank",
                format!(
                    "the disk holds {other}; set wipe = true and label = one it carries ({:?}) to replace it",
                    disk.labels
                ),
            ),
        },
    }
}

/// The partitions to write on a disk of `disk_bytes`: ESP, KEEL_A, KEEL_B, and the state partition (named
/// [`INSTALLING`] until the install completes, `state_name`) to the end of the usable area.
pub fn layout(sector: u32, disk_bytes: u64, guids: [Guid; 4], state_name: &str) -> Option<Vec<NewPart>> {
    let ss = sector as u64;
    let (_, last_usable) = crate::storage::gpt::usable(sector, disk_bytes)?;
    let mut at = ALIGN_BYTES / ss;
    let mut out = Vec::new();
    let parts = [
        (ESP_NAME, ESP_TYPE, Some(ESP_BYTES)),
        (Slot::A.label(), SLOT_TYPE, Some(SLOT_BYTES)),
        (Slot::B.label(), SLOT_TYPE, Some(SLOT_BYTES)),
        (state_name, KEEL_TYPE, None),
    ];
    for ((name, type_guid, bytes), guid) in parts.into_iter().zip(guids) {
        let last = match bytes {
            Some(b) => at + b / ss - 1,
            None => last_usable,
        };
        if last > last_usable || last < at {
            return None;
        }
        out.push(NewPart { first_lba: at, last_lba: last, type_guid, guid, name: name.to_string() });
        at = last + 1;
    }
    let state = out.last()?;
    ((state.last_lba - state.first_lba + 1) * ss >= MIN_STATE_BYTES).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::gpt;
    use crate::storage::probe::Fs;
    use std::path::Path;

    fn seen(content: Content, labels: &[&str]) -> Observed {
        let labels = labels.iter().map(|s| s.to_string()).collect();
        Observed { booted_from_disk: false, uefi: true, disk: Ok(DiskSeen { size: 1 << 30, content, labels }) }
    }

    const PLAIN: Want = Want { wipe: false, label: None };

    fn table(state: &str) -> Content {
        let guids = [Guid([1; 16]), Guid([2; 16]), Guid([3; 16]), Guid([4; 16])];
        let parts = layout(512, 1 << 30, guids, state).unwrap();
        let img = gpt::build_parts(512, 1 << 30, Guid([9; 16]), &parts).unwrap();
        Content::Table(Table::Gpt(gpt::parse(&img.head).unwrap()))
    }

    #[test]
    fn blank_installs_and_anything_else_needs_wipe_and_its_label() {
        assert_eq!(decide(&PLAIN, &seen(Content::Blank, &[])), Decision::Install { wipe: false });
        let ext4 =
            Content::Fs(Fs { kind: crate::storage::probe::FsKind::Ext4, label: Some("data".into()), clean: true });
        match decide(&PLAIN, &seen(ext4.clone(), &["data"])) {
            Decision::Refused { code: "not-blank", detail } => assert!(detail.contains("wipe = true"), "{detail}"),
            d => panic!("{d:?}"),
        }
        let wrong = Want { wipe: true, label: Some("old-os") };
        assert!(matches!(
            decide(&wrong, &seen(ext4.clone(), &["data"])),
            Decision::Refused { code: "label-mismatch", .. }
        ));
        let right = Want { wipe: true, label: Some("data") };
        assert_eq!(decide(&right, &seen(ext4, &["data"])), Decision::Install { wipe: true });
        let data = Content::Data { offset: 4096 };
        assert!(matches!(decide(&right, &seen(data, &[])), Decision::Refused { code: "label-mismatch", .. }));
        let gone = Content::Unreadable("EIO".into());
        assert!(matches!(decide(&right, &seen(gone, &["data"])), Decision::Refused { code: "disk-unreadable", .. }));
    }

    #[test]
    fn installed_is_never_touched_and_a_partial_install_is_redone() {
        let done = seen(table(STATE), &[]);
        assert!(matches!(decide(&PLAIN, &done), Decision::Installed(_)));
        assert_eq!(decide(&PLAIN, &seen(table(INSTALLING), &[])), Decision::Install { wipe: true });
        let from_disk = Observed { booted_from_disk: true, ..seen(Content::Blank, &[]) };
        assert!(matches!(decide(&PLAIN, &from_disk), Decision::Installed(_)), "a disk boot never installs");
    }

    #[test]
    fn needs_uefi_a_big_enough_disk_and_a_disk() {
        let bios = Observed { uefi: false, ..seen(Content::Blank, &[]) };
        assert!(matches!(decide(&PLAIN, &bios), Decision::Refused { code: "not-uefi", .. }));
        let mut small = seen(Content::Blank, &[]);
        if let Ok(d) = &mut small.disk {
            d.size = 128 << 20;
        }
        assert!(matches!(decide(&PLAIN, &small), Decision::Refused { code: "disk-too-small", .. }));
        let missing =
            Observed { disk: Err(Found::NotYet("serial \"X\": nothing".into())), ..seen(Content::Blank, &[]) };
        assert!(matches!(decide(&PLAIN, &missing), Decision::Waiting(_)));
    }

    /// image/disk.sh's sgdisk command, plus the state partition storage adds: byte for byte what we write.
    #[test]
    fn identical_to_what_image_disk_sh_s_sgdisk_writes() {
        let sgdisk = "/usr/sbin/sgdisk";
        assert!(Path::new(sgdisk).exists(), "{sgdisk} is missing: apt-get install gdisk (make setup does)");
        let dir = std::env::temp_dir().join(format!("keel-install-gpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: u64 = 512 << 20;
        let g = |n: u8| Guid::from_fields(0x5b00_0000 + n as u32, 0, 0x4000, [0x80, 0, 0, 0, 0, 0, 0, n]);
        let theirs = dir.join("sgdisk.img");
        std::fs::File::create(&theirs).unwrap().set_len(bytes).unwrap();
        let out = std::process::Command::new(sgdisk)
            .args(["-a", "2048", "-U", &g(0).to_string()])
            .args(["-n", "1:1M:+64M", "-t", "1:ef00", "-c", "1:EFI system partition", "-u", &format!("1:{}", g(1))])
            .args(["-n", "2:0:+64M", "-t", &format!("2:{SLOT_TYPE}"), "-c", "2:KEEL_A", "-u", &format!("2:{}", g(2))])
            .args(["-n", "3:0:+64M", "-t", &format!("3:{SLOT_TYPE}"), "-c", "3:KEEL_B", "-u", &format!("3:{}", g(3))])
            .args(["-n", "4:0:0", "-t", &format!("4:{KEEL_TYPE}"), "-c", "4:KEEL_STATE", "-u", &format!("4:{}", g(4))])
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let theirs = std::fs::read(&theirs).unwrap();
        let parts = layout(512, bytes, [g(1), g(2), g(3), g(4)], STATE).unwrap();
        let img = gpt::build_parts(512, bytes, g(0), &parts).unwrap();
        assert!(img.head[..] == theirs[..img.head.len()], "protective MBR, primary header and entries");
        assert!(img.tail[..] == theirs[img.tail_offset as usize..], "backup entries and header");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn layout_is_make_disk_s() {
        let guids = [Guid([1; 16]), Guid([2; 16]), Guid([3; 16]), Guid([4; 16])];
        let parts = layout(512, 1 << 30, guids, INSTALLING).unwrap();
        let spans: Vec<(u64, u64, &str)> = parts.iter().map(|p| (p.first_lba, p.last_lba, p.name.as_str())).collect();
        // image/disk.sh: sgdisk -a 2048 -n 1:1M:+64M, 2:0:+64M, 3:0:+64M; the state partition to the end.
        assert_eq!(
            spans,
            [
                (2048, 133119, ESP_NAME),
                (133120, 264191, "KEEL_A"),
                (264192, 395263, "KEEL_B"),
                (395264, (1 << 30) / 512 - 34, INSTALLING)
            ]
        );
        assert!(layout(512, 200 << 20, guids, STATE).is_none(), "no room for state");
        assert!(layout(4096, 1 << 30, guids, STATE).is_some());
    }
}
