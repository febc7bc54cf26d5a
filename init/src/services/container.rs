//! The root an image service runs on, built in its forked child (already in its own mount, PID, IPC and UTS
//! namespaces: [`super::namespaced`]) before it drops its privileges. Everything is computed in the parent
//! ([`ContainerRoot::new`]); [`ContainerRoot::enter`] only makes raw system calls on it.
//!
//! The view, per start, on a stage directory the parent made (`/run/keel/containers/<name>`):
//! - `/`: a read-only overlay of the stage's `skel` (empty mount points: `proc`, `dev`, `tmp`, `sys`,
//!   `etc/resolv.conf` and the volumes' paths) over the image's rootfs. No upper layer, so nothing in it is
//!   writable and the content-addressed store is never changed; `nodev`, `nosuid`.
//! - `/proc`: a new proc for the PID namespace (the service sees itself as PID 1); `/proc/sys`,
//!   `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus` read-only.
//! - `/dev`: the same minimal /dev as every service ([`super::sandbox`]), with the devices the config grants.
//! - `/tmp`: a fresh tmpfs. `/sys`: the host's, read-only (paths the config grants bound writable).
//! - the volumes the service starts after, read-write at their mount points; `/etc/resolv.conf`: the node's.
//! - then `pivot_root` into it and the old root detached. On an initramfs root (which pivot_root refuses), the
//!   child first chroots into a bind of the stage, so the root it pivots from is a mount with a parent.
//!
//! Known limit: on the initramfs root the namespace's root mount is still the host's, below the image's root, so
//! chroot (then `..` from outside the new root), mount, pivot_root, setns or open_by_handle_at would reach the
//! host's files. Validation refuses CAP_SYS_CHROOT, CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH for image services and
//! their seccomp filter refuses chroot ([`super::seccomp::image_program`]; `root_container_tests` tries the
//! escape). The real fix is PID 1 switching its own root to a tmpfs at boot.
//!
//! PID 1 inside is the service itself: it reaps what it starts (as under any container runtime without an init).
//! When it exits, the kernel kills everything else in its PID namespace. On the host side the only reaper is
//! still the init's ([`crate::reaper`]): the service is its direct child.

use super::sandbox::{check, mount, optional, read_only, set_attr, Sandbox, READ_ONLY_ATTRS};
use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};

/// Where each start's stage directory is made.
pub const STAGE_BASE: &str = "/run/keel/containers";
/// The node's resolver config, bound read-only at the image's /etc/resolv.conf.
const RESOLV_CONF: &CStr = c"/run/keel/resolv.conf";
/// Made read-only in the new /proc.
const PROC_READ_ONLY: [&str; 4] = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"];

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::other(format!("{s:?} contains NUL")))
}

fn p(path: &Path) -> io::Result<CString> {
    c(&path.to_string_lossy())
}

/// Everything the child needs to build the view.
#[derive(Debug)]
pub struct ContainerRoot {
    hostname: CString,
    stage: CString,
    root: CString,
    overlay: CString,
    proc: CString,
    proc_read_only: Vec<CString>,
    tmp: CString,
    sys: CString,
    resolv: CString,
    /// (host path, path under the new root): volumes, bound read-write.
    binds: Vec<(CString, CString)>,
    dev: Sandbox,
}

impl ContainerRoot {
    /// Makes the stage for one start of `name` under `base` (its `skel` with the mount points, an empty `root`)
    /// and computes the mounts. `rootfs`: the image's unpacked root; `binds`: host directories bound at the
    /// same path inside.
    pub fn new(
        base: &Path,
        name: &str,
        rootfs: &Path,
        binds: &[String],
        devices: &[String],
        writable: &[String],
    ) -> io::Result<ContainerRoot> {
        let rootfs_text = rootfs.to_string_lossy();
        if rootfs_text.contains([',', ':']) || !rootfs.is_absolute() {
            return Err(io::Error::other(format!("rootfs {rootfs_text:?} must be absolute, without ',' or ':'")));
        }
        let stage = base.join(name);
        // A stage left by the last start (its mounts were only in that child's namespace) is made anew.
        let _ = std::fs::remove_dir_all(&stage);
        let skel = stage.join("skel");
        let root = stage.join("root");
        std::fs::create_dir_all(&root)?;
        for dir in ["proc", "dev", "tmp", "sys", "etc"] {
            std::fs::create_dir_all(skel.join(dir))?;
        }
        std::fs::write(skel.join("etc/resolv.conf"), b"")?;
        for b in binds {
            std::fs::create_dir_all(skel.join(b.trim_start_matches('/')))?;
        }
        let under = |inside: &str| p(&root.join(inside.trim_start_matches('/')));
        let root_text = root.to_string_lossy().into_owned();
        Ok(ContainerRoot {
            hostname: c(name)?,
            stage: p(&stage)?,
            overlay: c(&format!("lowerdir={}:{rootfs_text}", skel.to_string_lossy()))?,
            proc: under("/proc")?,
            proc_read_only: PROC_READ_ONLY.iter().map(|d| under(d)).collect::<io::Result<_>>()?,
            tmp: under("/tmp")?,
            sys: under("/sys")?,
            resolv: under("/etc/resolv.conf")?,
            binds: binds.iter().map(|b| Ok((c(b)?, under(b)?))).collect::<io::Result<_>>()?,
            dev: Sandbox::at(&root_text, devices, writable).map_err(io::Error::other)?,
            root: p(&root)?,
        })
    }

    /// The stage directory (removed by the caller after the run).
    pub fn stage(&self) -> PathBuf {
        PathBuf::from(self.stage.to_string_lossy().into_owned())
    }

    /// Runs in the forked child, in its new namespaces, still fully privileged: builds the view and pivots
    /// into it. Only raw system calls on values computed before the fork; no allocation.
    pub fn enter(&self) -> io::Result<()> {
        let name = self.hostname.as_bytes();
        // SAFETY: sethostname with a pointer and length of a live buffer.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
        mount(None, c"/", None, libc::MS_REC | libc::MS_SLAVE, None)?;
        // The stage bound over itself: a mount with a parent, to chroot into before the pivot.
        mount(Some(&self.stage), &self.stage, None, libc::MS_BIND, None)?;
        self.dev.with_devices(|dev| {
            let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
            let ro = libc::MS_RDONLY | nosuid_nodev;
            mount(Some(c"overlay"), &self.root, Some(c"overlay"), ro, Some(&self.overlay))?;
            mount(Some(c"proc"), &self.proc, Some(c"proc"), nosuid_nodev | libc::MS_NOEXEC, None)?;
            for path in &self.proc_read_only {
                read_only(path)?;
            }
            dev.make_dev()?;
            mount(Some(c"tmpfs"), &self.tmp, Some(c"tmpfs"), nosuid_nodev, Some(c"mode=1777"))?;
            mount(Some(c"/sys"), &self.sys, None, libc::MS_BIND | libc::MS_REC, None)?;
            set_attr(&self.sys, libc::AT_RECURSIVE as u32, READ_ONLY_ATTRS | libc::MOUNT_ATTR_NOEXEC, 0)?;
            for (host, inside) in &self.binds {
                mount(Some(host), inside, None, libc::MS_BIND | libc::MS_REC, None)?;
            }
            // A node without a resolver config yet still runs the service.
            if optional(mount(Some(RESOLV_CONF), &self.resolv, None, libc::MS_BIND, None))? {
                set_attr(&self.resolv, 0, READ_ONLY_ATTRS, 0)?;
            }
            dev.bind_writable()
        })?;
        // SAFETY (below): chdir/chroot/pivot_root/umount2 with NUL-terminated paths.
        check(unsafe { libc::chdir(self.stage.as_ptr()) })?;
        check(unsafe { libc::chroot(c".".as_ptr()) })?;
        check(unsafe { libc::chdir(c"/root".as_ptr()) })?;
        check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } as libc::c_int)?;
        // The old root (the stage) is now stacked on the new one: detach it, and with it the host's tree.
        check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
        check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_holds_the_mount_points_and_the_mounts_are_computed_under_the_root() {
        let base = std::env::temp_dir().join(format!("keel-stage-{}", std::process::id()));
        let r =
            ContainerRoot::new(&base, "web", Path::new("/var/lib/keel/oci/rootfs/ab"), &["/srv/data".into()], &[], &[])
                .unwrap();
        let stage = base.join("web");
        assert!(stage.join("skel/srv/data").is_dir() && stage.join("skel/proc").is_dir());
        assert!(stage.join("skel/etc/resolv.conf").is_file() && stage.join("root").is_dir());
        let want = format!("lowerdir={}:/var/lib/keel/oci/rootfs/ab", stage.join("skel").display());
        assert_eq!(r.overlay.to_str(), Ok(want.as_str()));
        assert_eq!(r.binds[0].0.to_str(), Ok("/srv/data"));
        assert_eq!(r.binds[0].1.to_str().unwrap(), stage.join("root/srv/data").to_str().unwrap());
        assert_eq!(r.proc_read_only[0].to_str().unwrap(), stage.join("root/proc/sys").to_str().unwrap());
        // Overlay options are comma- and colon-separated: such a rootfs path is refused, not misparsed.
        assert!(ContainerRoot::new(&base, "x", Path::new("/a:b"), &[], &[], &[]).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
