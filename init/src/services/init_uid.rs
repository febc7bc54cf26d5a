//! Services cannot signal PID 1. The kernel lets a process signal another only if one of its user ids (real or
//! effective) equals the target's real or saved uid, or it holds CAP_KILL. PID 1 runs with real and saved uid
//! [`INIT_REAL_UID`] and effective uid 0: it keeps every capability and owns what it creates as root, but a service
//! running as root without CAP_KILL matches none of its ids, so `kill(1, SIGTERM)` fails with EPERM, for every
//! thread of PID 1 and with every signal system call. The same ids keep such a service out of PID 1's
//! `/proc/1/root`, `/proc/1/fd` and `/proc/1/mem` (ptrace access needs matching ids too). No service may run as
//! that uid (config validation). The seccomp filter ([`super::seccomp`]) also refuses signals to pid 1, for
//! services granted CAP_KILL.
//!
//! PID 1 takes these ids once, first thing, before any thread exists. Programs PID 1 starts that are not services
//! (mke2fs, `keel.run`) inherit the real uid and run with effective uid 0 and full capabilities as before.

use keel_config::model::INIT_REAL_UID;
use nix::unistd::{setresuid, Uid};

/// Sets PID 1's real and saved uid to [`INIT_REAL_UID`], keeping effective uid 0 (and so its capabilities).
pub fn protect_pid1() -> nix::Result<()> {
    let init = Uid::from_raw(INIT_REAL_UID);
    setresuid(init, Uid::from_raw(0), init)
}
