//! The install controller's loop: on each accepted config (and every [`RESYNC`] after), observe, decide
//! ([`super::plan::decide`]), and carry out an install; a failed install is retried with the init's backoff
//! and leaves the node running as it was (diskless), the reason in the status.

use super::plan::{self, Decision, DiskSeen, Found, Observed, Want};
use super::{carry, disk, set, Status};
use crate::config::pipeline::Applied;
use crate::logging::q;
use crate::power::{Action, Request};
use crate::reaper::Reaper;
use crate::storage::probe::{Content, Table};
use crate::storage::select::{self, Resolved, Selector, Target};
use crate::storage::sysfs::Roots;
use crate::upgrade::efivar::Vars;
use crate::upgrade::slots::Slot;
use keel_config::model::Install;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often a settled decision (installed, refused) is looked at again: the disk may have been replaced.
const RESYNC: Duration = Duration::from_secs(60);
/// How often a disk that is not there yet is looked for.
const POLL: Duration = Duration::from_secs(5);
const NETWORK_WAIT: Duration = Duration::from_secs(120);

/// The disk the selector names, as the plan and the apply need it.
struct Chosen {
    node: PathBuf,
    sector: u32,
    size: u64,
}

/// Observes (blocking: reads every disk's head): how this node booted and what the named disk holds.
fn observe(selector: &str) -> (Observed, Option<Chosen>) {
    let booted_from_disk = crate::upgrade::status().running.is_some();
    let uefi = Vars::system().available();
    let mut seen = Observed { booted_from_disk, uefi, disk: Err(Found::NotYet(String::new())) };
    let sel: Selector = match selector.parse() {
        Ok(s) => s,
        Err(e) => {
            let e: keel_config::storage::SelectorError = e;
            seen.disk = Err(Found::Unusable(e.0));
            return (seen, None);
        }
    };
    let roots = Roots::system();
    let inv = select::observe(&roots, &|n| !n.starts_with("loop") && !n.starts_with("ram"));
    let d = match select::resolve(&sel, &inv, &roots, plan::INSTALLING) {
        Resolved::Found(Target::Disk(d)) => d,
        // A blank selector finds a stopped install by its partition name: the disk it is on.
        Resolved::Found(Target::Part(d, _)) if matches!(sel, Selector::Blank { .. }) => d,
        Resolved::Found(Target::Part(d, p)) => {
            let why =
                format!("{selector} names partition {} of {}; install takes a whole disk", p + 1, inv[d].disk.name);
            seen.disk = Err(Found::Unusable(why));
            return (seen, None);
        }
        Resolved::NotFound(why) => {
            seen.disk = Err(Found::NotYet(why));
            return (seen, None);
        }
        Resolved::Ambiguous(why) => {
            seen.disk = Err(Found::Unusable(why));
            return (seen, None);
        }
    };
    let o = &inv[d];
    let mut labels: Vec<String> = Vec::new();
    let mut label_of = |c: &Content| {
        if let Content::Fs(f) = c {
            labels.extend(f.label.clone());
        }
    };
    label_of(&o.content);
    o.parts.iter().for_each(|(_, c)| label_of(c));
    if let Content::Table(Table::Gpt(t)) = &o.content {
        labels.extend(t.entries.iter().map(|e| e.name.clone()).filter(|n| !n.is_empty()));
    }
    seen.disk = Ok(DiskSeen { size: o.disk.size, content: o.content.clone(), labels });
    (seen, Some(Chosen { node: o.disk.node.clone(), sector: o.disk.sector, size: o.disk.size }))
}

/// How one pass ended.
enum Pass {
    /// Installed: reboot into it.
    Reboot,
    /// Nothing to do until the next look.
    Settled,
    Waiting,
    Retry,
}

/// Runs the controller; returns only when the config pipeline is gone.
pub async fn run(
    mut applied: watch::Receiver<Option<Arc<Applied>>>,
    network: watch::Receiver<bool>,
    power: mpsc::Sender<Request>,
    reaper: Reaper,
    machine_id: String,
) {
    let mut backoff = crate::retry::Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
    let mut last = Status::default();
    loop {
        let current = applied.borrow_and_update().clone();
        let wait = match current.and_then(|a| a.config.install.clone().map(|i| (a.generation, i))) {
            None => {
                set(Status::default());
                None
            }
            Some((generation, want)) => {
                let pass = one_pass(&want, generation, &network, &reaper, &machine_id, &mut last, &mut backoff).await;
                match pass {
                    Pass::Reboot => {
                        let request = Request { action: Action::Reboot, reason: "installed to disk".into() };
                        let _ = power.send(request).await;
                        return;
                    }
                    Pass::Settled => Some(RESYNC),
                    Pass::Waiting => Some(POLL),
                    Pass::Retry => {
                        let wait = backoff.failed();
                        last.failures = backoff.failures();
                        set(last.clone());
                        log::warn!(
                            "install.retry generation={generation} failures={} retry_in_s={:.1}",
                            backoff.failures(),
                            wait.as_secs_f64()
                        );
                        Some(wait)
                    }
                }
            }
        };
        let sleep = async {
            match wait {
                Some(w) => tokio::time::sleep(w).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff.succeeded();
            }
            _ = sleep => {}
        }
    }
}

/// Publishes `s` and logs it when the phase or reason changed.
fn publish(last: &mut Status, s: Status) {
    if (s.phase, &s.reason) != (last.phase, &last.reason) {
        let line = format!(
            "generation={} disk={} detail={}",
            s.generation.unwrap_or(0),
            q(s.disk.as_deref().unwrap_or("")),
            q(s.reason.as_deref().unwrap_or(""))
        );
        let code = s.code.as_deref().unwrap_or("-");
        match s.phase {
            "refused" => log::warn!("install.refused reason={code} {line}"),
            "failed" => log::error!("install.failed step={code} {line}"),
            phase => log::info!("install.{phase} {line}"),
        }
    }
    *last = s.clone();
    set(s);
}

async fn one_pass(
    want: &Install,
    generation: u64,
    network: &watch::Receiver<bool>,
    reaper: &Reaper,
    machine_id: &str,
    last: &mut Status,
    backoff: &mut crate::retry::Backoff,
) -> Pass {
    let selector = want.disk.clone();
    let observed = crate::fsutil::off_loop("install observe", move || observe(&selector)).await;
    let (seen, chosen) = match observed {
        Ok(o) => o,
        Err(e) => {
            log::error!("install.observe_failed error={}", q(&e));
            return Pass::Retry;
        }
    };
    let base = Status { generation: Some(generation), failures: last.failures, ..Status::default() };
    let disk_name = chosen.as_ref().map(|c| c.node.display().to_string()).or(Some(want.disk.clone()));
    let with = |phase, code: Option<&str>, reason: String| Status {
        phase,
        disk: disk_name.clone(),
        code: code.map(str::to_string),
        reason: Some(reason),
        ..base.clone()
    };
    let decision = plan::decide(&Want { wipe: want.wipe, label: want.label.as_deref() }, &seen);
    let (wipe, chosen, content) = match (decision, chosen, seen.disk) {
        (Decision::Installed(why), _, _) => {
            backoff.succeeded();
            publish(last, Status { failures: 0, ..with("installed", None, why) });
            return Pass::Settled;
        }
        (Decision::Waiting(why), _, _) => {
            publish(last, with("waiting", None, why));
            return Pass::Waiting;
        }
        (Decision::Refused { code, detail }, _, _) => {
            publish(last, with("refused", Some(code), detail));
            return Pass::Settled;
        }
        (Decision::Install { wipe }, Some(c), Ok(d)) => (wipe, c, d.content),
        (Decision::Install { .. }, _, _) => return Pass::Retry,
    };
    publish(last, with("installing", None, format!("installing to {} (wipe={wipe})", chosen.node.display())));
    match install(want, generation, network, reaper, machine_id, &chosen, &content).await {
        Ok(()) => {
            publish(last, Status { failures: 0, ..with("rebooting", None, "installed; rebooting into it".into()) });
            Pass::Reboot
        }
        Err(Failure::Refused(code, detail)) => {
            publish(last, with("refused", Some(code), detail));
            Pass::Settled
        }
        Err(Failure::Failed(step, detail)) => {
            publish(last, with("failed", Some(step), detail));
            Pass::Retry
        }
    }
}

enum Failure {
    /// The image is not one this node installs (untrusted, wrong digest, older than the floor): not retried.
    Refused(&'static str, String),
    /// A step failed on the way: retried.
    Failed(&'static str, String),
}

async fn blocking<T: Send + 'static>(
    step: &'static str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Failure> {
    match crate::fsutil::off_loop(step, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) | Err(e) => Err(Failure::Failed(step, e)),
    }
}

/// Fetches and verifies the image, then the disk steps in order; the disk is marked installed only at the end.
async fn install(
    want: &Install,
    generation: u64,
    network: &watch::Receiver<bool>,
    reaper: &Reaper,
    machine_id: &str,
    chosen: &Chosen,
    content: &Content,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let mut network = network.clone();
    match tokio::time::timeout(NETWORK_WAIT, network.wait_for(|up| *up)).await {
        Ok(Ok(_)) => {}
        _ => {
            return Err(Failure::Failed("network", format!("the network is not up after {} s", NETWORK_WAIT.as_secs())))
        }
    }
    let url = &want.image.url;
    log::info!("install.fetch generation={generation} url={} sha256={}", q(url), want.image.sha256);
    let fetch = |e: String| Failure::Failed("fetch", e);
    let image = crate::upgrade::source::fetch(url, crate::upgrade::image::MAX_IMAGE).await.map_err(fetch)?;
    let sig = crate::upgrade::source::fetch(&format!("{url}.sig"), 64 << 10).await.map_err(fetch)?;
    let sig = String::from_utf8_lossy(&sig).into_owned();
    let allowed = crate::config::trust::allowed_signers().map_err(|e| Failure::Refused("untrusted", e))?;
    let (img, sha) = (image, want.image.sha256.clone());
    let verified = crate::fsutil::off_loop("install verify", move || {
        let now = std::time::SystemTime::now();
        let signer = crate::upgrade::image::verify(&img, &sig, Some(&sha), &allowed, plan::SLOT_BYTES, now)
            .map_err(|r| (r.code, r.detail))?;
        crate::upgrade::manifest::check(&img, crate::trust::floor::current().image.as_ref())
            .map_err(|(c, d)| (c, d.to_string()))?;
        Ok::<_, (&'static str, String)>((img, signer))
    })
    .await;
    let (image, signer) = match verified {
        Ok(Ok(v)) => v,
        Ok(Err((code, detail))) => return Err(Failure::Refused(code, detail)),
        Err(e) => return Err(Failure::Failed("verify", e)),
    };
    log::info!("install.verified sha256={} signer={} bytes={}", want.image.sha256, q(&signer), image.len());

    let (node, sector, size, planned) = (chosen.node.clone(), chosen.sector, chosen.size, content.clone());
    let parted =
        blocking("partition", move || disk::partition(&Roots::system(), &node, size, sector, &planned)).await?;
    let p = parted.clone();
    let sha = blocking("write-slot", move || disk::write_slot(&p, &image)).await?;
    log::info!("install.format device={}", parted.state.display());
    crate::storage::tools::Tools::system()
        .mkfs_ext4(reaper, &parted.state, Some(plan::STATE), true)
        .await
        .map_err(|e| Failure::Failed("format", e.to_string()))?;
    let record = carry::Record {
        disk: parted.disk.display().to_string(),
        sha256: sha,
        machine_id: machine_id.to_string(),
        generation,
        at: crate::upgrade::unix_now(),
    };
    let (state, id) = (parted.state.clone(), machine_id.to_string());
    let copied = blocking("carry", move || {
        let floor = crate::trust::floor::current().render();
        carry::with_mounted(&state, |root| carry::carry(Path::new("/var"), root, &id, &floor, &record))
    })
    .await?;
    log::info!("install.carried items={}", copied.join(","));
    let slots = parted.slots.clone();
    let order = blocking("boot-entry", move || {
        let vars = Vars::system();
        crate::upgrade::boot_entries::make_default(&vars, &slots, Slot::A)
    })
    .await?;
    log::info!("install.boot_entry slot=A boot_order={order:04x?}");
    let p = parted.clone();
    blocking("complete", move || disk::complete(&p)).await?;
    log::info!(
        "install.done disk={} generation={generation} ms={}",
        parted.disk.display(),
        crate::clock::ms(started.elapsed())
    );
    Ok(())
}
