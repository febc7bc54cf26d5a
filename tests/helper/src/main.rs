//! keel-testhelper: exercises PID 1 from inside the test image. Never a shell: each mode does one thing.
//!
//! - `orphans N`: forks N children that outlive this process (they become orphans of PID 1), prints each pid, exits.
//! - `signal-init SIG`: sends SIG (TERM, INT, PWR) to PID 1.
//! - `connect ADDR:PORT TOKEN`: connects over TCP (retrying for up to 60 s while the network comes up), sends
//!   TOKEN and this node's host name, and reports the outcome.
//! - `orphan-storm N`: N short-lived orphans in bounded batches; then no zombies, and PID 1's RSS ([`storm`]).
//! - `kill-service NAME ROUNDS`: SIGKILLs a service's main process ROUNDS times, from outside ([`kill`]).
//! - `exit CODE`: exits with CODE at once (a crash-looping service).
//! - `attack`: as a service, tries to take the node over (read its keys, write its records and disks, signal
//!   PID 1, write sysctls, leave its cgroup, mount); prints each refusal ([`attack`]).
//! - `container [PORT]`: as an image service, reports its pid, what of the node it sees and whether its root is
//!   writable; with PORT, serves that line over HTTP ([`container`]).
//! - `read-direct DEVICE`: reads DEVICE with O_DIRECT and reports when its reader is stuck in uninterruptible
//!   sleep (a disk the host throttles to nothing) ([`direct`]).
//! - `drift BOND MEMBER VLAN`: releases MEMBER from BOND and deletes VLAN by hand, then times their repair
//!   ([`links`]).
//! - `proxy LISTEN TARGET`, `connect-loop ADDR`: TCP relay and a steady stream of connects ([`relay`]).

mod attack;
mod container;
mod direct;
mod kill;
mod links;
mod relay;
mod storm;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use std::process::ExitCode;
use std::time::Duration;

fn orphans(n: u32) -> ExitCode {
    for i in 0..n {
        // SAFETY: single-threaded program; the child only sleeps and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                std::thread::sleep(Duration::from_millis(500));
                std::process::exit(i as i32);
            }
            Ok(ForkResult::Parent { child }) => println!("testhelper: orphan pid={child} code={i}"),
            Err(e) => {
                eprintln!("testhelper: fork failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn signal_init(name: &str) -> ExitCode {
    let signal = match name {
        "TERM" => Signal::SIGTERM,
        "INT" => Signal::SIGINT,
        "PWR" => Signal::SIGPWR,
        _ => {
            eprintln!("testhelper: unknown signal {name:?} (TERM, INT, PWR)");
            return ExitCode::from(2);
        }
    };
    // Give the console a moment so the test sees the ready line before the shutdown lines.
    std::thread::sleep(Duration::from_millis(200));
    match kill(Pid::from_raw(1), signal) {
        Ok(()) => {
            println!("testhelper: sent SIG{name} to pid 1");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("testhelper: kill(1, SIG{name}) failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn connect(addr: &str, token: &str) -> ExitCode {
    use std::io::Write;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                let _ = writeln!(s, "{token} {}", hostname.trim());
                println!("testhelper: connected to {addr}");
                return ExitCode::SUCCESS;
            }
            Err(e) if std::time::Instant::now() >= deadline => {
                eprintln!("testhelper: connect {addr} failed: {e}");
                links::dump_bonds();
                return ExitCode::FAILURE;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["orphans", n] => match n.parse() {
            Ok(n) => orphans(n),
            Err(_) => {
                eprintln!("testhelper: orphans takes a count, got {n:?}");
                ExitCode::from(2)
            }
        },
        ["orphan-storm", n] => match n.parse() {
            Ok(n) => storm::run(n),
            Err(_) => {
                eprintln!("testhelper: orphan-storm takes a count, got {n:?}");
                ExitCode::from(2)
            }
        },
        ["kill-service", name, rounds] => match rounds.parse() {
            Ok(r) => kill::run(name, r),
            Err(_) => {
                eprintln!("testhelper: kill-service takes a number of rounds, got {rounds:?}");
                ExitCode::from(2)
            }
        },
        ["exit", code] => match code.parse::<u8>() {
            Ok(c) => {
                println!("testhelper: exiting code={c}");
                ExitCode::from(c)
            }
            Err(_) => {
                eprintln!("testhelper: exit takes a code 0..255, got {code:?}");
                ExitCode::from(2)
            }
        },
        ["signal-init", sig] => signal_init(sig),
        ["attack"] => attack::run(),
        ["container"] => container::run(None),
        ["container", port] => container::run(Some(port)),
        ["connect", addr, token] => connect(addr, token),
        ["read-direct", device] => direct::run(device),
        ["drift", bond, member, vlan] => links::drift(bond, member, vlan),
        ["proxy", listen, target] => relay::proxy(listen, target),
        ["connect-loop", addr] => relay::connect_loop(addr),
        _ => {
            eprintln!(
                "usage: keel-testhelper orphans N | orphan-storm N | kill-service NAME ROUNDS | exit CODE | \
                 signal-init TERM|INT|PWR | connect ADDR:PORT TOKEN | attack | container [PORT] | \
                 read-direct DEVICE | drift BOND MEMBER VLAN | proxy LISTEN TARGET | connect-loop ADDR"
            );
            ExitCode::from(2)
        }
    }
}
