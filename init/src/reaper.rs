//! The single owner of `waitpid`: every child PID 1 starts and every orphan the kernel re-parents to it is reaped
//! here, on SIGCHLD, and its exit status is handed to whoever waits on that pid.
//!
//! Nothing else in the init may call `wait*` (and nothing uses `tokio::process`, whose own waiting would race this
//! loop for the same statuses). Children are started with `std::process::Command` through [`Reaper::spawn`], which
//! registers the pid under the same lock the reap loop takes, so a child that exits at once is never mistaken for an
//! orphan and its status is never lost.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fmt;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal { signal: i32, core_dumped: bool },
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited:{c}"),
            Exit::Signal { signal, core_dumped } => {
                let name = nix::sys::signal::Signal::try_from(*signal).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "killed:{name}{}", if *core_dumped { ":core" } else { "" })
            }
        }
    }
}

/// A reaped process, as the reap loop reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub pid: i32,
    pub exit: Exit,
    /// No one was waiting on it: an orphan re-parented to PID 1 (or a child whose waiter went away).
    pub orphan: bool,
}

/// A started child. Await [`Child::wait`] for its exit status.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    exit: oneshot::Receiver<Exit>,
}

impl Child {
    pub async fn wait(self) -> Option<Exit> {
        self.exit.await.ok()
    }
}

#[derive(Clone, Default)]
pub struct Reaper {
    waiting: Arc<Mutex<HashMap<i32, oneshot::Sender<Exit>>>>,
}

impl Reaper {
    fn table(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<Exit>>> {
        match self.waiting.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Starts a child and registers it before the reap loop can see it exit.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<Child> {
        let mut table = self.table();
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // Dropping std's handle neither waits nor kills: the reap loop owns the status.
        drop(child);
        let (tx, rx) = oneshot::channel();
        table.insert(pid, tx);
        Ok(Child { pid, exit: rx })
    }

    /// Starts a child with `start` (a fork of its own, returning the pid) and registers it before the reap
    /// loop can see it exit: for children `Command` cannot make (new PID namespaces).
    pub fn spawn_with(&self, start: impl FnOnce() -> std::io::Result<i32>) -> std::io::Result<Child> {
        let mut table = self.table();
        let pid = start()?;
        let (tx, rx) = oneshot::channel();
        table.insert(pid, tx);
        Ok(Child { pid, exit: rx })
    }

    /// Reaps every child that has exited, without blocking. Call on each SIGCHLD (signals coalesce, so one
    /// SIGCHLD may stand for many exits) and once at start for anything that exited before the handler existed.
    pub fn reap_all(&self) -> Vec<Reaped> {
        let mut reaped = Vec::new();
        let mut table = self.table();
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    (pid.as_raw(), Exit::Signal { signal: sig as i32, core_dumped: core })
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue, // stopped/continued: not an exit
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            let orphan = match table.remove(&pid) {
                Some(waiter) => waiter.send(exit).is_err(),
                None => true,
            };
            reaped.push(Reaped { pid, exit, orphan });
        }
        reaped
    }
}

/// Tests that fork children and wait for them, or reap with waitpid(-1), hold this lock: they run one at a time, so
/// that one test's reap loop never takes another's child.
#[cfg(test)]
pub fn test_lock() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial() -> MutexGuard<'static, ()> {
        test_lock()
    }

    fn reap_until(reaper: &Reaper, pid: i32) -> Reaped {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(r) = reaper.reap_all().into_iter().find(|r| r.pid == pid) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "pid {pid} was never reaped");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn orphans_are_reaped_and_reported_as_orphans() {
        let _g = serial();
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let reaper = Reaper::default();
        // The shell starts a grandchild, prints its pid and exits: the grandchild is re-parented to us.
        let out = Command::new("/bin/sh").args(["-c", "sleep 0.2 >/dev/null & echo $!"]).output().unwrap();
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let r = reap_until(&reaper, orphan);
        assert!(r.orphan);
        assert_eq!(r.exit, Exit::Code(0));
    }

    #[test]
    fn exit_status_reaches_the_waiter_even_when_child_exits_at_once() {
        let _g = serial();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let reaper = Reaper::default();
        let child = reaper.spawn(Command::new("/bin/sh").args(["-c", "exit 7"])).unwrap();
        let pid = child.pid;
        // Let it exit before anyone reaps.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = reap_until(&reaper, pid);
        assert!(!r.orphan);
        assert_eq!(rt.block_on(child.wait()), Some(Exit::Code(7)));
    }

    #[test]
    fn signal_deaths_are_reported() {
        let _g = serial();
        let reaper = Reaper::default();
        let child = reaper.spawn(Command::new("/bin/sh").args(["-c", "kill -KILL $$"])).unwrap();
        let pid = child.pid;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = reap_until(&reaper, pid);
        assert_eq!(r.exit, Exit::Signal { signal: 9, core_dumped: false });
        assert_eq!(r.exit.to_string(), "killed:SIGKILL");
        assert_eq!(rt.block_on(child.wait()), Some(Exit::Signal { signal: 9, core_dumped: false }));
    }

    #[test]
    fn exit_display() {
        assert_eq!(Exit::Code(0).to_string(), "exited:0");
        assert_eq!(Exit::Signal { signal: 11, core_dumped: true }.to_string(), "killed:SIGSEGV:core");
    }
}
