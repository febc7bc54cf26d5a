//! The config volumes (`[[storage.volume]]`): converged on every accepted config and every 30 s, each reporting
//! its phase (waiting / blocked / formatting / mounted / failed). A volume still waiting for its disk is looked
//! for every 200 ms during the first 30 s of a config. Volumes Keel mounted and the config no longer has are
//! synced and unmounted. Phase changes are logged once (`storage.volume name=… phase=…`).

use super::mount::{self, parse_options};
use super::volume::{self, Env, Phase, VolumeSpec, VolumeStatus};
use crate::controller::{self, ControllerStatus, ItemState};
use crate::logging::q;
use crate::reaper::Reaper;
use crate::services::ServicesStatus;
use keel_config::model::Volume;
use nix::mount::MsFlags;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const RESYNC: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);
const WAIT_FAST: Duration = Duration::from_secs(30);

/// The spec storage works from; an unreadable selector (validation makes that impossible) is the error.
pub fn spec(v: &Volume) -> Result<VolumeSpec, String> {
    let selector = v.device.parse().map_err(|e: keel_config::storage::SelectorError| e.0)?;
    let partlabel: String = v.label.as_deref().unwrap_or(&v.name).chars().take(36).collect();
    Ok(VolumeSpec {
        name: v.name.clone(),
        selector,
        label: v.label.clone(),
        partlabel,
        wipe: v.wipe,
        mount: PathBuf::from(&v.mount),
        options: parse_options(&v.options, MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
        over_tmpfs: false,
    })
}

/// What the controller publishes after each pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStatus {
    /// The config generation the volumes were converged for.
    pub generation: Option<u64>,
    pub volumes: Vec<VolumeStatus>,
}

impl StorageStatus {
    /// Every volume is mounted.
    pub fn converged(&self) -> bool {
        self.volumes.iter().all(|v| v.phase == Phase::Mounted)
    }
}

/// How long an unmount waits for the services of its config to be applied (their stops are bounded by their
/// stop timeouts; this is the backstop).
const RELEASE_WAIT: Duration = Duration::from_secs(300);

/// What the storage controller sees in one observation.
#[derive(Debug, Clone, Default)]
pub struct StorageObserved {
    pub generation: Option<u64>,
    /// Per desired volume (by name): its status when it is still mounted as last converged (no probe needed),
    /// else where its disk stands (`Waiting`/`Blocked`/`Failed` from finding it) or None (found: converge it).
    pub volumes: BTreeMap<String, Option<VolumeStatus>>,
    /// The volumes this controller mounted: name → mount point.
    pub mounted: BTreeMap<String, PathBuf>,
    /// The newest generation the services applied (their stops done).
    pub services_generation: Option<u64>,
    /// How long dropped volumes have waited for those services.
    pub release_waited: Duration,
}

#[derive(Debug)]
pub enum StorageOp {
    /// Find, partition, format, check and mount one volume (`volume::converge`).
    Converge(Volume),
    Unmount {
        name: String,
        at: PathBuf,
        forced: bool,
    },
}

impl std::fmt::Display for StorageOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageOp::Converge(v) => {
                write!(f, "op=converge name={} device={} mount={}", v.name, q(&v.device), v.mount)
            }
            StorageOp::Unmount { name, at, forced } => {
                write!(f, "op=unmount name={name} mount={} forced={forced}", at.display())
            }
        }
    }
}

fn item_state(phase: &Phase) -> ItemState {
    match phase {
        Phase::Mounted => ItemState::Converged,
        Phase::Waiting(r) => ItemState::Waiting(r.clone()),
        Phase::Formatting => ItemState::Waiting("formatting".into()),
        Phase::Blocked(r) => ItemState::Failed(format!("blocked: {r}")),
        Phase::Failed(r) => ItemState::Failed(r.clone()),
    }
}

/// Pure: unmount what the config dropped (innermost first, once the services of the config stopped, or forced
/// after [`RELEASE_WAIT`]), then converge every volume not mounted as desired.
pub fn plan(desired: &[Volume], o: &StorageObserved) -> controller::Plan<StorageOp> {
    let mut p = controller::Plan::default();
    let gone: Vec<(&String, &PathBuf)> = o
        .mounted
        .iter()
        .filter(|(name, at)| !desired.iter().any(|v| &&v.name == name && Path::new(&v.mount) == at.as_path()))
        .collect();
    let released = match o.generation {
        Some(g) => o.services_generation.is_some_and(|s| s >= g),
        None => true,
    };
    let forced = !released && o.release_waited >= RELEASE_WAIT;
    // Deepest mount first.
    let mut gone = gone;
    gone.sort_by_key(|(_, at)| std::cmp::Reverse(at.components().count()));
    let moving: Vec<&String> = gone.iter().map(|(name, _)| *name).collect();
    for (name, at) in gone {
        let item = format!("unmount {name}");
        if released || forced {
            p.op(item, StorageOp::Unmount { name: name.clone(), at: at.clone(), forced });
        } else {
            p.item(item, ItemState::Waiting("the services of this config are stopping".into()));
        }
    }
    for v in desired {
        if moving.contains(&&v.name) {
            // Its mount point changed: the old one is released first (the same device is mounted once).
            p.item(v.name.clone(), ItemState::Waiting("its previous mount point is released first".into()));
            continue;
        }
        match o.volumes.get(&v.name) {
            Some(Some(s)) => p.item(v.name.clone(), item_state(&s.phase)),
            _ => p.op(v.name.clone(), StorageOp::Converge(v.clone())),
        }
    }
    p
}

pub enum StorageEvent {
    /// The services' status changed (a dropped volume may be released now).
    Services,
}

/// The config volumes on the one runner.
pub struct Storage {
    env: Env,
    reaper: Reaper,
    services: watch::Receiver<ServicesStatus>,
    detail: watch::Sender<StorageStatus>,
    mounted: BTreeMap<String, PathBuf>,
    /// The last status of each volume, with the config it was converged for.
    last: BTreeMap<String, (Volume, VolumeStatus)>,
    last_phase: BTreeMap<String, Phase>,
    generation: Option<u64>,
    /// When the current config arrived (fast polling for a disk in its first 30 s).
    since: Instant,
    /// When dropped volumes started waiting for the services.
    releasing: Option<Instant>,
}

impl Storage {
    fn log_changed(&mut self, s: &VolumeStatus) {
        if self.last_phase.get(&s.name) != Some(&s.phase) {
            log_phase(s, self.generation.unwrap_or(0));
            self.last_phase.insert(s.name.clone(), s.phase.clone());
        }
    }
}

impl controller::Controller for Storage {
    const KIND: crate::registry::Kind = crate::registry::Kind::Storage;
    const AREA: &'static str = "storage";
    const RESYNC: Duration = RESYNC;
    const POLL: Duration = RESYNC;

    type Desired = Vec<Volume>;
    type Observed = StorageObserved;
    type Op = StorageOp;
    type Event = StorageEvent;

    fn poll(&self) -> Duration {
        if self.since.elapsed() < WAIT_FAST {
            POLL
        } else {
            RESYNC
        }
    }

    async fn observe(&mut self, target: &controller::Target<Vec<Volume>>) -> Result<StorageObserved, String> {
        if self.generation != target.generation {
            self.generation = target.generation;
            self.since = Instant::now();
        }
        // /proc/self/mountinfo is the kernel's memory: read in place.
        let table = mount::read_mountinfo(&self.env.mountinfo);
        let mut volumes = BTreeMap::new();
        for v in &target.desired {
            let mounted = self.last.get(&v.name).filter(|(was, s)| was == v && s.phase == Phase::Mounted);
            let still = mounted.and_then(|s| still_mounted(Some(s), v, &table));
            let seen = match still {
                Some(s) => Some(s),
                None => match spec(v) {
                    Err(e) => Some(failed(v, e)),
                    // Where its disk stands (sysfs and the disks' first bytes, read off the loop).
                    Ok(spec) => match volume::find(&self.env, &spec, Duration::ZERO).await {
                        Ok(_) => None,
                        Err(phase) => Some(VolumeStatus { phase, ..failed(v, String::new()) }),
                    },
                },
            };
            if let Some(s) = &seen {
                self.last.insert(v.name.clone(), (v.clone(), s.clone()));
                self.log_changed(s);
            }
            volumes.insert(v.name.clone(), seen);
        }
        let services_generation = self.services.borrow().generation;
        let gone = self.mounted.keys().any(|n| !target.desired.iter().any(|v| &v.name == n));
        let released = target.generation.is_none_or(|g| services_generation.is_some_and(|s| s >= g));
        if gone && !released {
            if self.releasing.is_none() {
                let names: Vec<&str> = self.mounted.keys().map(String::as_str).collect();
                log::info!("storage.unmount_waiting names={} for=services", names.join(","));
            }
            self.releasing.get_or_insert_with(Instant::now);
        } else {
            self.releasing = None;
        }
        Ok(StorageObserved {
            generation: target.generation,
            volumes,
            mounted: self.mounted.clone(),
            services_generation,
            release_waited: self.releasing.map_or(Duration::ZERO, |t| t.elapsed()),
        })
    }

    fn plan(desired: &Vec<Volume>, observed: &StorageObserved) -> controller::Plan<StorageOp> {
        plan(desired, observed)
    }

    async fn apply(&mut self, op: StorageOp, generation: Option<u64>) -> Result<(), String> {
        match op {
            StorageOp::Unmount { name, at, forced } => {
                if forced {
                    log::warn!(
                        "storage.unmount_forced after_s={} reason=\"services not applied\"",
                        RELEASE_WAIT.as_secs()
                    );
                }
                unmount_off_loop(at.clone()).await.map_err(|e| format!("unmount {}: {e}", at.display()))?;
                log::info!(
                    "storage.unmounted name={name} mount={} generation={}",
                    at.display(),
                    generation.unwrap_or(0)
                );
                self.mounted.remove(&name);
                self.last.remove(&name);
                self.last_phase.remove(&name);
                Ok(())
            }
            StorageOp::Converge(v) => {
                let s = match spec(&v) {
                    Ok(spec) => {
                        let g = generation.unwrap_or(0);
                        let mut formatting = |s: &VolumeStatus| log_phase(s, g);
                        volume::converge(&self.env, &spec, &self.reaper, Duration::ZERO, &mut formatting).await
                    }
                    Err(e) => failed(&v, e),
                };
                if s.phase == Phase::Mounted {
                    self.mounted.insert(s.name.clone(), s.mount.clone());
                }
                self.log_changed(&s);
                self.last.insert(v.name.clone(), (v, s.clone()));
                match &s.phase {
                    Phase::Blocked(r) => Err(format!("blocked: {r}")),
                    Phase::Failed(r) => Err(r.clone()),
                    // Mounted, or its disk went away on the way: the next round sees which.
                    _ => Ok(()),
                }
            }
        }
    }

    async fn event(&mut self, _event: StorageEvent) -> controller::Wake {
        // Only a volume waiting to be released cares about the services.
        if self.releasing.is_some() {
            controller::Wake::Now
        } else {
            controller::Wake::Later
        }
    }

    /// A volume mounted again after it was unmounted behind the node's back is a repair; unmounts follow the
    /// config.
    fn repairs(op: &StorageOp) -> bool {
        matches!(op, StorageOp::Converge(_))
    }

    fn passed(&mut self, target: &controller::Target<Vec<Volume>>, _status: &ControllerStatus) {
        let volumes = target
            .desired
            .iter()
            .filter_map(|v| self.last.get(&v.name).filter(|(was, _)| was == v).map(|(_, s)| s.clone()))
            .collect();
        self.detail.send_replace(StorageStatus { generation: target.generation, volumes });
    }
}

fn failed(v: &Volume, why: String) -> VolumeStatus {
    VolumeStatus {
        name: v.name.clone(),
        selector: v.device.clone(),
        phase: Phase::Failed(why),
        device: None,
        size: None,
        fs: None,
        mount: PathBuf::from(&v.mount),
        free: None,
        formatted: false,
    }
}

/// [`mount::unmount`] on a blocking thread: it syncs, and a busy disk must not stall PID 1's event loop.
async fn unmount_off_loop(at: PathBuf) -> Result<(), String> {
    crate::fsutil::off_loop("unmount", move || mount::unmount(&at)).await?.map_err(|e| e.to_string())
}

/// Starts the controller; `services` is the services' status, read to unmount a dropped volume only after the
/// services that used it have stopped; the volumes' detail status goes to `detail` (the services read it).
pub fn start(
    reaper: Reaper,
    services: watch::Receiver<ServicesStatus>,
    detail: watch::Sender<StorageStatus>,
) -> (controller::DesiredTx<Vec<Volume>>, watch::Receiver<ControllerStatus>) {
    let (events, inbox) = tokio::sync::mpsc::channel(16);
    let mut changes = services.clone();
    crate::spawn_apart(move || async move {
        while changes.changed().await.is_ok() {
            // A full inbox already holds a wake-up.
            let _ = events.try_send(StorageEvent::Services);
        }
    });
    let storage = Storage {
        env: Env::system(),
        reaper,
        services,
        detail,
        mounted: BTreeMap::new(),
        last: BTreeMap::new(),
        last_phase: BTreeMap::new(),
        generation: None,
        since: Instant::now(),
        releasing: None,
    };
    controller::runner::start_with(storage, inbox)
}

/// The last status again (with fresh free space) when the volume's config is unchanged and its device is still
/// what is mounted on its mount point.
fn still_mounted(
    settled: Option<&(Volume, VolumeStatus)>,
    v: &Volume,
    table: &[mount::MountEntry],
) -> Option<VolumeStatus> {
    let (was, status) = settled?;
    let top = mount::top_mount(table, &status.mount)?;
    if was != v || Some(PathBuf::from(&top.source)) != status.device {
        return None;
    }
    let mut s = status.clone();
    s.free = mount::space(&s.mount).map(|(_, free)| free);
    Some(s)
}

fn log_phase(s: &VolumeStatus, generation: u64) {
    let device = s.device.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "-".into());
    let base =
        format!("storage.volume name={} generation={generation} device={device} mount={}", s.name, s.mount.display());
    match &s.phase {
        Phase::Mounted => log::info!(
            "{base} phase=mounted fs={} size={} free={}",
            s.fs.as_deref().unwrap_or("?"),
            s.size.unwrap_or(0),
            s.free.unwrap_or(0)
        ),
        Phase::Waiting(r) => log::info!("{base} phase=waiting selector={} reason={}", s.selector, q(r)),
        Phase::Blocked(r) => log::warn!("{base} phase=blocked reason={}", q(r)),
        Phase::Failed(r) => log::error!("{base} phase=failed reason={}", q(r)),
        Phase::Formatting => log::info!("{base} phase=formatting"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::model::Filesystem;

    fn volume(label: Option<&str>) -> Volume {
        Volume {
            name: "a-rather-long-volume-name-for-a-gpt-partition-name".into(),
            device: "blank:>=1G".into(),
            fs: Filesystem::Ext4,
            mount: "/var/lib/data".into(),
            options: vec!["noatime".into(), "commit=30".into()],
            wipe: false,
            label: label.map(str::to_string),
        }
    }

    #[test]
    fn specs_from_config_volumes() {
        let s = spec(&volume(Some("DATA"))).unwrap();
        assert_eq!(s.selector.to_string(), "blank:>=1G");
        assert_eq!((s.label.as_deref(), s.partlabel.as_str()), (Some("DATA"), "DATA"));
        assert_eq!(s.options.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME);
        assert_eq!(s.options.data.as_deref(), Some("commit=30"));
        assert!(!s.over_tmpfs);
        // Without a label the partition is named after the volume, cut to GPT's 36 characters.
        assert_eq!(spec(&volume(None)).unwrap().partlabel, "a-rather-long-volume-name-for-a-gpt-");
        let bad = Volume { device: "sda".into(), ..volume(None) };
        assert!(spec(&bad).unwrap_err().contains("not a device selector"));
    }

    #[test]
    fn a_settled_volume_is_not_probed_again_while_it_stays_mounted() {
        let v = volume(Some("DATA"));
        let status = VolumeStatus {
            name: v.name.clone(),
            selector: v.device.clone(),
            phase: Phase::Mounted,
            device: Some("/dev/vdb1".into()),
            size: Some(1),
            fs: Some("ext4".into()),
            mount: "/var/lib/data".into(),
            free: None,
            formatted: false,
        };
        let table = mount::parse_mountinfo("41 30 254:17 / /var/lib/data rw - ext4 /dev/vdb1 rw\n");
        let settled = (v.clone(), status);
        assert!(still_mounted(Some(&settled), &v, &table).is_some());
        assert!(still_mounted(None, &v, &table).is_none());
        let changed = Volume { options: vec![], ..v.clone() };
        assert!(still_mounted(Some(&settled), &changed, &table).is_none(), "a changed config is converged again");
        let other = mount::parse_mountinfo("41 30 254:33 / /var/lib/data rw - ext4 /dev/vdc rw\n");
        assert!(still_mounted(Some(&settled), &v, &other).is_none(), "another device on the mount point");
        assert!(still_mounted(Some(&settled), &v, &[]).is_none(), "unmounted behind our back");
    }

    fn observed(generation: u64, services: u64, waited_s: u64) -> StorageObserved {
        let mounted = [("a", "/a"), ("b", "/a/b")].map(|(n, m)| (n.to_string(), PathBuf::from(m))).into();
        StorageObserved {
            generation: Some(generation),
            volumes: BTreeMap::new(),
            mounted,
            services_generation: Some(services),
            release_waited: Duration::from_secs(waited_s),
        }
    }

    fn shown(p: &controller::Plan<StorageOp>) -> Vec<String> {
        p.ops.iter().map(|(_, op)| op.to_string()).collect()
    }

    #[test]
    fn a_dropped_volume_is_unmounted_only_after_the_services_of_its_config_stopped() {
        // Generation 2 drops both volumes; its services (the volumes' users) are still at generation 1.
        let p = plan(&[], &observed(2, 1, 20));
        assert!(p.ops.is_empty(), "unmounted while generation 1's services still ran: {:?}", shown(&p));
        assert!(p.items.iter().all(|(_, s)| matches!(s, ItemState::Waiting(_))), "{:?}", p.items);
        // The services applied generation 2: their stops are done; innermost first.
        assert_eq!(
            shown(&plan(&[], &observed(2, 2, 20))),
            ["op=unmount name=b mount=/a/b forced=false", "op=unmount name=a mount=/a forced=false"]
        );
    }

    #[test]
    fn the_wait_for_services_is_bounded() {
        let p = plan(&[], &observed(3, 1, RELEASE_WAIT.as_secs()));
        assert_eq!(shown(&p), ["op=unmount name=b mount=/a/b forced=true", "op=unmount name=a mount=/a forced=true"]);
    }

    #[test]
    fn a_volume_mounted_as_desired_is_left_alone_and_the_others_are_converged() {
        let v = volume(Some("DATA"));
        let mut o = observed(2, 2, 0);
        o.mounted = [(v.name.clone(), PathBuf::from(&v.mount))].into();
        o.volumes.insert(v.name.clone(), Some(VolumeStatus::for_tests(&v.name, Phase::Mounted)));
        let p = plan(std::slice::from_ref(&v), &o);
        assert!(p.ops.is_empty() && p.items == [(v.name.clone(), ItemState::Converged)]);
        let waiting = Some(VolumeStatus::for_tests(&v.name, Phase::Waiting("no disk".into())));
        o.volumes.insert(v.name.clone(), waiting);
        assert!(matches!(plan(std::slice::from_ref(&v), &o).items[0].1, ItemState::Waiting(_)));
        o.volumes.insert(v.name.clone(), None);
        assert_eq!(shown(&plan(std::slice::from_ref(&v), &o)).len(), 1, "found: converge it");
        // Moved to another mount point: the old one goes first, then the volume is converged at the new one.
        let moved = Volume { mount: "/var/lib/elsewhere".into(), ..v.clone() };
        let p = plan(std::slice::from_ref(&moved), &o);
        assert_eq!(shown(&p), [format!("op=unmount name={} mount=/var/lib/data forced=false", v.name)]);
        assert!(matches!(p.items[0].1, ItemState::Waiting(_)), "{:?}", p.items);
    }
}
