//! Starting one run of a service: everything computed first (argv, environment, rlimits, capability masks, the
//! cgroup's `cgroup.procs` fd, the output pipes), then one fork through the init's reaper, whose child enters the
//! service's identity with [`Privileges::enter`] and executes the program.

use super::caps::{self, Privileges, Root};
use super::cgroup::ServiceCgroup;
use super::sandbox::Sandbox;
use super::seccomp;
use crate::reaper::{Child, Reaper};
use keel_config::model::{Rlimit, Service};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use tokio::net::unix::pipe;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}")]
    Invalid(String),
    #[error("pipe: {0}")]
    Pipe(std::io::Error),
    #[error("start {program}: {source}")]
    Start { program: String, source: std::io::Error },
}

/// A started run: the child (its exit comes from the reaper) and the read ends of its stdout and stderr.
pub struct Launched {
    pub child: Child,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    /// How long the child took to build its mount namespace, as it reported before its exec.
    pub sandbox_us: Option<u64>,
}

/// The `RLIMIT_*` number of a limit.
pub fn resource(r: Rlimit) -> libc::c_int {
    let n = match r {
        Rlimit::As => libc::RLIMIT_AS,
        Rlimit::Core => libc::RLIMIT_CORE,
        Rlimit::Cpu => libc::RLIMIT_CPU,
        Rlimit::Data => libc::RLIMIT_DATA,
        Rlimit::Fsize => libc::RLIMIT_FSIZE,
        Rlimit::Locks => libc::RLIMIT_LOCKS,
        Rlimit::Memlock => libc::RLIMIT_MEMLOCK,
        Rlimit::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Rlimit::Nice => libc::RLIMIT_NICE,
        Rlimit::Nofile => libc::RLIMIT_NOFILE,
        Rlimit::Nproc => libc::RLIMIT_NPROC,
        Rlimit::Rss => libc::RLIMIT_RSS,
        Rlimit::Rtprio => libc::RLIMIT_RTPRIO,
        Rlimit::Rttime => libc::RLIMIT_RTTIME,
        Rlimit::Sigpending => libc::RLIMIT_SIGPENDING,
        Rlimit::Stack => libc::RLIMIT_STACK,
    };
    n as libc::c_int
}

/// The (resource, value) pairs to set; unlimited is RLIM_INFINITY (all ones).
pub fn rlimits(def: &Service) -> Vec<(libc::c_int, u64)> {
    def.rlimits.iter().map(|(r, v)| (resource(*r), v.unwrap_or(u64::MAX))).collect()
}

/// Everything the child needs, computed before the fork.
pub fn privileges(def: &Service, last_cap: u32, cgroup: Option<&ServiceCgroup>) -> Result<Privileges, SpawnError> {
    let keep = caps::mask(&def.capabilities).map_err(SpawnError::Invalid)? & caps::all(last_cap);
    let workdir = CString::new(def.workdir.as_bytes()).map_err(|e| SpawnError::Invalid(format!("workdir: {e}")))?;
    Ok(Privileges {
        uid: def.uid,
        gid: def.gid,
        keep,
        last_cap,
        rlimits: rlimits(def),
        workdir,
        cgroup_procs: cgroup.map(|c| c.procs.as_raw_fd()),
        root: Root::Host(Sandbox::new(&def.devices, &def.paths).map_err(SpawnError::Invalid)?),
        seccomp: seccomp::program(),
        timing_fd: None,
    })
}

pub fn pipe() -> Result<(pipe::Receiver, OwnedFd), SpawnError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;
    let receiver = pipe::Receiver::from_owned_fd(read).map_err(SpawnError::Pipe)?;
    Ok((receiver, write))
}

/// Starts `program` (a path, or a verified artifact's `/proc/self/fd/N`) as the service `def` describes.
/// `cgroup` must stay open until this returns; the child joins it before it drops its privileges.
pub fn spawn(
    reaper: &Reaper,
    def: &Service,
    program: &str,
    last_cap: u32,
    cgroup: Option<&ServiceCgroup>,
) -> Result<Launched, SpawnError> {
    let mut privileges = privileges(def, last_cap, cgroup)?;
    let (timing_r, timing_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(|e| SpawnError::Pipe(e.into()))?;
    privileges.timing_fd = Some(timing_w.as_raw_fd());
    let (stdout, stdout_w) = pipe()?;
    let (stderr, stderr_w) = pipe()?;
    let mut cmd = Command::new(program);
    let arg0 = if program.starts_with("/proc/self/fd/") { def.name.as_str() } else { program };
    cmd.arg0(arg0)
        .args(&def.args)
        .env_clear()
        .envs(&def.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::from(stderr_w));
    // SAFETY: `enter` makes only async-signal-safe raw system calls on data computed above, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || privileges.enter());
    }
    let child = reaper.spawn(&mut cmd).map_err(|source| SpawnError::Start { program: program.to_string(), source })?;
    // The write ends live in `cmd`: dropping it leaves the child as their only holder, so EOF means it is gone.
    drop(cmd);
    drop(timing_w);
    // std returns once the child has exec'd, so what it wrote is there (or it wrote nothing).
    let mut took = [0u8; 8];
    let sandbox_us = matches!(nix::unistd::read(&timing_r, &mut took), Ok(8)).then(|| u64::from_ne_bytes(took));
    Ok(Launched { child, stdout, stderr, sandbox_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_are_computed_before_the_fork() {
        let def = Service {
            workdir: "/srv".into(),
            uid: 65534,
            gid: 65533,
            capabilities: vec!["CAP_NET_BIND_SERVICE".into(), "CAP_CHECKPOINT_RESTORE".into()],
            rlimits: [(Rlimit::Nofile, Some(64)), (Rlimit::Core, None)].into_iter().collect(),
            ..crate::services::test_service::service("web", "/bin/web", &[])
        };
        let p = privileges(&def, 40, None).unwrap();
        assert_eq!((p.uid, p.gid, p.keep, p.cgroup_procs), (65534, 65533, (1 << 10) | (1 << 40), None));
        assert_eq!(p.workdir.to_str().unwrap(), "/srv");
        assert_eq!(p.rlimits, [(libc::RLIMIT_CORE as libc::c_int, u64::MAX), (libc::RLIMIT_NOFILE as libc::c_int, 64)]);
        // A kernel that does not know a kept capability cannot grant it.
        assert_eq!(privileges(&def, 39, None).unwrap().keep, 1 << 10);
        assert_eq!(resource(Rlimit::Nproc), libc::RLIMIT_NPROC as libc::c_int);
    }
}
