//! What to do with the device a volume's selector found: a pure function of what the device holds, what is
//! mounted, and what the volume asks for.
//!
//! The one rule above all: nothing that holds a partition table, a filesystem or any other data is ever
//! partitioned or formatted, unless the volume says `wipe = true` AND what is there is provably this volume's (its
//! filesystem carries the volume's label) but not the wanted kind. A filesystem that is already right is mounted,
//! `wipe` or not; everything else is `Blocked` with the reason, and nothing is written.
//!
//! | found | plan |
//! |---|---|
//! | blank whole disk | GPT with one partition, ext4, mount |
//! | blank partition | ext4, mount |
//! | ext4 (with the volume's label, when it has one) | e2fsck when not clean, mount |
//! | a partition table | the one partition that is this volume's (by GPT name or label), as above; else blocked |
//! | the volume's label on another filesystem | `wipe = true`: ext4, mount; else blocked |
//! | anything else (foreign fs, other table, data, unreadable) | blocked |
//! | already mounted where wanted | nothing |

use super::probe::{Content, Fs};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a volume asks for.
#[derive(Debug, Clone)]
pub struct Want<'a> {
    /// The filesystem label it must carry (and gets when Keel formats it).
    pub label: Option<&'a str>,
    /// The GPT name Keel gives the partition it makes; a partition with this name is this volume's.
    pub partlabel: &'a str,
    pub wipe: bool,
    pub read_only: bool,
    pub mount: &'a Path,
    /// A tmpfs on the mount point may be mounted over (the state volume over the early /var).
    pub over_tmpfs: bool,
}

/// One device as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub content: Content,
    /// The device itself is read-only.
    pub read_only: bool,
    /// Where it is mounted now, with whether that mount is read-only.
    pub mounted: Vec<(PathBuf, bool)>,
}

/// A disk and its partitions (with their GPT names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    pub disk: DeviceView,
    /// Something is stacked on the disk (device-mapper, md).
    pub held: bool,
    pub parts: Vec<(Option<String>, DeviceView)>,
}

/// What is mounted on the volume's mount point now (other than the volume's own device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPoint {
    Free,
    Taken { source: String, fstype: String },
}

/// The device the steps act on: the whole disk (whose partition `Partition` makes), or partition `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Disk,
    Part(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A fresh GPT with one partition spanning the disk; the steps after it act on that partition.
    Partition,
    /// mke2fs; `force` only when wiping a filesystem proven to be this volume's.
    Format {
        force: bool,
    },
    Fsck,
    Mount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already mounted where it should be.
    Mounted(On),
    Steps(On, Vec<Step>),
    Blocked(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Partition => "partition",
            Step::Format { force: false } => "format",
            Step::Format { force: true } => "wipe+format",
            Step::Fsck => "fsck",
            Step::Mount => "mount",
        })
    }
}

fn blocked(reason: impl Into<String>) -> Plan {
    Plan::Blocked(reason.into())
}

/// Plans for what the selector found: partition `selected` of `disk`, or (None) the whole disk.
pub fn plan(disk: &DiskView, selected: Option<usize>, want: &Want, at_mount: &MountPoint) -> Plan {
    if disk.held {
        return blocked("in use: another device (device-mapper, md) is stacked on the disk");
    }
    if let Some(p) = selected {
        return match disk.parts.get(p) {
            Some((_, view)) => plan_on(On::Part(p), view, false, want, at_mount),
            None => blocked("the partition vanished"),
        };
    }
    if !matches!(disk.disk.content, Content::Table(_)) {
        if !disk.parts.is_empty() {
            return blocked(format!("holds {}, yet the kernel lists partitions on it", disk.disk.content));
        }
        return plan_on(On::Disk, &disk.disk, true, want, at_mount);
    }
    // A partition table: only the partition that is provably this volume's is considered.
    let mine = |(name, view): &(Option<String>, DeviceView)| {
        name.as_deref() == Some(want.partlabel)
            || matches!((&view.content, want.label), (Content::Fs(f), Some(l)) if f.label.as_deref() == Some(l))
    };
    let ours: Vec<usize> = (0..disk.parts.len()).filter(|&i| mine(&disk.parts[i])).collect();
    match ours.as_slice() {
        [p] => plan_on(On::Part(*p), &disk.parts[*p].1, false, want, at_mount),
        [] => match disk.parts.as_slice() {
            // No label asked for: a disk with one ext partition is that volume.
            [(_, view)] if want.label.is_none() && matches!(&view.content, Content::Fs(f) if f.kind.is_ext()) => {
                plan_on(On::Part(0), view, false, want, at_mount)
            }
            _ => blocked(format!(
                "holds {} and none of its partitions is this volume's (GPT name {:?}{})",
                disk.disk.content,
                want.partlabel,
                want.label.map(|l| format!(" or filesystem label {l:?}")).unwrap_or_default()
            )),
        },
        _ => blocked(format!("{} partitions on the disk look like this volume's: refusing to guess", ours.len())),
    }
}

fn plan_on(on: On, dev: &DeviceView, whole_disk: bool, want: &Want, at_mount: &MountPoint) -> Plan {
    if let Some((_, ro)) = dev.mounted.iter().find(|(p, _)| p == want.mount) {
        return match (*ro, want.read_only) {
            (true, false) => {
                blocked(format!("mounted read-only on {}, but the volume is read-write", want.mount.display()))
            }
            (false, true) => blocked(format!("mounted read-write on {}, but the volume says ro", want.mount.display())),
            _ => Plan::Mounted(on),
        };
    }
    if let Some((elsewhere, _)) = dev.mounted.first() {
        return blocked(format!("in use: mounted on {}", elsewhere.display()));
    }
    if let MountPoint::Taken { source, fstype } = at_mount {
        if !(want.over_tmpfs && fstype == "tmpfs") {
            return blocked(format!("{} already has {source} ({fstype}) mounted on it", want.mount.display()));
        }
    }
    let writable = !want.read_only && !dev.read_only;
    let label_ok = |f: &Fs| want.label.is_none_or(|l| f.label.as_deref() == Some(l));
    match &dev.content {
        Content::Blank if want.read_only => blocked("blank, and a read-only volume is never formatted"),
        Content::Blank if dev.read_only => blocked("blank, but the device is read-only"),
        Content::Blank if whole_disk => {
            Plan::Steps(on, vec![Step::Partition, Step::Format { force: false }, Step::Mount])
        }
        Content::Blank => Plan::Steps(on, vec![Step::Format { force: false }, Step::Mount]),
        Content::Fs(f) if f.kind.is_ext() && label_ok(f) => {
            if dev.read_only && !want.read_only {
                blocked("the device is read-only: give the volume the ro option")
            } else if !f.clean && writable {
                Plan::Steps(on, vec![Step::Fsck, Step::Mount])
            } else {
                Plan::Steps(on, vec![Step::Mount])
            }
        }
        Content::Fs(f) if want.label.is_some() && f.label.as_deref() == want.label => {
            if want.wipe && writable {
                Plan::Steps(on, vec![Step::Format { force: true }, Step::Mount])
            } else if want.wipe {
                blocked(format!("holds {}, and wipe = true cannot write a read-only device", dev.content))
            } else {
                blocked(format!("holds {}, not ext4: set wipe = true to reformat it", dev.content))
            }
        }
        other => blocked(format!(
            "holds {other}{}: never formatted",
            match want.label {
                Some(l) => format!(", not ext4 labelled {l:?}"),
                None => String::new(),
            }
        )),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
