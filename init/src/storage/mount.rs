//! Mounting volumes: the mount table as the kernel shows it (`/proc/self/mountinfo`, by device number), mount
//! options split into flags and filesystem data, and mount/unmount themselves.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub devno: (u32, u32),
    pub target: PathBuf,
    pub read_only: bool,
    pub fstype: String,
    pub source: String,
    /// The mount's own options, then the filesystem's (`rw,nosuid,nodev,noatime` + `commit=30`), as the kernel
    /// reports them.
    pub options: String,
}

/// The kernel's mount tables (mountinfo, /proc/self/mounts) escape space, tab, newline and backslash as octal
/// (`\040`); the one unescaper of both. A backslash not followed by three octal digits of a byte stays as it is.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo (`36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`), in
/// mount order; lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            let mut r = right.split(' ');
            Some(MountEntry {
                devno: (major.parse().ok()?, minor.parse().ok()?),
                target: PathBuf::from(unescape(f.get(4)?)),
                read_only: f.get(5)?.split(',').any(|o| o == "ro"),
                fstype: r.next()?.to_string(),
                source: unescape(r.next()?),
                options: {
                    let mut seen: Vec<&str> = Vec::new();
                    for o in f.get(5)?.split(',').chain(r.next().unwrap_or("").split(',')) {
                        if !o.is_empty() && !seen.contains(&o) {
                            seen.push(o);
                        }
                    }
                    seen.join(",")
                },
            })
        })
        .collect()
}

pub fn read_mountinfo(path: &Path) -> Vec<MountEntry> {
    std::fs::read_to_string(path).map(|t| parse_mountinfo(&t)).unwrap_or_default()
}

/// Where the device `devno` is mounted (a mount hidden by a later one on the same path still counts).
pub fn mounted_at(table: &[MountEntry], devno: Option<(u32, u32)>) -> Vec<(PathBuf, bool)> {
    table.iter().filter(|m| Some(m.devno) == devno).map(|m| (m.target.clone(), m.read_only)).collect()
}

/// What is visible on `target`: the last mount made on it.
pub fn top_mount<'a>(table: &'a [MountEntry], target: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.target == target)
}

/// Mount options split the way mount(2) takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    /// Filesystem-specific options (`commit=30,errors=remount-ro`), or none.
    pub data: Option<String>,
}

impl Options {
    pub fn read_only(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }
}

/// Splits option words over `base` flags: VFS words become flags (and `rw`, `dev`, `exec`, `suid`, `atime` clear
/// theirs), every other word goes to the filesystem as data.
pub fn parse_options(words: &[String], base: MsFlags) -> Options {
    let mut flags = base;
    let mut data = Vec::new();
    for w in words {
        let (set, clear) = match w.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::MS_NOATIME | MsFlags::MS_RELATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags = (flags - clear) | set;
    }
    Options { flags, data: (!data.is_empty()).then(|| data.join(",")) }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {path}: {source}")]
    MountPoint { path: String, source: std::io::Error },
    #[error("mount {device} on {target}: {source}")]
    Mount { device: String, target: String, source: nix::errno::Errno },
}

/// Mounts `device` (ext4) on `target`, creating the mount point when it is missing.
pub fn mount_ext4(device: &Path, target: &Path, options: &Options) -> Result<(), MountError> {
    std::fs::create_dir_all(target)
        .map_err(|source| MountError::MountPoint { path: target.display().to_string(), source })?;
    mount(Some(device), target, Some("ext4"), options.flags, options.data.as_deref()).map_err(|source| {
        MountError::Mount { device: device.display().to_string(), target: target.display().to_string(), source }
    })
}

/// Flushes and unmounts `target`; a busy filesystem is remounted read-only (so it is clean on disk) and detached.
pub fn unmount(target: &Path) -> Result<(), nix::errno::Errno> {
    nix::unistd::sync();
    match umount2(target, MntFlags::empty()) {
        Err(nix::errno::Errno::EBUSY) => {
            let _ = mount(None::<&str>, target, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>);
            umount2(target, MntFlags::MNT_DETACH)
        }
        other => other,
    }
}

/// (size, free to unprivileged users) of the filesystem mounted on `target`, in bytes.
pub fn space(target: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(target).ok()?;
    let frag = s.fragment_size();
    Some((s.blocks() * frag, s.blocks_available() * frag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal_and_leaves_the_rest() {
        assert_eq!(unescape("/run/with\\040space"), "/run/with space");
        assert_eq!(unescape("a\\134b\\011c\\012"), "a\\b\tc\n");
        for kept in ["\\", "\\04", "\\999", "\\777x", "end\\"] {
            assert_eq!(unescape(kept), kept, "{kept:?}");
        }
    }

    #[test]
    fn reads_mountinfo_by_device_number() {
        let text = "22 1 0:21 / /proc rw,relatime - proc proc rw\n\
                    30 1 0:27 / /var rw,nosuid,nodev - tmpfs tmpfs rw,mode=755\n\
                    41 30 254:17 / /var rw,relatime - ext4 /dev/vdb1 rw\n\
                    42 41 254:32 / /var/lib/my\\040data ro,noatime shared:1 - ext4 /dev/vdc rw\n\
                    garbage\n";
        let t = parse_mountinfo(text);
        assert_eq!(t.len(), 4);
        assert_eq!(t[3].target, PathBuf::from("/var/lib/my data"));
        assert!(t[3].read_only && !t[2].read_only);
        assert_eq!((t[2].devno, t[2].fstype.as_str(), t[2].source.as_str()), ((254, 17), "ext4", "/dev/vdb1"));
        assert_eq!(mounted_at(&t, Some((254, 32))), [(PathBuf::from("/var/lib/my data"), true)]);
        assert!(mounted_at(&t, None).is_empty());
        assert_eq!(top_mount(&t, Path::new("/var")).map(|m| m.fstype.as_str()), Some("ext4"));
        assert_eq!(top_mount(&t, Path::new("/srv")), None);
        // The mount's options, then the filesystem's, each once.
        assert_eq!(t[1].options, "rw,nosuid,nodev,mode=755");
        assert_eq!(t[3].options, "ro,noatime,rw");
    }

    #[test]
    fn options_become_flags_and_data() {
        let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let words: Vec<String> = ["noatime", "ro", "commit=30", "dev", "errors=remount-ro"].map(String::from).to_vec();
        let o = parse_options(&words, base);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOATIME | MsFlags::MS_RDONLY);
        assert_eq!(o.data.as_deref(), Some("commit=30,errors=remount-ro"));
        assert!(o.read_only());
        let o = parse_options(&["ro".into(), "rw".into()], base);
        assert!(!o.read_only() && o.data.is_none());
    }
}
