//! The upgrade record on the state volume (`/var/lib/keel/upgrade/state.json`): the upgrade waiting for its trial
//! boot, and how the last one ended. Written atomically (temporary file, fsync, rename, fsync of the directory),
//! so a power cut leaves the old record or the new one. What a boot does about it is decided purely here.

use super::slots::Slot;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DIR: &str = "/var/lib/keel/upgrade";
const FILE: &str = "state.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The slot written, booted once with BootNext.
    pub slot: Slot,
    /// The slot it replaces (running when the upgrade was written).
    pub from: Slot,
    pub sha256: String,
    pub signer: String,
    /// Unix seconds when it was written.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Committed,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub result: Verdict,
    pub slot: Slot,
    pub sha256: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pending: Option<Pending>,
    pub last: Option<Outcome>,
}

/// What this boot does about the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No upgrade waits.
    Nothing,
    /// The pending slot is running: its trial boot. Commit once converged, else roll back by rebooting.
    Trial(Pending),
    /// The old slot is running although an upgrade waited: the new one did not come up (it crashed, hung until a
    /// reset, or its trial gave up).
    FellBack(Pending),
}

pub fn decide(record: &Record, running: Slot) -> Decision {
    match &record.pending {
        None => Decision::Nothing,
        Some(p) if p.slot == running => Decision::Trial(p.clone()),
        Some(p) => Decision::FellBack(p.clone()),
    }
}

impl Record {
    /// The record after the pending upgrade ended as `result`.
    pub fn finish(&self, result: Verdict, reason: &str, at: u64) -> Record {
        let last = self.pending.as_ref().map(|p| Outcome {
            result,
            slot: p.slot,
            sha256: p.sha256.clone(),
            reason: reason.to_string(),
            at,
        });
        Record { pending: None, last: last.or_else(|| self.last.clone()) }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn system() -> Store {
        Store { dir: DIR.into() }
    }

    /// The record; an absent file is an empty record, an unreadable one an error (never silently dropped).
    pub fn load(&self) -> Result<Record, String> {
        let path = self.dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Durably, with the init's one atomic write (temp file, fsync, rename, directory fsync).
    pub fn save(&self, record: &Record) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let path = self.dir.join(FILE);
        crate::controller::files::write_atomic(&path, &text, 0o600, None)
            .map_err(|e| format!("write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(slot: Slot) -> Pending {
        Pending { slot, from: slot.other(), sha256: "ab".into(), signer: "ops".into(), at: 7 }
    }

    #[test]
    fn decides_trial_fallback_or_nothing() {
        let none = Record::default();
        assert_eq!(decide(&none, Slot::A), Decision::Nothing);
        let waiting = Record { pending: Some(pending(Slot::B)), last: None };
        assert_eq!(decide(&waiting, Slot::B), Decision::Trial(pending(Slot::B)));
        assert_eq!(decide(&waiting, Slot::A), Decision::FellBack(pending(Slot::B)));
    }

    #[test]
    fn finishing_moves_pending_to_last() {
        let waiting = Record { pending: Some(pending(Slot::B)), last: None };
        let done = waiting.finish(Verdict::RolledBack, "deadline", 9);
        assert_eq!(done.pending, None);
        let last = done.last.clone().unwrap();
        assert_eq!(
            (last.result, last.slot, last.reason.as_str(), last.at),
            (Verdict::RolledBack, Slot::B, "deadline", 9)
        );
        assert_eq!(done.finish(Verdict::Committed, "x", 10), done, "nothing pending: nothing changes");
    }

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("keel-upgrade-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store { dir: dir.join("upgrade") };
        assert_eq!(store.load(), Ok(Record::default()));
        let r = Record { pending: Some(pending(Slot::A)), last: None }.finish(Verdict::Committed, "converged", 3);
        store.save(&r).unwrap();
        assert_eq!(store.load(), Ok(r));
        assert!(!store.dir.join("state.json.tmp").exists());
        let text = std::fs::read_to_string(store.dir.join("state.json")).unwrap();
        assert!(text.contains("\"committed\""), "{text}");
        std::fs::write(store.dir.join("state.json"), "{").unwrap();
        assert!(store.load().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
