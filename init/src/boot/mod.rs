//! The boot sequence, phase by phase, each marked by a log line stamped with the time since kernel start.

pub mod console;
pub mod mounts;

use crate::cmdline::{Settings, TestHook};
use crate::machine_id::MachineId;
use crate::reaper::Reaper;
use crate::{clock, logging, power, procfs, shutdown};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What the early phases found out about the node.
pub struct Node {
    pub settings: Settings,
    pub machine_id: MachineId,
    pub hostname: String,
    /// The clock's state after the boot-time RTC read.
    pub time: crate::time::TimeStatus,
}

/// Mounts, console, logging, command line, identity, read-only root. Synchronous and short: this runs before
/// anything else exists, and none of it may stop the boot.
pub fn early(exec_at: Duration) -> Node {
    let mut mounted = 0;
    let mut already = 0;
    let mut failed = Vec::new();
    // efivarfs last, and only when /sys (mounted by then) shows UEFI firmware.
    let efi = || std::path::Path::new("/sys/firmware/efi").exists().then_some(&mounts::EFIVARS);
    for m in mounts::EARLY.iter().map(Some).chain([None]).filter_map(|m| m.or_else(efi)) {
        match mounts::mount_early(m) {
            Ok(mounts::Outcome::Mounted) => mounted += 1,
            Ok(mounts::Outcome::AlreadyMounted) => already += 1,
            Err(e) => failed.push(e),
        }
    }
    // Without this the kernel rate-limits our lines on /dev/kmsg.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    let console = console::attach();
    logging::open_sinks();
    log::info!(
        "boot.start version={} exec_ms={} uptime_ms={}",
        env!("CARGO_PKG_VERSION"),
        clock::ms(exec_at),
        clock::ms(clock::uptime())
    );
    if let Err(e) = console {
        log::error!("boot.console_failed error={e}");
    }
    for e in &failed {
        log::error!("boot.mount_failed target={} fstype={} error={}", e.target, e.fstype, e.source);
    }
    log::info!(
        "boot.mounts mounted={mounted} already={already} failed={} uptime_ms={}",
        failed.len(),
        clock::ms(clock::uptime())
    );

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (settings, warnings) = Settings::from_cmdline(&cmdline);
    log::set_max_level(settings.log_level);
    crate::panic::set_policy(settings.panic, settings.panic_delay);
    for w in &warnings {
        log::warn!("{w}");
    }
    log::info!("boot.cmdline warnings={} uptime_ms={}", warnings.len(), clock::ms(clock::uptime()));

    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate hard reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        log::warn!("boot.cad_failed error={e}");
    }

    let machine_id = MachineId::detect();
    let hostname = settings.hostname.clone().unwrap_or_else(|| machine_id.default_hostname());
    if let Err(e) = crate::hostname::converge(&hostname) {
        log::error!("boot.hostname_failed hostname={hostname} error={e}");
    }
    let _ = std::fs::create_dir_all("/run/keel");
    let _ = std::fs::write("/run/keel/machine-id", format!("{}\n", machine_id.as_str()));
    log::info!(
        "boot.identity machine_id={} source={} hostname={hostname} uptime_ms={}",
        machine_id.as_str(),
        machine_id.source,
        clock::ms(clock::uptime())
    );

    crate::trust::secureboot::log_boot();
    // The rollback floor's time as the UEFI variable holds it (the state volume's part follows once mounted).
    crate::trust::clamp_clock(&crate::trust::floor::current());

    // The kernel does not set the clock from the RTC (no RTC_HCTOSYS): PID 1 does, forward only.
    let rtc = crate::time::rtc::set_system_clock_from_rtc(std::path::Path::new(crate::time::rtc::DEVICE));
    if let Err(e) = &rtc {
        log::warn!("time.rtc_failed error={}", logging::q(&e.to_string()));
    }

    match mounts::remount_root_readonly() {
        Ok(()) => log::info!("boot.rootfs mode=ro uptime_ms={}", clock::ms(clock::uptime())),
        Err(e) => log::error!("boot.rootfs_ro_failed error={e}"),
    }
    Node { settings, machine_id, hostname, time: crate::time::TimeStatus::after_rtc(&rtc) }
}

/// Everything after the early phases: the reap loop, shutdown triggers, the ready line, and then waiting for
/// the one request that ends this boot.
pub async fn run(exec_at: Duration) -> ! {
    crate::logfwd::install();
    let mut node = early(exec_at);
    crate::logfwd::start_kernel_reader();
    let reaper = Reaper::default();
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("boot.sigchld_failed error={e}");
            None
        }
    };
    let reap_loop = {
        let reaper = reaper.clone();
        async move {
            loop {
                for r in reaper.reap_all() {
                    if r.orphan {
                        log::info!("reap.orphan pid={} status={}", r.pid, r.exit);
                    }
                }
                match sigchld.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    // No SIGCHLD stream: fall back to polling so zombies still go away.
                    None => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
    };
    tokio::spawn(reap_loop);
    let (tx, mut requests) = mpsc::channel(8);
    power::watch_signals(tx.clone());
    let buttons = power::watch_power_button(tx.clone());

    let now = clock::uptime();
    crate::metrics::READY_UPTIME_US.store(now.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    crate::metrics::READY_INIT_US
        .store(now.saturating_sub(exec_at).as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    log::info!(
        "ready uptime_ms={} init_ms={} rss_kib={} machine_id={} hostname={} power_buttons={buttons}",
        clock::ms(now),
        clock::ms(now.saturating_sub(exec_at)),
        procfs::self_rss_kib(),
        node.machine_id.as_str(),
        node.hostname,
    );
    procfs::log_memory("ready", log::Level::Debug);

    // The persistent /var (when there is a state volume) before the config pipeline reads its last-known-good
    // and the API its TLS identity. Without an SMBIOS uuid the machine id is the one recorded there: then /var
    // comes first, so the network (the DHCP host name) starts with the id the node keeps.
    let id_on_disk = node.machine_id.source != crate::machine_id::Source::Smbios;
    let mut state = None;
    if id_on_disk {
        state = Some(mount_state_and_settle_id(&mut node, &reaper).await);
    }
    // PID 1 itself is ready; the network and the clock converge from here, each reporting its own readiness.
    let (net, boot_network) = crate::net::start(&node.settings, node.machine_id.default_hostname(), exec_at);
    let time = start_time_sync(&node, net.as_ref().map(|n| n.status.clone()));
    let state = match state {
        Some(state) => state,
        None => mount_state_and_settle_id(&mut node, &reaper).await,
    };
    // The network's first pass before the config pipeline, the API's identity and the services start: their
    // blocking work competes for the CPU (on one vCPU it held the links back ~200 ms). Bounded: a slow netlink
    // never holds the boot.
    if let Some(n) = &net {
        let mut passes = n.controller.clone();
        let first = tokio::time::timeout(Duration::from_millis(500), passes.wait_for(|s| s.runs >= 1)).await;
        if first.is_err() {
            log::warn!("net.first_pass_slow waited_ms=500");
        }
    }
    let config = crate::config::run::start(
        &node.settings,
        node.machine_id.as_str().to_string(),
        boot_network,
        net.clone(),
        reaper.clone(),
        tx.clone(),
    );
    #[cfg(feature = "api")]
    {
        let parts = crate::api::Parts {
            machine_id: node.machine_id.as_str().to_string(),
            hostname: node.hostname.clone(),
            config: config.clone(),
            net: net.as_ref().map(|n| n.status.clone()),
            time,
            power: tx.clone(),
        };
        crate::spawn_apart(move || crate::api::start(parts));
    }
    crate::upgrade::trial::start(
        state.mode == crate::storage::state::StateMode::Volume,
        node.settings.upgrade_deadline,
        config.converged.clone(),
        tx.clone(),
    );
    let network_ready = match &net {
        Some(n) => crate::services::flag(n.status.clone(), |s: &crate::net::controller::NetStatus| s.ready),
        None => tokio::sync::watch::channel(false).1,
    };
    let (applied, power, spawner, id) =
        (config.applied.clone(), tx.clone(), reaper.clone(), node.machine_id.as_str().to_string());
    crate::spawn_apart(move || crate::install::run(applied, network_ready, power, spawner, id));

    if let Some(argv) = &node.settings.run {
        start_program(&reaper, argv);
    }
    if node.settings.test == Some(TestHook::Panic) {
        panic!("keel.test=panic: forced panic after ready");
    }
    if node.settings.test == Some(TestHook::Hang) {
        log::warn!("test.hang: PID 1 blocks its event loop for good");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    let grace = node.settings.shutdown_timeout;
    let request = match requests.recv().await {
        Some(r) => r,
        None => power::Request { action: power::Action::Reboot, reason: "no-request-source".into() },
    };
    shutdown::execute(request, grace, net.map(|n| n.events), Some(config.services.clone())).await
}

/// Mounts the state volume on /var and settles the machine id with it (see `machine_id`).
async fn mount_state_and_settle_id(node: &mut Node, reaper: &Reaper) -> crate::storage::state::StateStatus {
    let state = crate::storage::mount_state(&node.settings.state, reaper).await;
    crate::trust::after_state(&node.settings, &state);
    let persistent = state.mode == crate::storage::state::StateMode::Volume;
    let fixed = node.settings.hostname.is_some();
    crate::machine_id::adopt(&mut node.machine_id, &mut node.hostname, fixed, persistent);
    state
}

/// Keeps the clock right with SNTP, using the servers the network controller resolves (config, `ip=`,
/// `keel.ntp=`, or DHCP option 42).
fn start_time_sync(
    node: &Node,
    net: Option<tokio::sync::watch::Receiver<crate::net::controller::NetStatus>>,
) -> tokio::sync::watch::Receiver<crate::time::TimeStatus> {
    let (servers_tx, servers_rx) = tokio::sync::watch::channel(node.settings.ntp.clone());
    let (status_tx, status_rx) = tokio::sync::watch::channel(node.time.clone());
    if let Some(mut net) = net {
        tokio::spawn(async move {
            while net.changed().await.is_ok() {
                let ntp = net.borrow_and_update().ntp.clone();
                servers_tx.send_if_modified(|s| {
                    let changed = *s != ntp && !ntp.is_empty();
                    if changed {
                        *s = ntp;
                    }
                    changed
                });
            }
        });
    }
    crate::spawn_apart(move || crate::time::run(servers_rx, status_tx, crate::time::SystemClock::default()));
    status_rx
}

/// Starts `keel.run`'s program with the console as its output and logs how it ends.
fn start_program(reaper: &Reaper, argv: &[String]) {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).env_clear().env("PATH", "/usr/bin:/bin");
    match reaper.spawn(&mut cmd) {
        Ok(child) => {
            let pid = child.pid;
            log::info!("run.start pid={pid} argv={}", logging::q(&argv.join(" ")));
            tokio::spawn(async move {
                if let Some(exit) = child.wait().await {
                    log::info!("run.exit pid={pid} status={exit}");
                }
            });
        }
        Err(e) => log::error!("run.failed path={} error={}", argv[0], logging::q(&e.to_string())),
    }
}
