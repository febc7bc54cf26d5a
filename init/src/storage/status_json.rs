//! The storage part of `/v1/status` (`storage`): the state volume (or why /var is tmpfs) and each
//! config volume with its phase and, when it is not mounted, the reason.

use super::controller::StorageStatus;
use super::state::{StateMode, StateStatus};
use super::volume::{Phase, VolumeStatus};
use serde_json::{json, Value};

fn phase(p: &Phase) -> (&'static str, Option<&str>) {
    match p {
        Phase::Waiting(r) => ("waiting", Some(r)),
        Phase::Blocked(r) => ("blocked", Some(r)),
        Phase::Formatting => ("formatting", None),
        Phase::Mounted => ("mounted", None),
        Phase::Failed(r) => ("failed", Some(r)),
    }
}

pub fn volume(v: &VolumeStatus) -> Value {
    let (name, reason) = phase(&v.phase);
    json!({"name": v.name, "selector": v.selector, "phase": name, "reason": reason,
           "device": v.device.as_ref().map(|d| d.display().to_string()), "size": v.size, "fs": v.fs,
           "mount": v.mount.display().to_string(), "free": v.free, "formatted": v.formatted})
}

/// The storage status, with every disk the node sees now (`disks`: sysfs only, no disk I/O).
pub fn storage(s: &StorageStatus, state: Option<&StateStatus>) -> Value {
    let mut v = storage_without_disks(s, state);
    v["disks"] = super::inventory::disks_json(&super::inventory::disks(&super::sysfs::Roots::system()));
    v
}

fn storage_without_disks(s: &StorageStatus, state: Option<&StateStatus>) -> Value {
    let state = state.map(|st| {
        let mode = match st.mode {
            StateMode::Volume => "volume",
            StateMode::Tmpfs => "tmpfs",
        };
        json!({"mode": mode, "persistent": st.mode == StateMode::Volume, "reason": st.reason,
               "volume": st.volume.as_ref().map(volume)})
    });
    let volumes: Vec<Value> = s.volumes.iter().map(volume).collect();
    json!({"generation": s.generation, "converged": s.generation.is_some() && s.converged(), "state": state,
           "volumes": volumes})
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
        let v = storage(&s, Some(&state));
        assert_eq!(v["converged"], false);
        assert_eq!(v["volumes"][0]["phase"], "blocked");
        assert_eq!(v["volumes"][0]["reason"], "holds an ext4 filesystem");
        assert_eq!(v["state"]["persistent"], false);
        assert_eq!(v["state"]["reason"], "disabled by keel.state=none");
        let ok = StorageStatus { generation: Some(3), volumes: vec![status("old", Phase::Mounted)] };
        assert_eq!(storage(&ok, None)["converged"], true);
        assert_eq!(storage(&ok, None)["volumes"][0]["reason"], Value::Null);
    }
}
