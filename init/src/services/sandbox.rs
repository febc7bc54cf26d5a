//! Each service's own mount namespace, set up in the forked child before it drops its privileges. All paths and
//! options are computed in the parent ([`Sandbox::new`]); [`Sandbox::enter`] only makes raw system calls on them.
//!
//! In the service's namespace (propagation from the host is one-way, `MS_SLAVE`: volumes mounted or unmounted
//! later still reach it, nothing it does reaches the host):
//! - `/var/lib/keel` and `/etc/keel` (the config, its keys, the API identity, upgrade state; the image's trust)
//!   are covered by an empty, read-only tmpfs with mode 0000: absent. `/run/keel` (generation, resolv.conf,
//!   machine-id) is read-only.
//! - `/dev` is a fresh tmpfs holding only `null`, `zero`, `full`, `random`, `urandom`, `tty` (bound from the
//!   host), a private devpts (`pts`, `ptmx`), a private `shm`, the `fd`/`stdin`/`stdout`/`stderr` links, and the
//!   devices the config grants by name. No block device (disks, the ESP, the boot slots) is there; the tmpfs is
//!   `nodev` and read-only, so a node made with a granted CAP_MKNOD does not work either.
//! - `/sys` (with the cgroup tree) is read-only, recursively; so are `/proc/sys`, `/proc/sysrq-trigger`,
//!   `/proc/irq` and `/proc/bus`. Paths the config grants under `/sys` or `/proc/sys` are bound writable again.

use std::ffi::{CStr, CString};
use std::io;

/// At most this many device nodes in a service's /dev (the defaults and the granted ones).
pub const MAX_DEVICES: usize = 48;

const DEFAULT_DEVICES: [&str; 6] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];
const HIDDEN: [&CStr; 2] = [c"/var/lib/keel", c"/etc/keel"];
const READ_ONLY: [&CStr; 5] = [c"/run/keel", c"/proc/sys", c"/proc/sysrq-trigger", c"/proc/irq", c"/proc/bus"];
const LINKS: [(&CStr, &CStr); 5] = [
    (c"pts/ptmx", c"/dev/ptmx"),
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
];

/// What one service's namespace holds beyond the defaults, as C strings ready for the child.
#[derive(Debug)]
pub struct Sandbox {
    /// Device nodes bound into the private /dev: (host path, path in the new /dev, required). Defaults may be
    /// missing on the host.
    devices: Vec<(CString, CString, bool)>,
    /// Directories to make in the private /dev for nested devices (`/dev/net` for `/dev/net/tun`), parents first.
    dev_dirs: Vec<CString>,
    /// Granted paths under /sys or /proc/sys, bound writable (where they are in the service's view).
    writable: Vec<CString>,
    /// The private /dev and what is made in it, under `root` (empty for the host's root; a container's new
    /// root before its pivot).
    dev: CString,
    pts: CString,
    shm: CString,
    links: Vec<(&'static CStr, CString)>,
}

fn c(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains NUL"))
}

impl Sandbox {
    /// The namespace for a service granted `devices` (absolute paths under /dev) and `writable` paths.
    pub fn new(devices: &[String], writable: &[String]) -> Result<Sandbox, String> {
        Sandbox::at("", devices, writable)
    }

    /// As [`Sandbox::new`], with the private /dev and the writable grants under `root` (a path without a
    /// trailing slash; "" for the host's root).
    pub fn at(root: &str, devices: &[String], writable: &[String]) -> Result<Sandbox, String> {
        if DEFAULT_DEVICES.len() + devices.len() > MAX_DEVICES {
            return Err(format!("at most {} devices may be granted", MAX_DEVICES - DEFAULT_DEVICES.len()));
        }
        let links = LINKS.iter().map(|(t, l)| Ok((*t, c(&format!("{root}{}", l.to_string_lossy()))?)));
        let mut out = Sandbox {
            devices: Vec::new(),
            dev_dirs: Vec::new(),
            writable: Vec::new(),
            dev: c(&format!("{root}/dev"))?,
            pts: c(&format!("{root}/dev/pts"))?,
            shm: c(&format!("{root}/dev/shm"))?,
            links: links.collect::<Result<_, String>>()?,
        };
        for d in DEFAULT_DEVICES {
            out.devices.push((c(d)?, c(&format!("{root}{d}"))?, false));
        }
        for d in devices {
            let rel = d.strip_prefix("/dev/").ok_or_else(|| format!("{d} is not under /dev/"))?;
            let parts: Vec<&str> = rel.split('/').collect();
            for i in 1..parts.len() {
                let dir = c(&format!("{root}/dev/{}", parts[..i].join("/")))?;
                if !out.dev_dirs.contains(&dir) {
                    out.dev_dirs.push(dir);
                }
            }
            out.devices.push((c(d)?, c(&format!("{root}{d}"))?, true));
        }
        out.writable = writable.iter().map(|p| c(&format!("{root}{p}"))).collect::<Result<_, _>>()?;
        Ok(out)
    }

    /// Runs in the forked child, still fully privileged: builds the namespace described in the module docs.
    /// Only raw system calls on values computed before the fork; no allocation.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: unshare with a flag only.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        mount(None, c"/", None, libc::MS_REC | libc::MS_SLAVE, None)?;
        self.with_devices(|s| {
            let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            for hidden in HIDDEN {
                let flags = libc::MS_RDONLY | nosuid_nodev_noexec;
                optional(mount(Some(c"tmpfs"), hidden, Some(c"tmpfs"), flags, Some(c"mode=0000,size=4k")))?;
            }
            s.make_dev()?;
            set_attr(c"/sys", libc::AT_RECURSIVE as u32, READ_ONLY_ATTRS | libc::MOUNT_ATTR_NOEXEC, 0)?;
            for path in READ_ONLY {
                read_only(path)?;
            }
            s.bind_writable()
        })
    }

    /// Runs `build` with detached copies of the device nodes taken first (before a new /dev hides them), and
    /// closes them after.
    pub fn with_devices(&self, build: impl FnOnce(&DevTrees<'_>) -> io::Result<()>) -> io::Result<()> {
        let mut trees = [-1i32; MAX_DEVICES];
        let result = self.open_devices(&mut trees).and_then(|()| build(&DevTrees { sandbox: self, trees: &trees }));
        for fd in trees.into_iter().filter(|fd| *fd >= 0) {
            // SAFETY: closing descriptors open_tree gave us.
            unsafe { libc::close(fd) };
        }
        result
    }

    fn open_devices(&self, trees: &mut [i32; MAX_DEVICES]) -> io::Result<()> {
        for (i, (path, _, required)) in self.devices.iter().enumerate() {
            let flags = (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint;
            // SAFETY: open_tree on a NUL-terminated path; the fd is closed by `with_devices`.
            let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
            match fd {
                fd if fd >= 0 => trees[i] = fd as i32,
                _ if !required => {}
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(())
    }
}

/// The sandbox with its device nodes open, inside [`Sandbox::with_devices`].
pub struct DevTrees<'a> {
    sandbox: &'a Sandbox,
    trees: &'a [i32; MAX_DEVICES],
}

/// Read-only, no setuid, no device nodes.
pub const READ_ONLY_ATTRS: u64 = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;

/// Binds `path` over itself (with what is mounted under it) and makes it read-only; `Ok(false)` if it does
/// not exist.
pub fn read_only(path: &CStr) -> io::Result<bool> {
    if optional(mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None))? {
        set_attr(path, libc::AT_RECURSIVE as u32, READ_ONLY_ATTRS, 0)?;
        return Ok(true);
    }
    Ok(false)
}

impl DevTrees<'_> {
    /// The private /dev: a tmpfs with the device nodes, a private devpts and shm, the fd links; read-only.
    pub fn make_dev(&self) -> io::Result<()> {
        let s = self.sandbox;
        let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        mount(Some(c"tmpfs"), &s.dev, Some(c"tmpfs"), nosuid_nodev_noexec, Some(c"mode=0755,size=64k"))?;
        for dir in &s.dev_dirs {
            mkdir(dir, 0o755)?;
        }
        for (i, (_, path, _)) in s.devices.iter().enumerate() {
            if self.trees[i] < 0 {
                continue;
            }
            // SAFETY: creates an empty file as the bind target, then closes it.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o666) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: closing the descriptor just opened.
            unsafe { libc::close(fd) };
            let flags = libc::MOVE_MOUNT_F_EMPTY_PATH as libc::c_uint;
            // SAFETY: move_mount of a detached tree fd onto a NUL-terminated path.
            let r = unsafe {
                libc::syscall(libc::SYS_move_mount, self.trees[i], c"".as_ptr(), libc::AT_FDCWD, path.as_ptr(), flags)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        mkdir(&s.pts, 0o755)?;
        let pts_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        // A kernel without devpts still runs the service, just without terminals.
        let _ =
            mount(Some(c"devpts"), &s.pts, Some(c"devpts"), pts_flags, Some(c"newinstance,ptmxmode=0666,mode=0620"));
        mkdir(&s.shm, 0o755)?;
        mount(Some(c"tmpfs"), &s.shm, Some(c"tmpfs"), nosuid_nodev_noexec, Some(c"mode=1777"))?;
        for (target, link) in &s.links {
            // SAFETY: symlink with NUL-terminated paths.
            check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })?;
        }
        let ro_bind = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | nosuid_nodev_noexec;
        mount(None, &s.dev, None, ro_bind, None)
    }

    /// The granted paths, bound writable over their read-only view.
    pub fn bind_writable(&self) -> io::Result<()> {
        for path in &self.sandbox.writable {
            mount(Some(path), path, None, libc::MS_BIND, None)?;
            set_attr(path, 0, 0, libc::MOUNT_ATTR_RDONLY)?;
        }
        Ok(())
    }
}

pub fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `Ok(true)` if done, `Ok(false)` if the path does not exist on this node.
pub fn optional(r: io::Result<()>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

fn ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: mount(2) with NUL-terminated strings or nulls.
    check(unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags, ptr(data).cast()) })
}

pub fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: mkdir with a NUL-terminated path.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// The kernel's `struct mount_attr` (libc's is non-exhaustive, so it cannot be built here).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on `path` (recursively with `AT_RECURSIVE`).
pub fn set_attr(path: &CStr, flags: u32, set: u64, clear: u64) -> io::Result<()> {
    let attr = MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads `attr` (size given) and a NUL-terminated path, both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_become_binds_with_their_parent_directories() {
        let s = Sandbox::new(&["/dev/net/tun".into(), "/dev/kvm".into()], &["/proc/sys/net/ipv4/ip_forward".into()])
            .unwrap();
        let devices: Vec<&str> = s.devices.iter().map(|(d, _, _)| d.to_str().unwrap()).collect();
        assert_eq!(devices[..6], DEFAULT_DEVICES);
        assert_eq!(devices[6..], ["/dev/net/tun", "/dev/kvm"]);
        assert!(s.devices[..6].iter().all(|(_, _, required)| !required) && s.devices[6].2);
        assert_eq!(s.dev_dirs, [c"/dev/net".to_owned()]);
        assert_eq!(s.writable, [c"/proc/sys/net/ipv4/ip_forward".to_owned()]);
        // A container's /dev is made under its new root; the nodes still come from the host's.
        let inside = Sandbox::at("/run/r", &["/dev/kvm".into()], &["/sys/x".into()]).unwrap();
        assert_eq!(
            (inside.devices[6].0.to_str(), inside.devices[6].1.to_str()),
            (Ok("/dev/kvm"), Ok("/run/r/dev/kvm"))
        );
        assert_eq!((inside.dev.to_str(), inside.writable[0].to_str()), (Ok("/run/r/dev"), Ok("/run/r/sys/x")));
        assert_eq!(inside.links[1].1.to_str(), Ok("/run/r/dev/fd"));
        let many: Vec<String> = (0..MAX_DEVICES).map(|i| format!("/dev/d{i}")).collect();
        assert!(Sandbox::new(&many, &[]).is_err());
    }
}
