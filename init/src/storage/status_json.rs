//! The storage part of `/v1/status` (`storage`): the state volume (or why /var is tmpfs) and each
//! config volume with its phase and, when it is not mounted, the reason.

use super::controller::StorageStatus;
use super::state::{StateMode, StateStatus};
use super::volume::{Phase, VolumeStatus};
use keel_config::status as st;

fn phase(p: &Phase) -> (&'static str, Option<&str>) {
    match p {
        Phase::Waiting(r) => ("waiting", Some(r)),
        Phase::Blocked(r) => ("blocked", Some(r)),
        Phase::Formatting => ("formatting", None),
        Phase::Mounted => ("mounted", None),
        Phase::Failed(r) => ("failed", Some(r)),
    }
}

pub fn volume(v: &VolumeStatus) -> st::VolumeStatus {
    let (name, reason) = phase(&v.phase);
    st::VolumeStatus {
        name: v.name.clone(),
        selector: v.selector.clone(),
        phase: name.into(),
        reason: reason.map(str::to_string),
        device: v.device.as_ref().map(|d| d.display().to_string()),
        size: v.size,
        fs: v.fs.clone(),
        mount: v.mount.display().to_string(),
        free: v.free,
        formatted: v.formatted,
    }
}

/// The storage status, with every disk the node sees now (`disks`: sysfs only, no disk I/O).
pub fn storage(s: &StorageStatus, state: Option<&StateStatus>) -> st::StorageStatus {
    let mut v = storage_without_disks(s, state);
    v.disks = super::inventory::disks_status(&super::inventory::disks(&super::sysfs::Roots::system()));
    v
}

fn storage_without_disks(s: &StorageStatus, state: Option<&StateStatus>) -> st::StorageStatus {
    let state = state.map(|x| {
        let mode = match x.mode {
            StateMode::Volume => "volume",
            StateMode::Tmpfs => "tmpfs",
        };
        st::StateVolumeStatus {
            mode: mode.into(),
            persistent: x.mode == StateMode::Volume,
            reason: x.reason.clone(),
            volume: x.volume.as_ref().map(volume),
        }
    });
    st::StorageStatus {
        generation: s.generation,
        converged: s.generation.is_some() && s.converged(),
        state,
        volumes: s.volumes.iter().map(volume).collect(),
        disks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn status(name: &str, phase: Phase) -> VolumeStatus {
        VolumeStatus {
            name: name.into(),
            selector: "serial:disk2".into(),
            phase,
            device: Some("/dev/vdc".into()),
            size: Some(32 << 20),
            fs: None,
            mount: PathBuf::from("/var/lib/old"),
            free: None,
            formatted: false,
        }
    }

    #[test]
    fn a_blocked_volume_shows_its_reason_and_the_state_volume_its_mode() {
        let s = StorageStatus {
            generation: Some(3),
            volumes: vec![status("old", Phase::Blocked("holds an ext4 filesystem".into()))],
        };
        let state =
            StateStatus { mode: StateMode::Tmpfs, reason: Some("disabled by keel.state=none".into()), volume: None };
        let v = serde_json::to_value(storage(&s, Some(&state))).unwrap();
        assert_eq!(v["converged"], false);
        assert_eq!(v["volumes"][0]["phase"], "blocked");
        assert_eq!(v["volumes"][0]["reason"], "holds an ext4 filesystem");
        assert_eq!(v["state"]["persistent"], false);
        assert_eq!(v["state"]["reason"], "disabled by keel.state=none");
        let ok = StorageStatus { generation: Some(3), volumes: vec![status("old", Phase::Mounted)] };
        let v = serde_json::to_value(storage(&ok, None)).unwrap();
        assert_eq!(v["converged"], true);
        assert_eq!(v["volumes"][0]["reason"], serde_json::Value::Null);
    }
}
