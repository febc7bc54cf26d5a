//! `kill-service NAME ROUNDS`: SIGKILLs the main process of the Keel service NAME (found in its cgroup,
//! `/sys/fs/cgroup/keel.services/NAME/cgroup.procs`) ROUNDS times, each time waiting for the supervisor to start a
//! new one. It needs no privilege beyond running as the service's uid, so it is just another service: no kill
//! backdoor in the node's API.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const ROUND_TIMEOUT: Duration = Duration::from_secs(180);

fn main_pid(name: &str) -> Option<i32> {
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/keel.services/{name}/cgroup.procs")).ok()?;
    procs.lines().next()?.trim().parse().ok()
}

pub fn run(name: &str, rounds: u32) -> ExitCode {
    let mut last: Option<i32> = None;
    for round in 1..=rounds {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let killed = loop {
            if let Some(pid) = main_pid(name).filter(|p| Some(*p) != last) {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) => break pid,
                    // Still entering its identity (uid 0 for a moment), or gone already: look again.
                    Err(Errno::EPERM) | Err(Errno::ESRCH) => {}
                    Err(e) => {
                        eprintln!("testhelper: kill {pid} failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if Instant::now() > deadline {
                eprintln!("testhelper: no new process of service {name} within {}s", ROUND_TIMEOUT.as_secs());
                return ExitCode::FAILURE;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        println!("testhelper: killed service={name} pid={killed} round={round} signal=9");
        last = Some(killed);
    }
    ExitCode::SUCCESS
}
