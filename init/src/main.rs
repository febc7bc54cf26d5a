//! Keel's PID 1.

#[cfg(feature = "api")]
mod api;
mod boot;
mod clock;
mod cmdline;
mod config;
mod controller;
mod fsutil;
mod hostname;
mod install;
mod logfwd;
mod logging;
mod logging_ring;
mod machine_id;
mod metrics;
mod net;
mod oci;
mod panic;
mod power;
mod procfs;
mod reaper;
mod registry;
mod retry;
mod safe_fs;
mod services;
mod shutdown;
mod storage;
// Not wired into boot yet: the integrator calls time::rtc and spawns time::run.
mod time;
mod trust;
mod upgrade;

/// `tokio::spawn(make())`, with the future built in a stack frame of its own and boxed at once. A future built
/// inline sits in its caller's frame, and LTO inlines the boot's many start functions into one another: their
/// futures' stack slots add up (76 KiB in `config::run::start`, 64 KiB in `boot::run`), and `tokio::spawn` moves
/// a future through ~5 stack slots before it reaches the heap (a 13 KiB future: a 64 KiB frame). Every page of a
/// frame is touched on entry (stack probes) and the main thread's stack never shrinks: apart and boxed, a spawn
/// costs twice its future at most, only the largest counts (`boot.memory` shows the main stack).
#[inline(never)]
pub fn spawn_apart<F>(make: impl FnOnce() -> F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Box::pin(make()))
}

/// The name `/usr/libexec/keel-demo` (a link to `/init` in the image) runs the demo workload instead of PID 1.
const DEMO_NAME: &str = "keel-demo";

fn main() {
    let exec_at = clock::uptime();
    // Before anything PID 1 does: called by the demo's name, this process is a service, not the init.
    if std::env::args_os().next().is_some_and(|a| std::path::Path::new(&a).file_name() == Some(DEMO_NAME.as_ref())) {
        std::process::exit(if keel_demo::main() == std::process::ExitCode::SUCCESS { 0 } else { 1 });
    }
    logging::init(log::LevelFilter::Info);
    if nix::unistd::getpid().as_raw() != 1 {
        // Everything below mounts filesystems and reboots the machine: never do that to a host by accident.
        eprintln!("keel-init: refusing to run as pid {} (it is the node's PID 1)", nix::unistd::getpid());
        std::process::exit(2);
    }
    // Before any thread exists: services (even as root without CAP_KILL) cannot signal PID 1.
    if let Err(e) = services::init_uid::protect_pid1() {
        log::error!("boot.protect_pid1_failed error={e}");
    }
    panic::install();
    // The one thread looks for timers and I/O every 8 task polls instead of tokio's 61: when a config arrives,
    // every kind's first pass is ready at once, and 61 polls took ~250 ms on one slow vCPU (QEMU TCG), during which
    // the network's pass waited for a 5 ms timer and its netlink dump for the socket. Medians of 8 alternating
    // boots there: DHCP bound → net.ready 262 → 242 ms, ready → converged 671 → 618 ms. A look is one epoll_wait
    // that returns at once.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().event_interval(8).build();
    match runtime {
        Ok(rt) => rt.block_on(boot::run(exec_at)),
        Err(e) => {
            logging::emergency(&format!("boot.runtime_failed error={}", logging::q(&e.to_string())));
            panic::fail_safe()
        }
    }
}
