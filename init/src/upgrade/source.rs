//! The config as an upgrade source: `[upgrade] url = …, sha256 = …` names a slot image; its `keel-image`
//! signature is at the same URL plus `.sig`. The node downloads and installs it (the same checks and writes as
//! `PUT /v1/upgrade`) once per image: not while a trial is due, and not again after that image was committed or
//! rolled back, so a broken image named by the config cannot make the node loop.

use super::Status;
use crate::config::http;
use crate::config::pipeline::Applied;
use crate::logging::q;
use crate::power::{Action, Request};
use keel_config::model::Upgrade;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether to fetch `want` now; Err says why not (logged once per config).
pub fn should_fetch(status: &Status, want: &Upgrade) -> Result<(), String> {
    if let Some(why) = &status.unsupported {
        return Err(format!("upgrades are not possible here: {why}"));
    }
    if let Some(p) = &status.pending {
        return Err(format!("slot {} waits for its trial boot", p.slot));
    }
    if status.writing {
        return Err("another upgrade is being written".into());
    }
    match &status.last {
        Some(last) if last.sha256 == want.sha256 => {
            Err(format!("this image was {} already", serde_json::to_string(&last.result).unwrap_or_default()))
        }
        _ => Ok(()),
    }
}

/// How one try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Installed: the node reboots into the new slot.
    Installed,
    /// Nothing more to do for this config (skipped, refused, or untrusted): tried again only for a new one.
    Settled,
    /// Failed on the way (fetch, a transient state): tried again after a backoff.
    Retry(String),
}

const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_CAP: Duration = Duration::from_secs(600);

/// Watches the applied config and installs the upgrade it names, once the network is up; a failed try is
/// retried with the init's backoff until it succeeds or a new config arrives.
pub async fn run(
    applied: watch::Receiver<Option<Arc<Applied>>>,
    network: watch::Receiver<bool>,
    power: mpsc::Sender<Request>,
) {
    let backoff = crate::retry::Backoff::new(RETRY_FIRST, RETRY_CAP);
    let tried = drive(applied, network, backoff, |want, generation| async move { attempt(&want, generation).await });
    if tried.await {
        let reason = "upgrade from config".to_string();
        let _ = power.send(Request { action: Action::Reboot, reason }).await;
    }
}

/// The loop of [`run`] around any `attempt`: true once an attempt installed an image, false when the config
/// pipeline is gone.
pub async fn drive<F, Fut>(
    mut applied: watch::Receiver<Option<Arc<Applied>>>,
    mut network: watch::Receiver<bool>,
    mut backoff: crate::retry::Backoff,
    mut attempt: F,
) -> bool
where
    F: FnMut(Upgrade, u64) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    // The (generation, upgrade) whose outcome is final; a new config (even naming the same image) is tried anew.
    let mut settled: Option<(u64, Upgrade)> = None;
    loop {
        let current = applied.borrow_and_update().clone();
        let want = current.and_then(|a| a.config.upgrade.clone().map(|u| (a.generation, u)));
        let mut retry_in = None;
        if let Some((generation, upgrade)) = want.filter(|w| settled.as_ref() != Some(w)) {
            // Nothing can be fetched before the network is up; a new config while waiting starts over.
            let ready = tokio::select! {
                r = network.wait_for(|up| *up) => r.is_ok(),
                changed = applied.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                    continue;
                }
            };
            if !ready {
                log::warn!("upgrade.source_stopped reason=network-controller-gone");
                return false;
            }
            match attempt(upgrade.clone(), generation).await {
                Attempt::Installed => return true,
                Attempt::Settled => {
                    settled = Some((generation, upgrade));
                    backoff.succeeded();
                }
                Attempt::Retry(why) => {
                    let wait = backoff.failed();
                    log::warn!(
                        "upgrade.source_retry generation={generation} failures={} retry_in_s={:.1} reason={}",
                        backoff.failures(),
                        wait.as_secs_f64(),
                        q(&why)
                    );
                    retry_in = Some(wait);
                }
            }
        }
        let retry = async {
            match retry_in {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return false;
                }
                backoff.succeeded();
            }
            _ = retry => {}
        }
    }
}

/// One try: fetch, then install.
async fn attempt(want: &Upgrade, generation: u64) -> Attempt {
    let status = super::status();
    if status.writing {
        return Attempt::Retry("another upgrade is being written".into());
    }
    if let Err(why) = should_fetch(&status, want) {
        log::info!("upgrade.source_skipped generation={generation} sha256={} reason={}", want.sha256, q(&why));
        return Attempt::Settled;
    }
    log::info!("upgrade.fetch generation={generation} url={} sha256={}", q(&want.url), want.sha256);
    let fetched = async {
        let image = fetch(&want.url, super::image::MAX_IMAGE).await?;
        let sig = fetch(&format!("{}.sig", want.url), 64 << 10).await?;
        Ok::<_, String>((image, String::from_utf8_lossy(&sig).into_owned()))
    };
    let (image, sig) = match fetched.await {
        Ok(f) => f,
        Err(e) => {
            log::warn!("upgrade.fetch_failed url={} error={}", q(&want.url), q(&e));
            return Attempt::Retry(e);
        }
    };
    let allowed = match crate::config::trust::allowed_signers() {
        Ok(a) => a,
        Err(e) => {
            log::error!("upgrade.untrusted_image error={}", q(&e));
            return Attempt::Settled;
        }
    };
    let sha = want.sha256.clone();
    let done =
        crate::fsutil::off_loop("upgrade install", move || super::install(&sig, &image, Some(&sha), &allowed)).await;
    match done {
        Ok(Ok(_)) => Attempt::Installed,
        Ok(Err(r)) => {
            log::warn!("upgrade.source_refused url={} reason={} detail={}", q(&want.url), r.code, q(&r.detail));
            Attempt::Settled
        }
        Err(e) => {
            log::error!("upgrade.source_failed error={}", q(&e.to_string()));
            Attempt::Retry(e.to_string())
        }
    }
}

pub(crate) async fn fetch(url: &str, max: usize) -> Result<Vec<u8>, String> {
    let parsed = http::parse_url(url).map_err(|e| e.to_string())?;
    let response = http::get(&parsed, None, FETCH_TIMEOUT, max).await.map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!("GET {url}: HTTP {}", response.status));
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::super::record::{Outcome, Pending, Verdict};
    use super::super::slots::Slot;
    use super::*;

    fn want(sha: &str) -> Upgrade {
        Upgrade { url: "http://h/slot.img".into(), sha256: sha.into() }
    }

    #[test]
    fn fetches_each_image_once_and_never_during_a_trial() {
        let idle = Status::default();
        assert_eq!(should_fetch(&idle, &want("aa")), Ok(()));
        let outcome = |result| Outcome { result, slot: Slot::B, sha256: "aa".into(), reason: String::new(), at: 0 };
        let committed = Status { last: Some(outcome(Verdict::Committed)), ..Status::default() };
        assert!(should_fetch(&committed, &want("aa")).unwrap_err().contains("committed"));
        assert_eq!(should_fetch(&committed, &want("bb")), Ok(()), "a different image is installed");
        let rolled_back = Status { last: Some(outcome(Verdict::RolledBack)), ..Status::default() };
        assert!(should_fetch(&rolled_back, &want("aa")).unwrap_err().contains("rolled-back"), "no retry loop");
        let pending = Pending { slot: Slot::B, from: Slot::A, sha256: "cc".into(), signer: "x".into(), at: 0 };
        let trial = Status { pending: Some(pending), ..Status::default() };
        assert!(should_fetch(&trial, &want("dd")).is_err());
        let pxe = Status { unsupported: Some("not booted by UEFI".into()), ..Status::default() };
        assert!(should_fetch(&pxe, &want("dd")).unwrap_err().contains("UEFI"));
    }

    fn applied(generation: u64, upgrade: Option<Upgrade>) -> Option<Arc<Applied>> {
        let text = format!("version = 1\ngeneration = {generation}\n");
        let mut config = keel_config::parse("node.toml", &text).unwrap();
        config.upgrade = upgrade;
        Some(Arc::new(Applied::for_tests(generation, config)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_retried_with_backoff_after_the_network_is_up() {
        let (config_tx, config) = watch::channel(applied(4, Some(want("aa"))));
        let (net_tx, net) = watch::channel(false);
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let backoff = crate::retry::Backoff::seeded(Duration::from_secs(5), Duration::from_secs(600), 3);
        let task = tokio::spawn(drive(config, net, backoff, move |w, generation| {
            let seen = seen.clone();
            async move {
                let mut c = seen.lock().unwrap();
                c.push((generation, w.sha256, tokio::time::Instant::now()));
                if c.len() < 3 {
                    Attempt::Retry("connect: refused".into())
                } else {
                    Attempt::Installed
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(calls.lock().unwrap().is_empty(), "fetched before the network was up");
        net_tx.send_replace(true);
        let installed = tokio::time::timeout(Duration::from_secs(3600), task).await.unwrap().unwrap();
        assert!(installed);
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 3, "two failures, then success");
        assert!(c.iter().all(|(g, sha, _)| *g == 4 && sha == "aa"));
        let gap1 = c[1].2 - c[0].2;
        let gap2 = c[2].2 - c[1].2;
        assert!(gap1 >= Duration::from_secs(4) && gap2 > gap1, "backoff grows: {gap1:?} {gap2:?}");
        drop(config_tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_outcome_is_not_retried_until_a_new_config() {
        let (config_tx, config) = watch::channel(applied(4, Some(want("aa"))));
        let (_net_tx, net) = watch::channel(true);
        let calls = Arc::new(std::sync::Mutex::new(0u32));
        let seen = calls.clone();
        let backoff = crate::retry::Backoff::seeded(Duration::from_secs(5), Duration::from_secs(600), 3);
        let task = tokio::spawn(drive(config, net, backoff, move |_, _| {
            *seen.lock().unwrap() += 1;
            async { Attempt::Settled }
        }));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(*calls.lock().unwrap(), 1);
        config_tx.send_replace(applied(5, Some(want("aa"))));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*calls.lock().unwrap(), 2, "a new generation is tried again");
        drop(config_tx);
        assert!(!tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap());
    }
}
