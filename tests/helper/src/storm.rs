//! `orphan-storm N`: N short-lived orphans, made in batches so that at most [`BATCH`] live at once (a small VM
//! could not hold thousands of sleeping processes). Each batch comes from an intermediate child that forks the
//! batch and exits at once; every grandchild waits until it has been re-parented (to PID 1) and then exits, so
//! all N are orphans that PID 1 must reap. Then waits until no zombie is left anywhere and reports PID 1's VmRSS
//! before (after a warm-up, see [`run`]), at its peak during, and after the storm.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, getppid, ForkResult};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Orphans alive at once, at most.
const BATCH: u32 = 100;
/// Orphans made before the baseline is taken (see [`run`]).
const WARMUP: u32 = 5000;
/// A progress line (with PID 1's memory) every this many orphans.
const PROGRESS: u32 = 2500;
/// How long the storm may take to leave no zombie behind.
const ZOMBIE_WAIT: Duration = Duration::from_secs(60);

/// A `/proc/1/status` size field (`VmRSS`, `RssAnon`, `RssFile`) in KiB.
fn pid1_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/1/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// PID 1's VmRSS in KiB (the same source as the node's own `rss_kib`).
pub fn pid1_rss_kib() -> Option<u64> {
    pid1_kib("VmRSS")
}

/// PID 1's anonymous and file-backed resident KiB, for a progress line.
fn pid1_split() -> String {
    let show = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    format!(
        "pid1_rss_kib={} anon_kib={} file_kib={}",
        show(pid1_rss_kib()),
        show(pid1_kib("RssAnon")),
        show(pid1_kib("RssFile"))
    )
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

/// In a grandchild: sleep until the intermediate parent is gone, then exit. It blocks on `gone` (the read end of
/// a pipe whose only writer is the parent), which reads end-of-file once the parent exits: a hundred orphans
/// polling a timer would eat the small VM's CPU while their siblings are forked. The parent's files close just
/// before the kernel re-parents its children, so a short poll of getppid follows.
fn orphan(parent: nix::unistd::Pid, gone: nix::libc::c_int, writer: nix::libc::c_int) -> ! {
    let mut byte = 0u8;
    // SAFETY: plain system calls on descriptors this process owns, into a local buffer.
    unsafe {
        nix::libc::close(writer);
        while nix::libc::read(gone, (&mut byte as *mut u8).cast(), 1) < 0 && Errno::last() == Errno::EINTR {}
    }
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
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the local array.
    if unsafe { nix::libc::pipe(fds.as_mut_ptr()) } != 0 {
        // SAFETY: _exit in a forked child of a single-threaded program.
        unsafe { nix::libc::_exit(3) }
    }
    let mut made = 0;
    let mut again = 0u32;
    while made < n {
        // SAFETY: single-threaded program; the child only reads a pipe, polls getppid and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => orphan(me, fds[0], fds[1]),
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

/// PID 1's VmRSS during a storm: the peak between batches, and when half the orphans were made.
struct Seen {
    peak: u64,
    half: Option<u64>,
}

/// Makes `n` orphans in batches.
fn storm(n: u32) -> Result<Seen, String> {
    let mut peak = pid1_rss_kib().unwrap_or(0);
    let mut half = None;
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
            Err(e) => return Err(format!("fork failed after {made} orphans: {e}")),
        };
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => made += batch,
            other => return Err(format!("batch after {made} orphans ended {other:?}")),
        }
        let rss = pid1_rss_kib();
        peak = peak.max(rss.unwrap_or(0));
        if half.is_none() && made >= n / 2 {
            half = rss;
        }
        if made % PROGRESS == 0 || made == n {
            println!("testhelper: storm progress made={made} {}", pid1_split());
        }
    }
    Ok(Seen { peak, half })
}

/// Waits until no zombie is left (or [`ZOMBIE_WAIT`] passed); returns those left and how long it waited.
fn settle() -> (Vec<i32>, u128) {
    let waiting = Instant::now();
    let mut left = zombies();
    while !left.is_empty() && waiting.elapsed() < ZOMBIE_WAIT {
        std::thread::sleep(Duration::from_millis(50));
        left = zombies();
    }
    let waited = waiting.elapsed().as_millis();
    // Let PID 1 finish its reap loop and log lines before its memory is read.
    std::thread::sleep(Duration::from_secs(2));
    (left, waited)
}

/// A warm-up of [`WARMUP`] orphans first: PID 1 logs every orphan it reaps into its bounded log ring (2048 lines),
/// so the warm-up turns the ring over a few times and brings it (and the allocator under it) to its steady size. The baseline is PID 1 after that; the storm of `n`
/// must then leave it near where it was, and the second half of the storm must not grow it at all.
pub fn run(n: u32) -> ExitCode {
    let cold = pid1_rss_kib();
    if let Err(e) = storm(WARMUP) {
        eprintln!("testhelper: warm-up: {e}");
        return ExitCode::FAILURE;
    }
    let _ = settle();
    let before = pid1_rss_kib();
    let started = Instant::now();
    let seen = match storm(n) {
        Ok(seen) => seen,
        Err(e) => {
            eprintln!("testhelper: {e}");
            return ExitCode::FAILURE;
        }
    };
    let forked_ms = started.elapsed().as_millis();
    let (left, waited_ms) = settle();
    let after = pid1_rss_kib();
    let show = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    println!(
        "testhelper: storm orphans={n} warmup={WARMUP} forked_ms={forked_ms} zombies={} waited_ms={waited_ms} \
         pid1_rss_cold_kib={} pid1_rss_before_kib={} pid1_rss_half_kib={} pid1_rss_peak_kib={} \
         pid1_rss_after_kib={} end",
        left.len(),
        show(cold),
        show(before),
        show(seen.half),
        seen.peak,
        show(after),
    );
    if !left.is_empty() {
        eprintln!("testhelper: zombies left: {left:?}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
