//! `orphan-storm N`: N short-lived orphans, made in batches so that at most [`BATCH`] live at once (a small VM
//! could not hold thousands of sleeping processes). Each batch comes from an intermediate child that forks the
//! batch and exits at once; every grandchild waits until it has been re-parented (to PID 1) and then exits, so
//! all N are orphans that PID 1 must reap. Then waits until no zombie is left anywhere and reports PID 1's VmRSS
//! before, at its peak during, and after the storm.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, getppid, ForkResult};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Orphans alive at once, at most.
const BATCH: u32 = 100;
/// How long the storm may take to leave no zombie behind.
const ZOMBIE_WAIT: Duration = Duration::from_secs(60);

/// PID 1's VmRSS in KiB, from `/proc/1/status` (the same source as the node's own `rss_kib`).
pub fn pid1_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/1/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Processes in state Z, system-wide (from `/proc/<pid>/stat`).
pub fn zombies() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) S ...": the state follows the last ')', since comm may hold anything.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        (state == "Z").then_some(pid)
    })
    .collect()
}

/// In a grandchild: wait (briefly) until the intermediate parent is gone, then exit.
fn orphan(parent: nix::unistd::Pid) -> ! {
    let deadline = Instant::now() + Duration::from_secs(10);
    while getppid() == parent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: _exit in a forked child of a single-threaded program.
    unsafe { nix::libc::_exit(0) }
}

/// In an intermediate child: fork `n` orphans-to-be and exit at once (code 3: a fork failed for good).
fn intermediate(n: u32) -> ! {
    let me = getpid();
    let mut made = 0;
    let mut again = 0u32;
    while made < n {
        // SAFETY: single-threaded program; the child only polls getppid and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => orphan(me),
            Ok(ForkResult::Parent { .. }) => made += 1,
            // The uid's process limit while PID 1 catches up on reaping: wait a little.
            Err(Errno::EAGAIN) if again < 10_000 => {
                again += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: as above.
            Err(_) => unsafe { nix::libc::_exit(3) },
        }
    }
    // SAFETY: as above.
    unsafe { nix::libc::_exit(0) }
}

pub fn run(n: u32) -> ExitCode {
    let before = pid1_rss_kib();
    let mut peak = before.unwrap_or(0);
    let started = Instant::now();
    let mut made = 0;
    while made < n {
        let batch = BATCH.min(n - made);
        // SAFETY: single-threaded program; the child forks and exits.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => intermediate(batch),
            Ok(ForkResult::Parent { child }) => child,
            Err(Errno::EAGAIN) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => {
                eprintln!("testhelper: fork failed after {made} orphans: {e}");
                return ExitCode::FAILURE;
            }
        };
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => made += batch,
            other => {
                eprintln!("testhelper: batch after {made} orphans ended {other:?}");
                return ExitCode::FAILURE;
            }
        }
        peak = peak.max(pid1_rss_kib().unwrap_or(0));
    }
    let forked_ms = started.elapsed().as_millis();
    let waiting = Instant::now();
    let mut left = zombies();
    while !left.is_empty() && waiting.elapsed() < ZOMBIE_WAIT {
        std::thread::sleep(Duration::from_millis(50));
        left = zombies();
    }
    let waited_ms = waiting.elapsed().as_millis();
    // Let PID 1 settle (its reap loop and log lines) before its memory is read again.
    std::thread::sleep(Duration::from_secs(2));
    let after = pid1_rss_kib();
    let show = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    println!(
        "testhelper: storm orphans={made} forked_ms={forked_ms} zombies={} waited_ms={waited_ms} \
         pid1_rss_before_kib={} pid1_rss_peak_kib={peak} pid1_rss_after_kib={} end",
        left.len(),
        show(before),
        show(after),
    );
    if !left.is_empty() {
        eprintln!("testhelper: zombies left: {left:?}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
