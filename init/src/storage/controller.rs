//! The config volumes (`[[storage.volume]]`): converged on every accepted config and every 30 s, each reporting
//! its phase (waiting / blocked / formatting / mounted / failed). A volume still waiting for its disk is looked
//! for every 200 ms during the first 30 s of a config. Volumes Keel mounted and the config no longer has are
//! synced and unmounted. Phase changes are logged once (`storage.volume name=… phase=…`).

use super::mount::{self, parse_options};
use super::volume::{self, Env, Phase, VolumeSpec, VolumeStatus};
use crate::config::pipeline::AppliedRx;
use crate::logging::q;
use crate::reaper::Reaper;
use crate::services::ServicesStatus;
use keel_config::model::Volume;
use nix::mount::MsFlags;
use std::collections::BTreeMap;
use std::path::PathBuf;
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

    /// Nothing is still on its way (waiting for its disk, or being made): each volume is mounted, blocked or
    /// failed.
    pub fn settled(&self) -> bool {
        !self.volumes.iter().any(|v| matches!(v.phase, Phase::Waiting(_) | Phase::Formatting))
    }

    /// The volumes that are not mounted, with why: `data: blocked: …`.
    pub fn problems(&self) -> Vec<String> {
        self.volumes.iter().filter(|v| v.phase != Phase::Mounted).map(|v| format!("{}: {}", v.name, v.phase)).collect()
    }
}

/// Starts the controller on the config pipeline's accepted configs; `services` is the services' status, read to
/// unmount a dropped volume only after the services that used it have stopped.
pub fn start(
    applied: AppliedRx,
    reaper: Reaper,
    services: watch::Receiver<ServicesStatus>,
    status: watch::Sender<StorageStatus>,
) {
    tokio::spawn(run(Env::system(), applied, reaper, status, services));
}

/// How long an unmount waits for the services of its config to be applied (their stops are bounded by their
/// stop timeouts; this is the backstop).
const RELEASE_WAIT: Duration = Duration::from_secs(300);

/// Unmounts the volumes of `gone` (innermost last in the list, so undone first) once the services of
/// `generation` are applied: a service that starts after a dropped volume was stopped by then. Returns the
/// names unmounted. `unmount` runs off the event loop (it syncs).
pub async fn release<F, Fut>(
    gone: &[(String, PathBuf)],
    generation: u64,
    services: &mut watch::Receiver<ServicesStatus>,
    mut unmount: F,
) -> Vec<String>
where
    F: FnMut(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    if gone.is_empty() {
        return Vec::new();
    }
    let applied = |s: &ServicesStatus| s.generation.is_some_and(|g| g >= generation);
    if !applied(&services.borrow()) {
        let names: Vec<&str> = gone.iter().map(|(n, _)| n.as_str()).collect();
        log::info!("storage.unmount_waiting names={} for=services generation={generation}", names.join(","));
        match tokio::time::timeout(RELEASE_WAIT, services.wait_for(applied)).await {
            Ok(_) => {}
            Err(_) => log::warn!(
                "storage.unmount_forced generation={generation} after_s={} reason=\"services not applied\"",
                RELEASE_WAIT.as_secs()
            ),
        }
    }
    let mut done = Vec::new();
    for (name, at) in gone.iter().rev() {
        match unmount(at.clone()).await {
            Ok(()) => {
                log::info!("storage.unmounted name={name} mount={} generation={generation}", at.display());
                done.push(name.clone());
            }
            Err(e) => log::warn!("storage.unmount_failed name={name} mount={} error={}", at.display(), q(&e)),
        }
    }
    done
}

/// [`mount::unmount`] on a blocking thread: it syncs, and a busy disk must not stall PID 1's event loop.
async fn unmount_off_loop(at: PathBuf) -> Result<(), String> {
    crate::fsutil::off_loop("unmount", move || mount::unmount(&at)).await?.map_err(|e| e.to_string())
}

pub async fn run(
    env: Env,
    mut applied: AppliedRx,
    reaper: Reaper,
    status: watch::Sender<StorageStatus>,
    mut services: watch::Receiver<ServicesStatus>,
) {
    // Volumes this controller mounted: name → mount point.
    let mut mounted: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut last_phase: BTreeMap<String, Phase> = BTreeMap::new();
    // The config and status of each volume found mounted last time, to skip re-probing disks when nothing moved.
    let mut settled: BTreeMap<String, (Volume, VolumeStatus)> = BTreeMap::new();
    let mut since = Instant::now();
    loop {
        let current = applied.borrow_and_update().clone();
        let (generation, mut volumes) = match &current {
            Some(a) => (a.generation, a.config.volumes.clone()),
            None => (0, Vec::new()),
        };
        volumes.sort_by_key(|v| v.mount.matches('/').count());
        // Dropped from the config (or moved): unmount, innermost first.
        let gone: Vec<(String, PathBuf)> = mounted
            .iter()
            .filter(|(name, at)| {
                !volumes.iter().any(|v| &&v.name == name && std::path::Path::new(&v.mount) == at.as_path())
            })
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        for name in release(&gone, generation, &mut services, unmount_off_loop).await {
            mounted.remove(&name);
            last_phase.remove(&name);
            settled.remove(&name);
        }
        let mut statuses = Vec::new();
        let table = mount::read_mountinfo(&env.mountinfo);
        for v in &volumes {
            if let Some(s) = still_mounted(settled.get(&v.name), v, &table) {
                statuses.push(s);
                continue;
            }
            let s = match spec(v) {
                Ok(spec) => {
                    let mut formatting = |s: &VolumeStatus| log_phase(s, generation);
                    volume::converge(&env, &spec, &reaper, Duration::ZERO, &mut formatting).await
                }
                Err(e) => VolumeStatus {
                    name: v.name.clone(),
                    selector: v.device.clone(),
                    phase: Phase::Failed(e),
                    device: None,
                    size: None,
                    fs: None,
                    mount: PathBuf::from(&v.mount),
                    free: None,
                    formatted: false,
                },
            };
            if s.phase == Phase::Mounted {
                mounted.insert(s.name.clone(), s.mount.clone());
                settled.insert(s.name.clone(), (v.clone(), s.clone()));
            } else {
                settled.remove(&s.name);
            }
            if last_phase.get(&s.name) != Some(&s.phase) {
                log_phase(&s, generation);
                last_phase.insert(s.name.clone(), s.phase.clone());
            }
            statuses.push(s);
        }
        let waiting = statuses.iter().any(|s| matches!(s.phase, Phase::Waiting(_)));
        status.send_replace(StorageStatus { generation: current.as_ref().map(|a| a.generation), volumes: statuses });
        let wait = if waiting && since.elapsed() < WAIT_FAST { POLL } else { RESYNC };
        match tokio::time::timeout(wait, applied.changed()).await {
            Ok(Err(_)) => return, // the config pipeline is gone
            Ok(Ok(())) => since = Instant::now(),
            Err(_) => {}
        }
    }
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
    fn convergence_waits_for_waiting_and_formatting_volumes_and_reports_blocked_ones() {
        let v = VolumeStatus::for_tests;
        let s = |volumes| StorageStatus { generation: Some(2), volumes };
        assert!(s(vec![]).converged() && s(vec![]).settled(), "no volumes: nothing to wait for");
        let mounted = v("a", Phase::Mounted);
        for on_its_way in [Phase::Waiting("no disk".into()), Phase::Formatting] {
            let st = s(vec![mounted.clone(), v("b", on_its_way)]);
            assert!(!st.converged() && !st.settled(), "{st:?}");
        }
        let blocked = s(vec![mounted.clone(), v("b", Phase::Blocked("holds ext4 data".into()))]);
        assert!(blocked.settled() && !blocked.converged());
        assert_eq!(blocked.problems(), ["b: blocked: holds ext4 data"]);
        assert!(s(vec![mounted.clone(), mounted]).converged());
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

    #[tokio::test(start_paused = true)]
    async fn a_dropped_volume_is_unmounted_only_after_the_services_of_its_config_stopped() {
        let (services_tx, mut services) = watch::channel(ServicesStatus { generation: Some(1), ..Default::default() });
        let unmounted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = unmounted.clone();
        let gone = vec![("data".to_string(), PathBuf::from("/var/lib/data"))];
        let task = tokio::spawn(async move {
            release(&gone, 2, &mut services, move |at: PathBuf| {
                seen.lock().unwrap().push(at);
                async { Ok(()) }
            })
            .await
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(unmounted.lock().unwrap().is_empty(), "unmounted while generation 1's services still ran");
        // The services task applied generation 2: its stops (the volume's users) are done.
        services_tx.send_modify(|s| s.generation = Some(2));
        let done = tokio::time::timeout(Duration::from_secs(1), task).await.unwrap().unwrap();
        assert_eq!(done, ["data"]);
        assert_eq!(*unmounted.lock().unwrap(), [PathBuf::from("/var/lib/data")]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_services_is_bounded_and_failures_keep_the_volume() {
        let (_services_tx, mut services) = watch::channel(ServicesStatus::default());
        let gone = vec![("a".to_string(), PathBuf::from("/a")), ("b".to_string(), PathBuf::from("/a/b"))];
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let done = release(&gone, 3, &mut services, move |at: PathBuf| {
            seen.lock().unwrap().push(at.clone());
            async move {
                if at == std::path::Path::new("/a") {
                    Err("busy".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(done, ["b"], "only what really went is forgotten");
        assert_eq!(*order.lock().unwrap(), [PathBuf::from("/a/b"), PathBuf::from("/a")], "innermost first");
    }
}
