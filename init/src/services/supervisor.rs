//! One task per service definition: wait for what it starts after, start it, watch it, restart it by its policy
//! with backoff, and stop it on request (stop signal, stop timeout, then SIGKILL to its whole cgroup).

use super::artifact::{self, Verified};
use super::backoff::{Backoff, Timing};
use super::cgroup::{self, Cgroups};
use super::output;
use super::spawn;
use super::status::{ServiceStatus, ServicesStatus, State};
use crate::logging::q;
use crate::logging_ring::Stream;
use crate::reaper::{Exit, Reaper};
use keel_config::model::{Image, Program, Restart, Service};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What every supervisor shares.
pub struct Ctx {
    pub reaper: Reaper,
    pub cgroups: Cgroups,
    pub artifacts: artifact::Store,
    /// Where image services' stage directories are made.
    pub containers: PathBuf,
    pub timing: Timing,
    pub last_cap: u32,
    pub status: watch::Sender<ServicesStatus>,
    pub deps: super::deps::Deps,
}

impl Ctx {
    /// Changes one service's status (if it is still listed) and recomputes convergence.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut ServiceStatus)) {
        self.status.send_modify(|all| {
            if let Some(s) = all.services.get_mut(name) {
                f(s);
            }
            all.settle();
        });
    }

    fn enter(&self, name: &str, state: State, reason: Option<String>) {
        self.update(name, |s| {
            s.state = state;
            s.since = crate::clock::uptime();
            s.reason = reason;
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Removed,
    Changed,
    Shutdown,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::Removed => "removed",
            StopReason::Changed => "changed",
            StopReason::Shutdown => "shutdown",
        }
    }
}

/// A running supervisor.
pub struct Handle {
    pub def: Arc<Service>,
    stop: watch::Sender<Option<StopReason>>,
    task: JoinHandle<()>,
}

/// How long a process may take to go after SIGKILL before it is reported stuck (uninterruptible sleep: a hung
/// disk or NFS server). Its supervisor keeps waiting for it; nobody else does.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

impl Handle {
    pub fn request_stop(&self, reason: StopReason) {
        self.stop.send_replace(Some(reason));
    }

    /// The longest a stop can take when the process dies as it should: its stop timeout, SIGKILL's grace, and
    /// a margin for the cgroup's removal.
    pub fn stop_bound(&self) -> Duration {
        Duration::from_secs(u64::from(self.def.stop_timeout_s)) + KILL_GRACE + Duration::from_secs(3)
    }

    /// Waits until the service is stopped (after [`Handle::request_stop`]), at most `limit`; past it, the
    /// supervisor's task (still waiting for its process) is handed back.
    pub async fn join_within(mut self, limit: Duration) -> Result<(), JoinHandle<()>> {
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.task),
        }
    }
}

/// `applied`: when the config with this definition reached the services task.
pub fn start(ctx: Arc<Ctx>, def: Arc<Service>, applied: Instant) -> Handle {
    let (stop, stop_rx) = watch::channel(None);
    let task = crate::spawn_apart({
        let def = def.clone();
        move || supervise(ctx, def, stop_rx, applied)
    });
    Handle { def, stop, task }
}

/// How one run ended.
enum Ended {
    /// Exited on its own after running for the duration.
    Exited(Option<Exit>, Duration),
    /// Could not be started.
    StartFailed(String),
    /// Stopped on request.
    Stopped,
}

async fn stop_requested(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    match stop.wait_for(Option::is_some).await {
        Ok(r) => r.unwrap_or(StopReason::Shutdown),
        // The manager is gone: nothing will run this service any more.
        Err(_) => StopReason::Shutdown,
    }
}

async fn supervise(ctx: Arc<Ctx>, def: Arc<Service>, mut stop: watch::Receiver<Option<StopReason>>, applied: Instant) {
    let name = def.name.as_str();
    if !wait_for_dependencies(&ctx, &def, &mut stop).await {
        ctx.enter(name, State::Stopped, None);
        return;
    }
    let mut backoff = Backoff::new(&ctx.timing);
    let mut fetched = Fetched::default();
    let mut first = true;
    // Only the first start is timed from the config's apply; restarts are timed by the backoff.
    let mut applied = Some(applied);
    loop {
        if !first {
            ctx.update(name, |s| s.restarts += 1);
        }
        first = false;
        ctx.enter(name, State::Starting, None);
        let ended = run_once(&ctx, &def, &mut fetched, &mut stop, applied.take()).await;
        let (ran, reason) = match ended {
            Ended::Stopped => {
                ctx.enter(name, State::Stopped, None);
                return;
            }
            Ended::Exited(exit, ran) => {
                let again = match def.restart {
                    Restart::Always => true,
                    Restart::Never => false,
                    Restart::OnFailure => exit != Some(Exit::Code(0)),
                };
                if !again {
                    let state = if exit == Some(Exit::Code(0)) { State::Stopped } else { State::Failed };
                    log::info!("service.done name={name} state={state}");
                    ctx.enter(name, state, None);
                    return;
                }
                let shown = exit.map_or_else(|| "unknown".to_string(), |e| e.to_string());
                (Some(ran), format!("last run ended {shown} after {} ms", ran.as_millis()))
            }
            Ended::StartFailed(error) => {
                log::error!("service.start_failed name={name} error={}", q(&error));
                if def.restart == Restart::Never {
                    ctx.enter(name, State::Failed, Some(error));
                    return;
                }
                (None, error)
            }
        };
        let delay = backoff.after_run(ran, &ctx.timing);
        let state = if backoff.crash_loop(&ctx.timing) { State::CrashLoop } else { State::Backoff };
        log::warn!("service.restart_in name={name} delay_ms={} state={state}", delay.as_millis());
        ctx.enter(name, state, Some(reason));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_requested(&mut stop) => {
                ctx.enter(name, State::Stopped, None);
                return;
            }
        }
    }
}

/// Waits for everything in `after`; false when a stop came first.
async fn wait_for_dependencies(ctx: &Ctx, def: &Service, stop: &mut watch::Receiver<Option<StopReason>>) -> bool {
    let name = def.name.as_str();
    for dep in &def.after {
        let ready = super::deps::ready(dep, &ctx.deps, &ctx.status);
        tokio::pin!(ready);
        let already = futures_util::FutureExt::now_or_never(&mut ready);
        if already == Some(true) {
            continue;
        }
        log::info!("service.blocked name={name} waiting={dep}");
        ctx.enter(name, State::Blocked, Some(format!("waiting for {dep}")));
        let satisfied = match already {
            Some(false) => false,
            _ => tokio::select! {
                ok = &mut ready => ok,
                _ = stop_requested(stop) => return false,
            },
        };
        if !satisfied {
            // The source went away (no network controller): it will never be ready; wait for a stop.
            stop_requested(stop).await;
            return false;
        }
    }
    true
}

/// What one run starts: a program on the node's root, or an image's process on the image's root.
enum Prepared {
    Exec(String),
    Image { run: Box<super::image::Resolved>, rootfs: PathBuf, binds: Vec<String>, digest: String },
}

/// What a supervisor keeps between runs of one definition: the verified artifact, the pulled image.
#[derive(Default)]
struct Fetched {
    verified: Option<Verified>,
    pulled: Option<crate::oci::Pulled>,
}

/// Pulls an image service's image (once per definition; `ensure` also returns at once for a stored image),
/// showing its progress in status. A failure's reason starts with the pull error's code.
async fn pull(ctx: &Ctx, def: &Service, image: &Image) -> Result<crate::oci::Pulled, String> {
    let name = def.name.as_str();
    let reference = keel_oci::Reference::parse(&image.reference).map_err(|e| e.to_string())?;
    let spec = crate::oci::PullSpec {
        reference,
        plain_http: image.registry.http,
        token: image.registry.token.clone(),
        ca_pem: image.registry.ca.clone(),
    };
    ctx.enter(name, State::Pulling, None);
    ctx.update(name, |s| s.pull_percent = Some(0));
    let (progress, mut seen) = watch::channel(crate::oci::PullProgress::default());
    let started = Instant::now();
    log::info!("service.pull name={name} image={}", q(&image.reference));
    let ensure = crate::oci::ensure(&spec, &progress);
    tokio::pin!(ensure);
    let result = loop {
        tokio::select! {
            r = &mut ensure => break r,
            Ok(()) = seen.changed() => {
                let percent = seen.borrow_and_update().percent();
                ctx.update(name, |s| s.pull_percent = Some(percent));
            }
        }
    };
    ctx.update(name, |s| s.pull_percent = None);
    match result {
        Ok(pulled) => {
            log::info!(
                "service.pulled name={name} image={} manifest={} ms={}",
                q(&image.reference),
                pulled.manifest_digest,
                started.elapsed().as_millis()
            );
            ctx.update(name, |s| s.image = Some(pulled.manifest_digest.clone()));
            Ok(pulled)
        }
        Err(e) => {
            log::error!("service.pull_failed name={name} reason={} error={}", e.code(), q(&e.to_string()));
            Err(format!("{}: {e}", e.code()))
        }
    }
}

/// The program to execute: a path in the image, the verified artifact (fetched once per definition), or an
/// image's process (pulled once per definition).
async fn program(ctx: &Ctx, def: &Service, fetched: &mut Fetched) -> Result<Prepared, String> {
    let verified = &mut fetched.verified;
    match &def.program {
        Program::Path(path) => Ok(Prepared::Exec(path.clone())),
        Program::Image(image) => {
            if fetched.pulled.is_none() {
                fetched.pulled = Some(pull(ctx, def, image).await?);
            }
            let pulled = fetched.pulled.as_ref().ok_or_else(|| "image missing".to_string())?;
            let run = super::image::resolve(def, image, &pulled.config)?;
            Ok(Prepared::Image {
                run: Box::new(run),
                rootfs: pulled.rootfs.clone(),
                binds: image.binds.clone(),
                digest: pulled.manifest_digest.clone(),
            })
        }
        Program::Artifact { url, sha256 } => {
            if verified.is_none() {
                let v = ctx.artifacts.get(&def.name, url, sha256).await.map_err(|e| {
                    log::error!("artifact.refused name={} reason={} error={}", def.name, e.code(), q(&e.to_string()));
                    e.to_string()
                })?;
                ctx.update(&def.name, |s| s.artifact = Some(v.sha256.clone()));
                *verified = Some(v);
            }
            verified.as_ref().map(Verified::exec_path).map(Prepared::Exec).ok_or_else(|| "artifact missing".to_string())
        }
    }
}

async fn run_once(
    ctx: &Ctx,
    def: &Service,
    fetched: &mut Fetched,
    stop: &mut watch::Receiver<Option<StopReason>>,
    applied: Option<Instant>,
) -> Ended {
    let name = def.name.as_str();
    let program = tokio::select! {
        p = program(ctx, def, fetched) => p,
        _ = stop_requested(stop) => return Ended::Stopped,
    };
    let program = match program {
        Ok(p) => p,
        Err(e) => return Ended::StartFailed(e),
    };
    let preparing = Instant::now();
    let cg = match ctx.cgroups.prepare(name, &def.cgroup) {
        Ok(cg) => cg,
        Err(e) => {
            cleanup(&ctx.cgroups.path(name), None).await;
            return Ended::StartFailed(e.to_string());
        }
    };
    let spawning = Instant::now();
    let (launched, stage) = match &program {
        Prepared::Exec(path) => (spawn::spawn(&ctx.reaper, def, path, ctx.last_cap, Some(&cg)), None),
        Prepared::Image { run, rootfs, binds, .. } => {
            let base = &ctx.containers;
            let start = super::namespaced::Start { run, rootfs, binds, stage_base: base };
            match super::namespaced::spawn(&ctx.reaper, def, &start, ctx.last_cap, Some(&cg)) {
                Ok((l, stage)) => (Ok(l), Some(stage)),
                Err(e) => (Err(e), Some(base.join(name))),
            }
        }
    };
    let cg_path = cg.path.clone();
    drop(cg);
    let launched = match launched {
        Ok(l) => l,
        Err(e) => {
            cleanup(&cg_path, stage.as_deref()).await;
            return Ended::StartFailed(e.to_string());
        }
    };
    let (uid, gid, shown) = match &program {
        Prepared::Exec(path) => (def.uid, def.gid, fetched.verified.as_ref().map_or(path.as_str(), |v| &v.sha256)),
        Prepared::Image { run, digest, .. } => (run.uid, run.gid, digest.as_str()),
    };
    let started = Instant::now();
    let pid = launched.child.pid;
    let keep = super::caps::mask(&def.capabilities).unwrap_or(0);
    // From the config reaching the services task to the program executing (the spawn returns after the exec),
    // and two parts of it: preparing the cgroup, and fork to exec.
    let apply_ms = applied
        .map_or(String::new(), |at| format!(" apply_ms={}", crate::clock::ms(started.saturating_duration_since(at))));
    log::info!(
        "service.start name={name} pid={pid} uid={uid} gid={gid} caps={} cgroup={} program={}{apply_ms} cgroup_ms={} \
         spawn_ms={} sandbox_ms={}",
        super::caps::names(keep),
        cg_path.display(),
        q(shown),
        crate::clock::ms(spawning.saturating_duration_since(preparing)),
        crate::clock::ms(started.saturating_duration_since(spawning)),
        launched.sandbox_us.map_or("-".to_string(), |us| format!("{:.3}", us as f64 / 1000.0)),
    );
    let tag: Arc<str> = Arc::from(name);
    tokio::spawn(output::pump(tag.clone(), Stream::Stdout, def.log_level, launched.stdout));
    tokio::spawn(output::pump(tag, Stream::Stderr, def.log_level, launched.stderr));
    ctx.update(name, |s| {
        s.state = State::Running;
        s.pid = Some(pid);
        s.since = crate::clock::uptime();
        s.reason = None;
    });

    let wait = launched.child.wait();
    tokio::pin!(wait);
    let ended = tokio::select! {
        exit = &mut wait => {
            let ran = started.elapsed();
            let level = if exit == Some(Exit::Code(0)) { log::Level::Info } else { log::Level::Warn };
            log::log!(level, "service.exit name={name} pid={pid} status={} ran_ms={}", show(exit), ran.as_millis());
            ctx.update(name, |s| s.last_exit = exit);
            Ended::Exited(exit, ran)
        }
        reason = stop_requested(stop) => {
            let exit = stop_process(ctx, def, pid, &cg_path, reason, &mut wait).await;
            ctx.update(name, |s| s.last_exit = exit);
            Ended::Stopped
        }
    };
    ctx.update(name, |s| s.pid = None);
    cleanup(&cg_path, stage.as_deref()).await;
    ended
}

/// Stop signal, up to the stop timeout, then SIGKILL for everything in the service's cgroup.
async fn stop_process(
    ctx: &Ctx,
    def: &Service,
    pid: i32,
    cg_path: &std::path::Path,
    reason: StopReason,
    wait: &mut (impl std::future::Future<Output = Option<Exit>> + Unpin),
) -> Option<Exit> {
    let name = def.name.as_str();
    let signal = def.stop_signal.parse::<Signal>().unwrap_or(Signal::SIGTERM);
    let timeout = Duration::from_secs(u64::from(def.stop_timeout_s));
    log::info!(
        "service.stop name={name} pid={pid} signal={signal} timeout_s={} reason={}",
        timeout.as_secs(),
        reason.as_str()
    );
    ctx.enter(name, State::Stopping, Some(format!("stopping: {}", reason.as_str())));
    let asked = Instant::now();
    let _ = kill(Pid::from_raw(pid), signal);
    let exit = match tokio::time::timeout(timeout, &mut *wait).await {
        Ok(exit) => exit,
        Err(_) => {
            log::warn!("service.kill name={name} pid={pid} after_s={} reason=stop_timeout", timeout.as_secs());
            cgroup::kill(cg_path);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            match tokio::time::timeout(KILL_GRACE, &mut *wait).await {
                Ok(exit) => exit,
                Err(_) => {
                    let why = "did not exit after SIGKILL (uninterruptible sleep?); waiting for it";
                    log::error!(
                        "service.stuck name={name} pid={pid} after_kill_s={} reason={}",
                        KILL_GRACE.as_secs(),
                        q(why)
                    );
                    ctx.enter(name, State::Stopping, Some(why.to_string()));
                    wait.await
                }
            }
        }
    };
    log::info!("service.stopped name={name} pid={pid} status={} ms={}", show(exit), asked.elapsed().as_millis());
    exit
}

fn show(exit: Option<Exit>) -> String {
    exit.map_or_else(|| "unknown".to_string(), |e| e.to_string())
}

/// After the main process is gone: kill what it left in its cgroup and remove the group, and an image
/// service's stage directory (its mounts lived only in the service's namespace).
async fn cleanup(path: &std::path::Path, stage: Option<&std::path::Path>) {
    if let Some(stage) = stage {
        let stage = stage.to_path_buf();
        let _ = crate::fsutil::off_loop("container stage", move || std::fs::remove_dir_all(stage)).await;
    }
    cgroup::kill(path);
    let path: PathBuf = path.to_path_buf();
    if let Err(e) = cgroup::remove(&path, Duration::from_secs(2)).await {
        log::warn!("service.cgroup_remove_failed path={} error={}", path.display(), q(&e.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_from_the_config_are_known_to_nix() {
        for name in keel_config::model::STOP_SIGNALS {
            assert!(name.parse::<Signal>().is_ok(), "{name}");
        }
    }
}
