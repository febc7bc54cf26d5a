//! A service's identity and privileges, computed in the parent and entered in the child between fork and exec.
//!
//! Everything [`Privileges`] holds is computed before the fork. [`Privileges::enter`] runs in the forked child of a
//! multi-threaded process, where only async-signal-safe calls are allowed: it makes raw system calls on
//! precomputed values and never allocates. The kept capabilities end up in all five sets (effective, permitted,
//! inheritable, ambient, bounding); every other capability is dropped from all of them, and no_new_privs is set.
//! Before that the child enters its own mount namespace ([`super::sandbox`]); last it installs the default
//! seccomp filter ([`super::seccomp`]).

use super::container::ContainerRoot;
use super::sandbox::Sandbox;
use super::seccomp;
use keel_config::model::CAPABILITIES;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// The kernel's capability numbers go up to this in the kernels Keel knows (CAP_CHECKPOINT_RESTORE).
const KNOWN_LAST_CAP: u32 = CAPABILITIES.len() as u32 - 1;

/// The capability mask with bit `n` set for each named capability (`CAP_CHOWN` is bit 0).
pub fn mask(names: &[String]) -> Result<u64, String> {
    let mut m = 0u64;
    for name in names {
        match CAPABILITIES.iter().position(|c| c == name) {
            Some(bit) => m |= 1 << bit,
            None => return Err(format!("{name} is not a capability this init knows")),
        }
    }
    Ok(m)
}

/// The names in a mask, for log lines: `CAP_NET_BIND_SERVICE,CAP_KILL`, or `none`.
pub fn names(mask: u64) -> String {
    let kept: Vec<&str> =
        CAPABILITIES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
    if kept.is_empty() {
        "none".to_string()
    } else {
        kept.join(",")
    }
}

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(KNOWN_LAST_CAP)
        .min(63)
}

/// All capabilities up to `last_cap`.
pub fn all(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// How a service's process enters its identity; see the module docs.
#[derive(Debug)]
pub struct Privileges {
    pub uid: u32,
    pub gid: u32,
    /// Capabilities kept, already limited to what the kernel knows.
    pub keep: u64,
    pub last_cap: u32,
    /// (resource, value) pairs for setrlimit, soft = hard; `u64::MAX` is unlimited (RLIM_INFINITY).
    pub rlimits: Vec<(libc::c_int, u64)>,
    pub workdir: CString,
    /// `cgroup.procs` of the service's cgroup, open for writing (owned by the caller, open across the fork).
    pub cgroup_procs: Option<RawFd>,
    /// The service's own mount namespace: a view of the host's root, or an image's root.
    pub root: Root,
    /// The seccomp filter installed last ([`super::seccomp`]).
    pub seccomp: Vec<libc::sock_filter>,
    /// Where the child writes how long its namespace took to build, in µs (8 bytes; close-on-exec).
    pub timing_fd: Option<RawFd>,
}

/// What a service's mount namespace is built on.
#[derive(Debug)]
pub enum Root {
    /// The node's root, with Keel's records hidden ([`super::sandbox`]).
    Host(Sandbox),
    /// An image's root, pivoted into ([`super::container`]); the namespaces are already new.
    Container(Box<ContainerRoot>),
}

/// CLOCK_MONOTONIC in µs (clock_gettime is async-signal-safe).
fn monotonic_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000).saturating_add(t.tv_nsec as u64 / 1000)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn prctl(option: libc::c_int, arg2: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    check(unsafe { libc::syscall(libc::SYS_prctl, option, arg2, 0u64, 0u64, 0u64) })
}

impl Privileges {
    /// Runs in the forked child, before exec: new session, own cgroup, rlimits, own mount namespace, then identity
    /// and capabilities, and the seccomp filter last.
    /// Only raw system calls on values computed before the fork; no allocation, no locks.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY (all blocks below): raw system calls with integer arguments or pointers to locals and to memory
        // this struct owns, which stays valid and unchanged in the child until exec.
        unsafe {
            // Ignored signals stay ignored across exec: a service starts with every disposition at its default,
            // whatever its supervisor ignores (std already clears the signal mask). The raw system call reaches
            // the signals the C library keeps for itself too.
            let default = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    let (act, old) = (&default as *const KernelSigaction, std::ptr::null_mut::<KernelSigaction>());
                    libc::syscall(libc::SYS_rt_sigaction, sig, act, old, 8usize);
                }
            }
            check(libc::syscall(libc::SYS_setsid))?;
            if let Some(fd) = self.cgroup_procs {
                // "0" moves the writing process itself.
                let zero = b"0";
                check(libc::syscall(libc::SYS_write, fd, zero.as_ptr(), zero.len()))?;
            }
            for &(resource, value) in &self.rlimits {
                let limit = libc::rlimit64 { rlim_cur: value, rlim_max: value };
                check(libc::syscall(libc::SYS_prlimit64, 0, resource, &limit as *const libc::rlimit64, 0usize))?;
            }
            // Mounts need CAP_SYS_ADMIN: the namespace is built before anything is dropped.
            let building = monotonic_us();
            match &self.root {
                Root::Host(sandbox) => sandbox.enter()?,
                Root::Container(container) => container.enter()?,
            }
            if let Some(fd) = self.timing_fd {
                let took = monotonic_us().saturating_sub(building).to_ne_bytes();
                libc::syscall(libc::SYS_write, fd, took.as_ptr(), took.len());
            }
            // The bounding set needs CAP_SETPCAP, so it goes while we are still fully privileged.
            for cap in 0..=self.last_cap {
                if self.keep & (1 << cap) == 0 {
                    prctl(libc::PR_CAPBSET_DROP, u64::from(cap))?;
                }
            }
            check(libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()))?;
            // Keep the permitted set across the uid change; capset below trims it to `keep`.
            prctl(libc::PR_SET_KEEPCAPS, 1)?;
            check(libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid))?;
            check(libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid))?;
            let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
            let (lo, hi) = (self.keep as u32, (self.keep >> 32) as u32);
            let data = [
                CapData { effective: lo, permitted: lo, inheritable: lo },
                CapData { effective: hi, permitted: hi, inheritable: hi },
            ];
            check(libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()))?;
            prctl(libc::PR_SET_KEEPCAPS, 0)?;
            // Ambient capabilities carry the kept set across exec for a non-root uid (a root uid gets the
            // bounding set anyway); raising needs each one in permitted and inheritable, which capset just did.
            check(libc::syscall(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))?;
            for cap in 0..=self.last_cap {
                if self.keep & (1 << cap) != 0 {
                    let raise = libc::PR_CAP_AMBIENT_RAISE;
                    check(libc::syscall(libc::SYS_prctl, libc::PR_CAP_AMBIENT, raise, u64::from(cap), 0, 0))?;
                }
            }
            prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
            // As the service's own user, so a directory it may not enter is an error, not a root privilege.
            check(libc::syscall(libc::SYS_chdir, self.workdir.as_ptr()))?;
        }
        // Last: the filter refuses mount and friends, which the steps above needed.
        seccomp::install(&self.seccomp)
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction` on x86_64 (not the C library's, which differs).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_the_kernel_numbering() {
        assert_eq!(mask(&[]), Ok(0));
        assert_eq!(mask(&["CAP_CHOWN".into()]), Ok(1));
        assert_eq!(mask(&["CAP_NET_BIND_SERVICE".into(), "CAP_NET_ADMIN".into()]), Ok((1 << 10) | (1 << 12)));
        assert_eq!(mask(&["CAP_CHECKPOINT_RESTORE".into()]), Ok(1 << 40));
        assert!(mask(&["CAP_BOGUS".into()]).is_err());
        assert_eq!(names(0), "none");
        assert_eq!(names((1 << 10) | (1 << 5)), "CAP_KILL,CAP_NET_BIND_SERVICE");
    }

    #[test]
    fn all_covers_exactly_the_kernels_capabilities() {
        assert_eq!(all(40), 0x1ff_ffff_ffff);
        assert_eq!(all(0), 1);
        assert_eq!(all(63), u64::MAX);
        let last = last_cap();
        assert!((KNOWN_LAST_CAP.min(37)..=63).contains(&last), "{last}");
    }
}
