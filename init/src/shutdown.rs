//! Clean shutdown: stop every process (SIGTERM, a grace period, then SIGKILL), sync, unmount in reverse mount
//! order, sync again, and hand the machine to `reboot(2)`. The reap loop keeps running throughout, so stopped
//! processes do not linger as zombies.

use crate::boot::mounts::parse_mounts;
use crate::clock;
use crate::net::controller::NetEvent;
use crate::power::{Action, Request};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Sends `signal` to every process but PID 1, then waits up to `grace` for them all to be gone.
/// Returns how many were still there at the deadline.
async fn signal_all_and_wait(signal: Signal, grace: Duration) -> usize {
    // kill(-1) reaches every process we may signal except ourselves; ESRCH means there are none.
    let _ = kill(Pid::from_raw(-1), signal);
    let deadline = Instant::now() + grace;
    loop {
        let left = crate::procfs::userspace_pids().len();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Mount points to unmount, innermost last-mounted first; the root itself stays.
pub fn unmount_order(mounts: &[(String, String)]) -> Vec<String> {
    mounts.iter().rev().map(|(_, target)| target.clone()).filter(|t| t != "/").collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Unmounted {
    unmounted: usize,
    detached: usize,
    failed: usize,
}

/// Unmounts everything but the root. A filesystem still busy (our own console holds /dev open) is detached
/// instead (a disk filesystem remounted read-only first), which still flushes and releases it once the last
/// user goes.
fn unmount_all() -> Unmounted {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map(|t| parse_mounts(&t)).unwrap_or_default();
    let mut result = Unmounted::default();
    let on_disk = |t: &str| {
        mounts
            .iter()
            .any(|(fs, m)| m == t && matches!(fs.as_str(), "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "vfat"))
    };
    for target in unmount_order(&mounts) {
        match umount2(target.as_str(), MntFlags::empty()) {
            Ok(()) => {
                result.unmounted += 1;
                log::debug!("shutdown.umount target={target}");
            }
            Err(Errno::EBUSY) => match detach(&target, on_disk(&target)) {
                Ok(()) => {
                    result.detached += 1;
                    log::debug!("shutdown.detach target={target}");
                }
                Err(e) => {
                    result.failed += 1;
                    log::warn!("shutdown.umount_failed target={target} error={e}");
                }
            },
            // Already gone with a parent that was detached.
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                result.failed += 1;
                log::warn!("shutdown.umount_failed target={target} error={e}");
            }
        }
    }
    result
}

/// Detaches a busy mount. A disk filesystem is made read-only first, so it is clean on disk when the machine
/// goes down even though the detached mount lives on.
fn detach(target: &str, on_disk: bool) -> Result<(), Errno> {
    if on_disk {
        let ro = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
        let _ = nix::mount::mount(None::<&str>, target, None::<&str>, ro, None::<&str>);
    }
    umount2(target, MntFlags::MNT_DETACH)
}

/// Runs the whole shutdown and never returns.
pub async fn execute(
    request: Request,
    grace: Duration,
    net: Option<mpsc::Sender<NetEvent>>,
    services: Option<crate::services::ServicesHandle>,
) -> ! {
    log::info!(
        "shutdown.start action={} reason={} uptime_ms={}",
        request.action,
        request.reason,
        clock::ms(clock::uptime())
    );
    // Services first, in reverse dependency order, each with its own stop signal and timeout, while the network
    // they may need to finish still works.
    if let Some(services) = services {
        if tokio::time::timeout(Duration::from_secs(300), services.stop_all()).await.is_err() {
            log::warn!("shutdown.services_timeout after_s=300");
        }
    }
    // DHCP leases are released while the network still works.
    if let Some(net) = net {
        let (ack, done) = oneshot::channel();
        if net.send(NetEvent::Shutdown(ack)).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(3), done).await.is_err()
        {
            log::warn!("shutdown.net_timeout");
        }
    }
    let left = signal_all_and_wait(Signal::SIGTERM, grace).await;
    let killed = if left > 0 {
        log::warn!("shutdown.kill remaining={left} grace_s={}", grace.as_secs());
        signal_all_and_wait(Signal::SIGKILL, Duration::from_secs(3)).await;
        left
    } else {
        0
    };
    log::info!("shutdown.stopped killed={killed}");
    // Blocking work of PID 1's own (a durable write on /var, the API's first key) would keep a filesystem busy.
    let pending = crate::fsutil::quiesce(Duration::from_secs(5)).await;
    if pending > 0 {
        log::warn!("shutdown.pending_io count={pending} after_s=5");
    }
    nix::unistd::sync();
    let u = unmount_all();
    nix::unistd::sync();
    log::info!(
        "shutdown.unmounted unmounted={} detached={} failed={} action={} uptime_ms={}",
        u.unmounted,
        u.detached,
        u.failed,
        request.action,
        clock::ms(clock::uptime())
    );
    power_off(request.action)
}

/// The last step of every shutdown (and of the panic path).
pub fn power_off(action: Action) -> ! {
    let mode = match action {
        Action::Poweroff => RebootMode::RB_POWER_OFF,
        Action::Reboot => RebootMode::RB_AUTOBOOT,
        Action::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    let err = reboot(mode).err();
    // reboot(2) only returns on failure; PID 1 must still never exit.
    crate::logging::emergency(&format!("shutdown.reboot_failed action={action} error={err:?}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounts_in_reverse_and_keeps_root() {
        let mounts: Vec<(String, String)> =
            [("rootfs", "/"), ("proc", "/proc"), ("devtmpfs", "/dev"), ("devpts", "/dev/pts")]
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect();
        assert_eq!(unmount_order(&mounts), ["/dev/pts", "/dev", "/proc"]);
    }
}
