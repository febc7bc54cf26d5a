//! What each boot does about upgrades: find the slots and which one runs, read the record on the state volume,
//! and act on [`record::decide`]: nothing, judge a trial boot (commit once the config converges within the
//! deadline, else record the rollback and reboot into the old slot), or close an upgrade whose new slot never
//! came up as rolled back.

use super::efivar::{self, Vars};
use super::record::{self, Decision, Store, Verdict};
use super::slots::{self, Slot};
use super::{boot_entries, unix_now, update};
use crate::logging::q;
use crate::power::{Action, Request};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Finds out this boot's slot and settles the record; spawns the trial judge when this is a trial boot.
pub fn start(
    persistent_var: bool,
    deadline: Duration,
    converged: watch::Receiver<Option<u64>>,
    power: mpsc::Sender<Request>,
) {
    let vars = Vars::system();
    if !vars.available() {
        return unsupported("not booted by UEFI firmware (no EFI variables)".into());
    }
    let loader = match vars.get("LoaderDevicePartUUID", efivar::LOADER) {
        Ok(Some(v)) => efivar::utf16_value(&v),
        _ => return unsupported("the boot loader did not say which partition it came from".into()),
    };
    let Some(layout) = slots::discover(&crate::storage::sysfs::Roots::system(), Some(&loader)) else {
        return unsupported("no disk with KEEL_A and KEEL_B partitions".into());
    };
    let Some(running) = slots::running(&layout, &loader) else {
        return unsupported(format!("booted from partition {loader}, not from the slots' disk"));
    };
    log::info!(
        "upgrade.slot running={running} disk={} loader_partition={}",
        layout.disk.display(),
        loader.to_lowercase()
    );
    let store = Store::system();
    let rec = if persistent_var { store.load() } else { Ok(record::Record::default()) };
    let rec = match rec {
        Ok(r) => r,
        Err(e) => {
            log::error!("upgrade.record_unreadable error={}", q(&e));
            record::Record::default()
        }
    };
    update(|s| {
        s.running = Some(running);
        s.layout = Some(layout.clone());
        s.pending = rec.pending.clone();
        s.last = rec.last.clone();
        s.unsupported =
            (!persistent_var).then(|| "no state volume: the upgrade record would not survive the reboot".into());
    });
    match record::decide(&rec, running) {
        Decision::Nothing => raise_image_floor(),
        Decision::FellBack(p) => {
            let reason = format!("slot {} did not come up; booted slot {running} instead", p.slot);
            log::warn!("upgrade.rolled_back slot={} running={running} reason={}", p.slot, q(&reason));
            if let Err(e) = boot_entries::make_default(&vars, &layout, running) {
                log::error!("upgrade.boot_order_failed error={}", q(&e));
            }
            finish(&store, &rec, Verdict::RolledBack, &reason);
        }
        Decision::Trial(p) => {
            log::info!("upgrade.trial slot={} deadline_s={} sha256={}", p.slot, deadline.as_secs(), p.sha256);
            // Armed here, before any task runs: a PID 1 that never gets to run the judge is caught too.
            let dog = super::watchdog::arm();
            tokio::spawn(judge(store, rec, vars, layout, running, deadline, converged, power, dog));
        }
    }
}

/// The running image is committed (a normal boot, or a trial that converged): the rollback floor's image version
/// rises to its version (`/etc/keel/version`, built in), so no older image installs from now on.
fn raise_image_floor() {
    let Some(v) = std::fs::read_to_string(VERSION_FILE).ok().and_then(|t| crate::trust::floor::Version::parse(&t))
    else {
        return log::warn!("upgrade.no_version file={VERSION_FILE}");
    };
    match crate::trust::floor::raise(|f| f.image = Some(v.clone())) {
        Ok(f) => {
            log::info!("upgrade.image_floor version={v} floor={}", f.image.map_or("none".into(), |i| i.to_string()))
        }
        Err(e) => log::error!("upgrade.image_floor_failed version={v} error={}", q(&e)),
    }
}

/// The running image's version, as the build wrote it (the same as its UKI's .osrel and slot manifest).
pub const VERSION_FILE: &str = "/etc/keel/version";

fn unsupported(reason: String) {
    log::info!("upgrade.unsupported reason={}", q(&reason));
    update(|s| s.unsupported = Some(reason));
}

fn finish(store: &Store, rec: &record::Record, verdict: Verdict, reason: &str) {
    let done = rec.finish(verdict, reason, unix_now());
    if let Err(e) = store.save(&done) {
        log::error!("upgrade.record_failed error={}", q(&e));
    }
    update(|s| {
        s.pending = None;
        s.last = done.last.clone();
    });
}

#[allow(clippy::too_many_arguments)]
async fn judge(
    store: Store,
    rec: record::Record,
    vars: Vars,
    layout: slots::Layout,
    running: Slot,
    deadline: Duration,
    mut converged: watch::Receiver<Option<u64>>,
    power: mpsc::Sender<Request>,
    mut dog: Option<super::watchdog::Armed>,
) {
    let started = std::time::Instant::now();
    let wait = tokio::time::timeout(deadline, converged.wait_for(|g| g.is_some()));
    tokio::pin!(wait);
    let mut pet = tokio::time::interval(super::watchdog::PET_EVERY);
    let generation = loop {
        tokio::select! {
            done = &mut wait => break done.ok().and_then(|r| r.ok().and_then(|g| *g)),
            _ = pet.tick() => dog.iter_mut().for_each(|d| d.pet()),
        }
    };
    if let Some(generation) = generation {
        if let Some(d) = dog.take() {
            d.disarm();
        }
        match boot_entries::make_default(&vars, &layout, running) {
            Ok(order) => {
                let order: Vec<String> = order.iter().map(|n| format!("{n:04X}")).collect();
                let reason = format!("converged generation {generation} in {} ms", started.elapsed().as_millis());
                log::info!(
                    "upgrade.committed slot={running} generation={generation} boot_order={} ms={}",
                    order.join(","),
                    crate::clock::ms(started.elapsed())
                );
                raise_image_floor();
                return finish(&store, &rec, Verdict::Committed, &reason);
            }
            Err(e) => {
                log::error!("upgrade.commit_failed slot={running} error={}", q(&e));
                let reason = format!("could not make slot {running} the default: {e}");
                return rollback(&store, &rec, &vars, &layout, running, &reason, power).await;
            }
        }
    }
    let reason = format!("config did not converge within {} s", deadline.as_secs());
    rollback(&store, &rec, &vars, &layout, running, &reason, power).await
}

async fn rollback(
    store: &Store,
    rec: &record::Record,
    vars: &Vars,
    layout: &slots::Layout,
    running: Slot,
    reason: &str,
    power: mpsc::Sender<Request>,
) {
    log::warn!("upgrade.rollback slot={running} to={} reason={}", running.other(), q(reason));
    // BootNext was spent on this boot; make sure the order leads to the old slot, then go there.
    let _ = boot_entries::clear_next(vars);
    if let Err(e) = boot_entries::make_default(vars, layout, running.other()) {
        log::error!("upgrade.boot_order_failed error={}", q(&e));
    }
    finish(store, rec, Verdict::RolledBack, reason);
    let _ = power
        .send(Request { action: Action::Reboot, reason: format!("upgrade rollback to slot {}", running.other()) })
        .await;
}
