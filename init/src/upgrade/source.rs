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

/// Watches the applied config and installs the upgrade it names.
pub async fn run(mut applied: watch::Receiver<Option<Arc<Applied>>>, power: mpsc::Sender<Request>) {
    let mut seen: Option<(u64, Upgrade)> = None;
    loop {
        let current = applied.borrow_and_update().clone();
        if let Some(a) = current {
            if let Some(want) = &a.config.upgrade {
                let key = (a.generation, want.clone());
                if seen.as_ref() != Some(&key) {
                    seen = Some(key);
                    if attempt(want, a.generation).await {
                        let reason = "upgrade from config".to_string();
                        let _ = power.send(Request { action: Action::Reboot, reason }).await;
                        return;
                    }
                }
            }
        }
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// One try: fetch, then install. True when the node should reboot into the new slot.
async fn attempt(want: &Upgrade, generation: u64) -> bool {
    if let Err(why) = should_fetch(&super::status(), want) {
        log::info!("upgrade.source_skipped generation={generation} sha256={} reason={}", want.sha256, q(&why));
        return false;
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
            return false;
        }
    };
    let allowed = match std::fs::read_to_string(crate::config::run::ALLOWED_SIGNERS)
        .map_err(|e| e.to_string())
        .and_then(|t| keel_config::sshsig::AllowedSigners::parse("allowed_signers", &t).map_err(|e| e.to_string()))
    {
        Ok(a) => a,
        Err(e) => {
            log::error!("upgrade.untrusted_image error={}", q(&e));
            return false;
        }
    };
    let sha = want.sha256.clone();
    let done = tokio::task::spawn_blocking(move || super::install(&sig, &image, Some(&sha), &allowed)).await;
    match done {
        Ok(Ok(_)) => true,
        Ok(Err(r)) => {
            log::warn!("upgrade.source_refused url={} reason={} detail={}", q(&want.url), r.code, q(&r.detail));
            false
        }
        Err(e) => {
            log::error!("upgrade.source_failed error={}", q(&e.to_string()));
            false
        }
    }
}

async fn fetch(url: &str, max: usize) -> Result<Vec<u8>, String> {
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
}
