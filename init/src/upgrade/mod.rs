//! A/B upgrades with automatic rollback (README, "Upgrades").
//!
//! A signed slot image is written to the slot that is not running ([`image`]), the firmware is told to boot it
//! once (UEFI `BootNext`, [`boot_entries`]), and a pending record goes to the state volume ([`record`]); then the
//! node reboots. On the next boot ([`trial`]): running the pending slot is its trial, committed (first in
//! `BootOrder`) once the config converges within `keel.upgrade_deadline`, else the node reboots and the firmware,
//! `BootNext` being spent, boots the old slot. Running the old slot with a record pending means the new one
//! never came up: rolled back. Images come from `PUT /v1/upgrade` or from the config's `[upgrade]` ([`source`]).
//! The planning (entries, order, decisions) is pure and unit-tested.

pub mod boot_entries;
pub mod efivar;
pub mod image;
pub mod load_option;
pub mod manifest;
pub mod record;
pub mod slots;
pub mod source;
pub mod stream;
pub mod trial;
pub mod watchdog;

use record::{Outcome, Pending};
use slots::{Layout, Slot};
use std::sync::Mutex;

/// What this boot knows about its slots, for the API and the status.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Why upgrades cannot be done on this node (not a UEFI disk boot, no state volume, …).
    pub unsupported: Option<String>,
    pub running: Option<Slot>,
    pub pending: Option<Pending>,
    pub last: Option<Outcome>,
    pub layout: Option<Layout>,
    /// An upgrade is being written right now.
    pub writing: bool,
}

static STATUS: Mutex<Status> =
    Mutex::new(Status { unsupported: None, running: None, pending: None, last: None, layout: None, writing: false });

pub fn status() -> Status {
    STATUS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn update(f: impl FnOnce(&mut Status)) {
    f(&mut STATUS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The `boot` fields of `/v1/status` this module owns (slots and the last upgrade); the rest stay default.
pub fn boot_status() -> keel_config::status::BootStatus {
    let s = status();
    let slot = |s: Slot| format!("{s:?}");
    let verdict = |v: record::Verdict| match v {
        record::Verdict::Committed => "committed",
        record::Verdict::RolledBack => "rolled-back",
    };
    keel_config::status::BootStatus {
        slot: s.running.map(slot),
        pending_slot: s.pending.as_ref().map(|p| slot(p.slot)),
        last_upgrade: s.last.as_ref().map(|o| keel_config::status::LastUpgrade {
            result: verdict(o.result).into(),
            slot: slot(o.slot),
            sha256: o.sha256.clone(),
            reason: o.reason.clone(),
            at: o.at,
        }),
        upgrades: keel_config::status::UpgradesSupport {
            supported: s.unsupported.is_none(),
            reason: s.unsupported.clone(),
        },
        ..Default::default()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The outcome of a successful install: the node reboots into `slot` next.
#[derive(Debug, Clone)]
pub struct Installed {
    pub slot: Slot,
    pub sha256: String,
    pub signer: String,
    pub bytes: usize,
}

/// Verifies the signed image and writes it to the inactive slot, then sets up the trial boot. Blocking (disk
/// I/O): run it off the async runtime. Nothing is written unless every check passes.
pub fn install(
    sig: &str,
    img: &[u8],
    sha256: Option<&str>,
    allowed: &keel_config::sshsig::AllowedSigners,
) -> Result<Installed, image::Refusal> {
    let (layout, running) = begin()?;
    let result = install_to(&layout, running, sig, img, sha256, allowed);
    finish(running, &result);
    result
}

/// Claims the writer's place: the slot layout and the running slot, unless upgrades are impossible, another is
/// being written, or one waits for its trial. [`finish`] releases it.
fn begin() -> Result<(Layout, Slot), image::Refusal> {
    use image::Refusal;
    let mut s = STATUS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = &s.unsupported {
        return Err(Refusal::new("unsupported", why.clone()));
    }
    if s.writing {
        return Err(Refusal::new("busy", "another upgrade is being written"));
    }
    if let Some(p) = &s.pending {
        return Err(Refusal::new("pending", format!("slot {} waits for its trial boot; reboot first", p.slot)));
    }
    match (s.layout.clone(), s.running) {
        (Some(l), Some(r)) => {
            s.writing = true;
            Ok((l, r))
        }
        _ => Err(Refusal::new("unsupported", "no Keel boot slots found")),
    }
}

fn finish(running: Slot, result: &Result<Installed, image::Refusal>) {
    update(|s| {
        s.writing = false;
        if let Ok(done) = result {
            s.pending = Some(Pending {
                slot: done.slot,
                from: running,
                sha256: done.sha256.clone(),
                signer: done.signer.clone(),
                at: unix_now(),
            });
        }
    });
}

fn install_to(
    layout: &Layout,
    running: Slot,
    sig: &str,
    img: &[u8],
    sha256: Option<&str>,
    allowed: &keel_config::sshsig::AllowedSigners,
) -> Result<Installed, image::Refusal> {
    use crate::logging::q;
    use image::Refusal;
    let target = layout.part(running.other());
    let signer =
        image::verify(img, sig, sha256, allowed, target.bytes, std::time::SystemTime::now()).inspect_err(|r| {
            log::warn!("upgrade.refused reason={} detail={}", r.code, q(&r.detail));
        })?;
    // No downgrades: an image older than the newest committed would bring back the keys that image trusted.
    if let Err((code, detail)) = manifest::check(img, crate::trust::floor::current().image.as_ref()) {
        log::warn!("upgrade.refused reason={code} detail={}", q(&detail));
        return Err(Refusal::new(code, detail));
    }
    let started = std::time::Instant::now();
    log::info!(
        "upgrade.write slot={} device={} bytes={} signer={}",
        target.slot,
        target.node.display(),
        img.len(),
        q(&signer)
    );
    let fail = |code: &'static str, detail: String| {
        log::error!("upgrade.failed step={code} detail={}", q(&detail));
        Refusal::new(code, detail)
    };
    let sha = image::write_and_verify(&target.node, img).map_err(|e| fail("write-failed", e))?;
    log::info!("upgrade.verified slot={} sha256={sha} ms={}", target.slot, crate::clock::ms(started.elapsed()));
    stage(layout, running, target.slot, sha, signer, img.len())
}

/// After the image is on the slot and verified: the pending record, then `BootNext`.
fn stage(
    layout: &Layout,
    running: Slot,
    slot: Slot,
    sha: String,
    signer: String,
    bytes: usize,
) -> Result<Installed, image::Refusal> {
    use crate::logging::q;
    use image::Refusal;
    let fail = |code: &'static str, detail: String| {
        log::error!("upgrade.failed step={code} detail={}", q(&detail));
        Refusal::new(code, detail)
    };
    let target = layout.part(slot);
    let store = record::Store::system();
    let mut rec = store.load().map_err(|e| fail("record-unreadable", e))?;
    // The record before BootNext: a power cut in between boots the old slot, which then finds the record and
    // closes it as rolled back; the other order could boot the new slot with no trial to judge it.
    let before = rec.clone();
    rec.pending =
        Some(Pending { slot: target.slot, from: running, sha256: sha.clone(), signer: signer.clone(), at: unix_now() });
    store.save(&rec).map_err(|e| fail("record-failed", e))?;
    let vars = efivar::Vars::system();
    let entry = match boot_entries::prepare_trial(&vars, layout, target.slot) {
        Ok(n) => n,
        Err(e) => {
            if let Err(undo) = store.save(&before) {
                log::error!("upgrade.record_restore_failed error={}", q(&undo));
            }
            return Err(fail("boot-entry-failed", e));
        }
    };
    log::info!("upgrade.staged slot={} boot_next={} sha256={sha}", target.slot, load_option::boot_name(entry));
    Ok(Installed { slot: target.slot, sha256: sha, signer, bytes })
}
