//! The state volume: the node's persistent /var. `keel.state=<selector>` names it; by default it is the
//! filesystem (or GPT partition) labelled KEEL_STATE, else the first blank disk of at least 64 MiB, which is
//! then made into one (GPT + ext4, both named KEEL_STATE). It is mounted over the tmpfs the early boot put on
//! /var, before the config pipeline reads its last-known-good config from there. Without one, /var stays tmpfs.

use super::mount::parse_options;
use super::select::{self, Resolved, Selector};
use super::volume::{self, Env, Phase, VolumeSpec, VolumeStatus};
use crate::logging::q;
use crate::reaper::Reaper;
use nix::mount::MsFlags;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The GPT name and the filesystem label of the state volume.
pub const STATE_LABEL: &str = "KEEL_STATE";
/// The smallest blank disk taken for state without being named.
pub const AUTO_MIN_BYTES: u64 = 64 << 20;
/// How long a disk named with `keel.state=` may take to appear.
const NAMED_WAIT: Duration = Duration::from_secs(30);

/// `keel.state=`: unset, `none`, or a selector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateChoice {
    #[default]
    Auto,
    Disabled,
    Select(Selector),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMode {
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStatus {
    pub mode: StateMode,
    /// Why /var is tmpfs.
    pub reason: Option<String>,
    pub volume: Option<VolumeStatus>,
}

static BOOT_STATE: OnceLock<StateStatus> = OnceLock::new();

/// What this boot's [`mount_state`] found, for the status; `None` before it ran.
pub fn boot_state() -> Option<&'static StateStatus> {
    BOOT_STATE.get()
}

/// Mounts the state volume on /var (see the module doc); never fails the boot.
pub async fn mount_state(choice: &StateChoice, reaper: &Reaper) -> StateStatus {
    // What the node sees, before it picks: the lines an operator writes `keel.state=` / selectors from.
    super::inventory::log_disks(&super::inventory::disks(&super::sysfs::Roots::system()));
    let status = mount_state_with(&Env::system(), choice, Path::new("/var"), reaper).await;
    let _ = BOOT_STATE.set(status.clone());
    status
}

pub async fn mount_state_with(env: &Env, choice: &StateChoice, mount: &Path, reaper: &Reaper) -> StateStatus {
    let started = std::time::Instant::now();
    let (selector, wait) = match choice {
        StateChoice::Disabled => return tmpfs("disabled by keel.state=none".into(), None),
        StateChoice::Select(s) => (s.clone(), NAMED_WAIT),
        StateChoice::Auto => {
            let label = Selector::Label(STATE_LABEL.into());
            let inv = select::observe(&env.roots, &*env.keep);
            match select::resolve(&label, &inv, &env.roots, STATE_LABEL) {
                // A network boot leaves blank disks alone: they are what `[install]` installs to.
                Resolved::NotFound(_) if network_boot() => {
                    return tmpfs("network boot: blank disks are left for [install]".into(), None)
                }
                Resolved::NotFound(_) => (Selector::Blank { min_bytes: AUTO_MIN_BYTES }, Duration::ZERO),
                _ => (label, Duration::ZERO),
            }
        }
    };
    let spec = VolumeSpec {
        name: "state".into(),
        selector,
        label: Some(STATE_LABEL.into()),
        partlabel: STATE_LABEL.into(),
        wipe: false,
        mount: mount.to_path_buf(),
        // As the tmpfs it replaces.
        options: parse_options(&[], MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC),
        over_tmpfs: true,
    };
    let status = volume::converge(env, &spec, reaper, wait, &mut |_| {}).await;
    match &status.phase {
        Phase::Mounted => {
            log::info!(
                "storage.state mode=volume device={} mount={} formatted={} size={} free={} ms={} uptime_ms={}",
                status.device.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
                mount.display(),
                status.formatted,
                status.size.unwrap_or(0),
                status.free.unwrap_or(0),
                crate::clock::ms(started.elapsed()),
                crate::clock::ms(crate::clock::uptime())
            );
            StateStatus { mode: StateMode::Volume, reason: None, volume: Some(status) }
        }
        phase => {
            let reason = match (choice, phase) {
                (StateChoice::Auto, Phase::Waiting(_)) => {
                    "no state volume and no blank disk of at least 64M".to_string()
                }
                (_, phase) => phase.to_string(),
            };
            tmpfs(reason, Some(status))
        }
    }
}

/// The UKI came over the network: UEFI firmware, and systemd-stub names no partition it was loaded from.
/// (A `-kernel` boot, or iPXE booting a bare kernel, has no StubInfo and is not one.)
fn network_boot() -> bool {
    let vars = crate::upgrade::efivar::Vars::system();
    vars.available()
        && matches!(vars.get("StubInfo", crate::upgrade::efivar::LOADER), Ok(Some(_)))
        && matches!(vars.get("LoaderDevicePartUUID", crate::upgrade::efivar::LOADER), Ok(None))
}

fn tmpfs(reason: String, volume: Option<VolumeStatus>) -> StateStatus {
    let level = match &volume {
        Some(v) if matches!(v.phase, Phase::Blocked(_) | Phase::Failed(_)) => log::Level::Warn,
        _ => log::Level::Info,
    };
    log::log!(level, "storage.state mode=tmpfs persistent=false reason={}", q(&reason));
    StateStatus { mode: StateMode::Tmpfs, reason: Some(reason), volume }
}
