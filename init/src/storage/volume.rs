//! One volume, converged once: find its device (waiting for it to appear), observe it, plan (pure), and carry
//! the plan out step by step, reporting each phase. The state volume and the config volumes both go through here.

use super::blockdev;
use super::mount::{self, MountEntry, Options};
use super::plan::{self, DeviceView, DiskView, MountPoint, On, Plan, Step, Want};
use super::probe::Content;
use super::select::{self, Observed, Resolved, Selector, Target};
use super::sysfs::Roots;
use super::tools::{Fsck, Tools};
use crate::logging::q;
use crate::reaper::Reaper;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where storage looks and what it runs: the real system, or loop devices and temp dirs in tests.
#[derive(Clone)]
pub struct Env {
    pub roots: Roots,
    pub mountinfo: PathBuf,
    pub tools: Tools,
    /// Which disks (by kernel name) may be looked at at all.
    pub keep: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl Env {
    pub fn system() -> Env {
        Env {
            roots: Roots::system(),
            mountinfo: "/proc/self/mountinfo".into(),
            tools: Tools::system(),
            keep: Arc::new(|_| true),
        }
    }
}

/// A volume as storage needs it.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub name: String,
    pub selector: Selector,
    pub label: Option<String>,
    /// The GPT name of the partition Keel makes for it.
    pub partlabel: String,
    pub wipe: bool,
    pub mount: PathBuf,
    pub options: Options,
    pub over_tmpfs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Waiting(String),
    Blocked(String),
    Formatting,
    Mounted,
    Failed(String),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Waiting(r) => write!(f, "waiting: {r}"),
            Phase::Blocked(r) => write!(f, "blocked: {r}"),
            Phase::Formatting => f.write_str("formatting"),
            Phase::Mounted => f.write_str("mounted"),
            Phase::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// What a volume's status shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub name: String,
    pub selector: String,
    pub phase: Phase,
    pub device: Option<PathBuf>,
    /// Size of the device, in bytes.
    pub size: Option<u64>,
    pub fs: Option<String>,
    pub mount: PathBuf,
    /// Free space on the mounted filesystem, in bytes.
    pub free: Option<u64>,
    /// Made (partitioned and/or formatted) by this run.
    pub formatted: bool,
}

impl VolumeStatus {
    /// A volume named `name` on /var/lib/data in `phase`, nothing else known: for the tests of what reads it.
    #[cfg(test)]
    pub fn for_tests(name: &str, phase: Phase) -> VolumeStatus {
        VolumeStatus {
            name: name.into(),
            selector: "serial:disk1".into(),
            phase,
            device: None,
            size: None,
            fs: None,
            mount: "/var/lib/data".into(),
            free: None,
            formatted: false,
        }
    }

    fn new(spec: &VolumeSpec, phase: Phase) -> VolumeStatus {
        VolumeStatus {
            name: spec.name.clone(),
            selector: spec.selector.to_string(),
            phase,
            device: None,
            size: None,
            fs: None,
            mount: spec.mount.clone(),
            free: None,
            formatted: false,
        }
    }
}

const POLL: Duration = Duration::from_millis(200);
const PARTITION_APPEARS: Duration = Duration::from_secs(10);

fn device_view(content: &Content, read_only: bool, devno: Option<(u32, u32)>, table: &[MountEntry]) -> DeviceView {
    DeviceView { content: content.clone(), read_only, mounted: mount::mounted_at(table, devno) }
}

fn disk_view(o: &Observed, table: &[MountEntry]) -> DiskView {
    let ro = o.disk.read_only;
    DiskView {
        disk: device_view(&o.content, ro, o.disk.devno, table),
        held: o.disk.held,
        parts: o
            .parts
            .iter()
            .map(|(p, c)| (o.partlabel(p).map(str::to_string), device_view(c, ro, p.devno, table)))
            .collect(),
    }
}

/// Finds the volume's device, waiting up to `wait` (polling sysfs every 200 ms) for it to appear.
pub async fn find(env: &Env, spec: &VolumeSpec, wait: Duration) -> Result<(Vec<Observed>, Target), Phase> {
    let started = Instant::now();
    let mut said = false;
    loop {
        // Reading sysfs and every disk's first bytes: off the event loop (a slow or dying disk stalls reads).
        let (e, selector, partlabel) = (env.clone(), spec.selector.clone(), spec.partlabel.clone());
        let looked = crate::fsutil::off_loop("storage observe", move || {
            let inv = select::observe(&e.roots, &*e.keep);
            let resolved = select::resolve(&selector, &inv, &e.roots, &partlabel);
            (inv, resolved)
        })
        .await;
        let (inv, resolved) = match looked {
            Ok(l) => l,
            Err(e) => return Err(Phase::Failed(e)),
        };
        match resolved {
            Resolved::Found(t) => return Ok((inv, t)),
            Resolved::Ambiguous(why) => return Err(Phase::Blocked(why)),
            Resolved::NotFound(why) if started.elapsed() >= wait => return Err(Phase::Waiting(why)),
            Resolved::NotFound(why) => {
                if !said {
                    log::info!("storage.waiting name={} selector={} reason={}", spec.name, spec.selector, q(&why));
                    said = true;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Converges one volume: returns its status; `report` sees each phase as it is entered.
pub async fn converge(
    env: &Env,
    spec: &VolumeSpec,
    reaper: &Reaper,
    wait: Duration,
    report: &mut (dyn FnMut(&VolumeStatus) + Send),
) -> VolumeStatus {
    let (inv, target) = match find(env, spec, wait).await {
        Ok(found) => found,
        Err(phase) => return VolumeStatus::new(spec, phase),
    };
    let table = mount::read_mountinfo(&env.mountinfo);
    let (d, selected) = match target {
        Target::Disk(d) => (d, None),
        Target::Part(d, p) => (d, Some(p)),
    };
    let o = &inv[d];
    let view = disk_view(o, &table);
    let ours: Vec<Option<(u32, u32)>> =
        std::iter::once(o.disk.devno).chain(o.parts.iter().map(|(p, _)| p.devno)).collect();
    let at_mount = match mount::top_mount(&table, &spec.mount) {
        Some(m) if !ours.contains(&Some(m.devno)) => {
            MountPoint::Taken { source: m.source.clone(), fstype: m.fstype.clone() }
        }
        _ => MountPoint::Free,
    };
    let want = Want {
        label: spec.label.as_deref(),
        partlabel: &spec.partlabel,
        wipe: spec.wipe,
        read_only: spec.options.read_only(),
        mount: &spec.mount,
        over_tmpfs: spec.over_tmpfs,
    };
    let planned = plan::plan(&view, selected, &want, &at_mount);
    let mut status = VolumeStatus::new(spec, Phase::Formatting);
    let (on, steps) = match planned {
        Plan::Blocked(reason) => {
            // The caller logs it (once, not on every resync).
            status.device = Some(o.disk.node.clone());
            status.size = Some(o.disk.size);
            status.phase = Phase::Blocked(reason);
            return status;
        }
        Plan::Mounted(on) => (on, Vec::new()),
        Plan::Steps(on, steps) => (on, steps),
    };
    // The device the steps act on, and what is on it.
    let (mut node, mut size, content) = match on {
        On::Disk => (o.disk.node.clone(), o.disk.size, &o.content),
        On::Part(p) => (o.parts[p].0.node.clone(), o.parts[p].0.size, &o.parts[p].1),
    };
    let fs = match content {
        Content::Fs(f) => f.kind.name(),
        _ => "ext4",
    };
    status.device = Some(node.clone());
    status.size = Some(size);
    let started = Instant::now();
    for step in &steps {
        if matches!(step, Step::Partition | Step::Format { .. }) {
            report(&status);
        }
        let result: Result<(), String> = match step {
            Step::Partition => {
                log::info!(
                    "storage.partition name={} disk={} bytes={size} partlabel={}",
                    spec.name,
                    node.display(),
                    q(&spec.partlabel)
                );
                let (n, sector, label) = (node.clone(), o.disk.sector, spec.partlabel.clone());
                let written =
                    crate::fsutil::off_loop("write gpt", move || blockdev::write_gpt(&n, size, sector, &label))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                match written {
                    Ok(w) => match blockdev::announce(w, &env.roots, &o.disk.name, PARTITION_APPEARS).await {
                        Ok(part) => {
                            (node, size) = (part.node, part.size);
                            status.device = Some(node.clone());
                            status.size = Some(size);
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e),
                }
            }
            Step::Format { force } => {
                let label = spec.label.as_deref().unwrap_or("");
                log::info!(
                    "storage.format name={} device={} fs=ext4 label={} wipe={force}",
                    spec.name,
                    node.display(),
                    q(label)
                );
                let t = Instant::now();
                match env.tools.mkfs_ext4(reaper, &node, spec.label.as_deref(), *force).await {
                    Ok(()) => {
                        log::info!(
                            "storage.formatted name={} device={} ms={}",
                            spec.name,
                            node.display(),
                            crate::clock::ms(t.elapsed())
                        );
                        status.formatted = true;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Step::Fsck => {
                let t = Instant::now();
                match env.tools.fsck(reaper, &node).await {
                    Ok(result) => {
                        let result = if result == Fsck::Clean { "clean" } else { "repaired" };
                        log::info!(
                            "storage.fsck name={} device={} result={result} ms={}",
                            spec.name,
                            node.display(),
                            crate::clock::ms(t.elapsed())
                        );
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Step::Mount => {
                let (n, at, options) = (node.clone(), spec.mount.clone(), spec.options.clone());
                crate::fsutil::off_loop("mount", move || mount::mount_ext4(&n, &at, &options))
                    .await
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        if let Err(reason) = result {
            log::error!(
                "storage.failed name={} device={} step={step} reason={}",
                spec.name,
                node.display(),
                q(&reason)
            );
            status.phase = Phase::Failed(format!("{step}: {reason}"));
            return status;
        }
    }
    status.fs = Some(if status.formatted { "ext4" } else { fs }.to_string());
    status.free = mount::space(&spec.mount).map(|(_, free)| free);
    status.phase = Phase::Mounted;
    let verb = if steps.is_empty() { "storage.already_mounted" } else { "storage.mounted" };
    // The options as the kernel took them, so the console shows what the volume really got.
    let table = mount::read_mountinfo(&env.mountinfo);
    let options = mount::top_mount(&table, &spec.mount).map(|m| m.options.clone()).unwrap_or_else(|| "?".into());
    log::info!(
        "{verb} name={} device={} mount={} fs={} size={size} free={} formatted={} options={options} ms={}",
        spec.name,
        node.display(),
        spec.mount.display(),
        status.fs.as_deref().unwrap_or("?"),
        status.free.unwrap_or(0),
        status.formatted,
        crate::clock::ms(started.elapsed())
    );
    status
}
