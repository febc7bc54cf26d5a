//! Early mounts: the pseudo filesystems and tmpfs that every later phase relies on. Idempotent: a target that is
//! already mounted (EBUSY) counts as done, so running this twice, or after the kernel mounted something itself,
//! changes nothing.

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use std::path::Path;

/// One early mount. `mode` is the root directory mode for tmpfs-like filesystems.
#[derive(Debug, Clone, Copy)]
pub struct Early {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// In mount order; shutdown unmounts in reverse. Order matters: /dev/pts needs /dev, cgroup2 needs /sys.
pub const EARLY: &[Early] = &[
    Early { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV_NOEXEC, data: None },
    Early { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: None },
    Early {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Early {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    Early { source: "tmpfs", target: "/dev/shm", fstype: "tmpfs", flags: NOSUID_NODEV_NOEXEC, data: Some("mode=1777") },
    Early { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: NOSUID_NODEV_NOEXEC, data: Some("mode=0755") },
    Early {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    // Until a state volume is mounted over it, /var lives in memory: the node works, but forgets on reboot.
    Early { source: "tmpfs", target: "/var", fstype: "tmpfs", flags: NOSUID_NODEV_NOEXEC, data: Some("mode=0755") },
    // favordynmods: moving a process into a cgroup (every service start) skips an RCU grace period, at a small
    // cost to every fork and exit; under QEMU it takes a service's fork -> exec from ~15 ms to ~4 ms.
    Early {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate,favordynmods"),
    },
];

/// The UEFI variables (A/B upgrades read and write boot entries there); only when booted by UEFI firmware.
pub const EFIVARS: Early = Early {
    source: "efivarfs",
    target: "/sys/firmware/efi/efivars",
    fstype: "efivarfs",
    flags: NOSUID_NODEV_NOEXEC,
    data: None,
};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Mounted,
    AlreadyMounted,
}

#[derive(Debug, thiserror::Error)]
#[error("mount {fstype} on {target}: {source}")]
pub struct MountError {
    pub target: &'static str,
    pub fstype: &'static str,
    #[source]
    pub source: Errno,
}

/// Mounts one early filesystem, creating its mount point if the parent is writable.
pub fn mount_early(m: &Early) -> Result<Outcome, MountError> {
    let err = |source| MountError { target: m.target, fstype: m.fstype, source };
    if !Path::new(m.target).is_dir() {
        match nix::unistd::mkdir(m.target, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(err(e)),
        }
    }
    match mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
        Ok(()) => Ok(Outcome::Mounted),
        Err(Errno::EBUSY) => Ok(Outcome::AlreadyMounted),
        Err(e) => Err(err(e)),
    }
}

/// Remounts the root filesystem read-only: the image is immutable once early setup is done.
pub fn remount_root_readonly() -> Result<(), Errno> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
}

/// One line of /proc/self/mounts: (fstype, target).
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _source = f.next()?;
            let target = crate::storage::mount::unescape(f.next()?);
            let fstype = f.next()?.to_string();
            Some((fstype, target))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes_mount_table() {
        let text = "rootfs / rootfs ro 0 0\nproc /proc proc rw 0 0\ntmpfs /run/with\\040space tmpfs rw 0 0\n";
        assert_eq!(
            parse_mounts(text),
            vec![
                ("rootfs".into(), "/".into()),
                ("proc".into(), "/proc".into()),
                ("tmpfs".into(), "/run/with space".into()),
            ]
        );
    }

    #[test]
    fn early_mounts_come_after_their_parents() {
        for (i, m) in EARLY.iter().enumerate() {
            let parent = Path::new(m.target).parent().and_then(|p| p.to_str()).unwrap_or("/");
            if parent == "/" {
                continue;
            }
            let parent_at = EARLY.iter().position(|p| parent.starts_with(p.target));
            assert!(matches!(parent_at, Some(j) if j < i), "{} is mounted before its parent", m.target);
        }
    }
}
