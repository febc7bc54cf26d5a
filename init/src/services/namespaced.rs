//! Starting an image service: one `clone` with new mount, PID, IPC and UTS namespaces (so the child is PID 1 of
//! its PID namespace and still the init's direct child, reaped by the one [`Reaper`]), then in the child the
//! same entry as every service ([`Privileges::enter`], here building the image's root) and `execve`.
//!
//! `std::process::Command` cannot ask for CLONE_NEWPID (unsharing it in `pre_exec` would only move the
//! child's children), so this path does what Command does itself: everything allocated before the clone
//! (argv, envp, the program's candidate paths), the child makes raw system calls only, and an exec failure
//! comes back as an errno over a close-on-exec pipe.

use super::caps::{Privileges, Root};
use super::cgroup::ServiceCgroup;
use super::container::ContainerRoot;
use super::image::Resolved;
use super::spawn::{self, Launched, SpawnError};
use crate::reaper::Reaper;
use keel_config::model::Service;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

const FLAGS: libc::c_ulong =
    (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::SIGCHLD) as libc::c_ulong;

/// Where a child that never exec'd failed (the first byte of its report).
const STEP_STREAMS: u8 = 1;
const STEP_ENTER: u8 = 2;
const STEP_EXEC: u8 = 3;

fn cstr(s: &str, what: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Invalid(format!("{what} {s:?} contains NUL")))
}

/// One start of an image service: what it runs and on which root.
pub struct Start<'a> {
    /// The process (argv, env, uid, gid, working dir) from the image config and the service's overrides.
    pub run: &'a Resolved,
    /// The image's unpacked root.
    pub rootfs: &'a Path,
    /// Host directories bound read-write at the same path inside.
    pub binds: &'a [String],
    /// Where the per-start stage directory is made ([`super::container::STAGE_BASE`] on a node).
    pub stage_base: &'a Path,
}

/// Starts `start.run` on the image's root as the service `def` describes (its caps, limits, devices and
/// writable paths; the uid, gid and working dir are `start.run`'s). Returns the run and its stage directory.
pub fn spawn(
    reaper: &Reaper,
    def: &Service,
    start: &Start<'_>,
    last_cap: u32,
    cgroup: Option<&ServiceCgroup>,
) -> Result<(Launched, std::path::PathBuf), SpawnError> {
    let Start { run, rootfs, binds, stage_base } = *start;
    let identity = Service { uid: run.uid, gid: run.gid, workdir: run.workdir.clone(), ..def.clone() };
    let mut privileges = spawn::privileges(&identity, last_cap, cgroup)?;
    let container = ContainerRoot::new(stage_base, &def.name, rootfs, binds, &def.devices, &def.paths)
        .map_err(|e| SpawnError::Invalid(format!("stage for {}: {e}", def.name)))?;
    let stage = container.stage();
    privileges.root = Root::Container(Box::new(container));
    privileges.seccomp = super::seccomp::image_program();
    let argv: Vec<CString> = run.argv.iter().map(|a| cstr(a, "argument")).collect::<Result<_, _>>()?;
    let envp: Vec<CString> =
        run.env.iter().map(|(k, v)| cstr(&format!("{k}={v}"), "environment entry")).collect::<Result<_, _>>()?;
    let candidates: Vec<CString> = run.candidates.iter().map(|c| cstr(c, "program")).collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (timing_r, timing_w) =
        nix::unistd::pipe2(cloexec | nix::fcntl::OFlag::O_NONBLOCK).map_err(|e| SpawnError::Pipe(e.into()))?;
    privileges.timing_fd = Some(timing_w.as_raw_fd());
    let (errors_r, errors_w) = nix::unistd::pipe2(cloexec).map_err(|e| SpawnError::Pipe(e.into()))?;
    let (stdout, stdout_w) = spawn::pipe()?;
    let (stderr, stderr_w) = spawn::pipe()?;
    let null: OwnedFd = std::fs::File::open("/dev/null").map_err(SpawnError::Pipe)?.into();
    let fds = [null.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()];
    let program = run.argv[0].clone();

    let child = reaper
        .spawn_with(|| {
            // SAFETY: a fork with new namespaces (no CLONE_VM, no new stack): the child gets a copy of this
            // address space and, until execve, only makes the raw system calls of `child`.
            let pid = unsafe { libc::syscall(libc::SYS_clone, FLAGS, 0usize, 0usize, 0usize, 0usize) };
            if pid == 0 {
                child(&privileges, fds, &candidates, &argv_ptrs, &envp_ptrs, errors_w.as_raw_fd());
            }
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(pid as i32)
        })
        .map_err(|source| SpawnError::Start { program: program.clone(), source })?;
    drop((errors_w, timing_w, stdout_w, stderr_w, null));
    // EOF: the child exec'd (the pipe is close-on-exec). Else: the step and errno it failed with; it has exited.
    let mut failed = [0u8; 8];
    if let Ok(8) = read_full(&errors_r, &mut failed) {
        let step = match failed[0] {
            STEP_STREAMS => "standard streams",
            STEP_ENTER => "entering its namespaces, root and identity",
            _ => "exec",
        };
        let errno = i32::from_ne_bytes([failed[4], failed[5], failed[6], failed[7]]);
        let source = std::io::Error::from_raw_os_error(errno);
        return Err(SpawnError::Start { program: format!("{program} ({step})"), source });
    }
    let mut took = [0u8; 8];
    let sandbox_us = matches!(nix::unistd::read(&timing_r, &mut took), Ok(8)).then(|| u64::from_ne_bytes(took));
    Ok((Launched { child, stdout, stderr, sandbox_us }, stage))
}

/// Reads until `buf` is full or EOF; the count read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> nix::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The child: standard streams, the service's identity and root, then each candidate until one executes.
/// Never returns; on failure writes its errno to `errors` and exits 127.
fn child(
    privileges: &Privileges,
    fds: [libc::c_int; 3],
    candidates: &[CString],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    errors: libc::c_int,
) -> ! {
    // SAFETY: raw system calls on descriptors and memory prepared before the clone; _exit never returns.
    unsafe {
        let fail = |step: u8, errno: i32| -> ! {
            let e = errno.to_ne_bytes();
            let bytes = [step, 0, 0, 0, e[0], e[1], e[2], e[3]];
            libc::write(errors, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        };
        for (target, fd) in fds.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(STEP_STREAMS, *libc::__errno_location());
            }
        }
        if let Err(e) = privileges.enter() {
            fail(STEP_ENTER, e.raw_os_error().unwrap_or(libc::EINVAL));
        }
        let mut last = libc::ENOENT;
        for program in candidates {
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            last = *libc::__errno_location();
            if last != libc::ENOENT && last != libc::ENOTDIR {
                break;
            }
        }
        fail(STEP_EXEC, last)
    }
}
