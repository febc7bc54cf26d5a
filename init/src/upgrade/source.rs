//! The config as an upgrade source: `[upgrade] url = …, sha256 = …` names a slot image; its `keel-image`
//! signature is at the same URL plus `.sig`. The node downloads and installs it (the same checks and writes as
//! `PUT /v1/upgrade`) once per image: not while a trial is due, and not again after that image was committed or
//! rolled back, so a broken image named by the config cannot make the node loop.

use super::Status;
use crate::config::http;
use crate::logging::q;
use crate::power::{Action, Request};
use keel_config::model::Upgrade;
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

/// What the upgrade source sees: the slots, whether the network is up, and which (generation, image) it is
/// done with (installed, skipped or refused: a broken image named by the config must not make the node loop).
#[derive(Debug, Clone)]
pub struct SourceObserved {
    pub status: Status,
    pub network: bool,
    pub settled: Option<(u64, Upgrade)>,
    pub generation: Option<u64>,
}

#[derive(Debug)]
pub enum SourceOp {
    /// Nothing to fetch for this config: why (logged once, then settled).
    Skip {
        generation: u64,
        upgrade: Upgrade,
        why: String,
    },
    Fetch {
        generation: u64,
        upgrade: Upgrade,
    },
}

impl std::fmt::Display for SourceOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceOp::Skip { upgrade, why, .. } => write!(f, "op=skip sha256={} why={}", upgrade.sha256, q(why)),
            SourceOp::Fetch { upgrade, .. } => {
                write!(f, "op=install url={} sha256={}", q(&upgrade.url), upgrade.sha256)
            }
        }
    }
}

/// Pure: the config's `[upgrade]` against the slots and what was done for this config.
pub fn plan(desired: &Option<Upgrade>, o: &SourceObserved) -> crate::controller::Plan<SourceOp> {
    use crate::controller::ItemState;
    let mut p = crate::controller::Plan::default();
    let (Some(want), Some(generation)) = (desired, o.generation) else { return p };
    let item = format!("image {}", want.sha256);
    if o.settled.as_ref().is_some_and(|(g, u)| *g == generation && u == want) {
        p.item(item, ItemState::Converged);
    } else if let Err(why) = should_fetch(&o.status, want) {
        // A write in progress (the API's) ends by itself: wait for it rather than settle.
        if o.status.writing {
            p.item(item, ItemState::Waiting(why));
        } else {
            p.op(item, SourceOp::Skip { generation, upgrade: want.clone(), why });
        }
    } else if !o.network {
        p.item(item, ItemState::Waiting("the network is not up".into()));
    } else {
        p.op(item, SourceOp::Fetch { generation, upgrade: want.clone() });
    }
    p
}

/// The upgrade source on the one runner. Not part of "converged": a config's convergence (and the trial of the
/// running slot) never waits for a download; its state is in the status.
pub struct Source {
    network: watch::Receiver<bool>,
    power: mpsc::Sender<Request>,
    settled: Option<(u64, Upgrade)>,
}

impl crate::controller::Controller for Source {
    const KIND: crate::registry::Kind = crate::registry::Kind::Upgrade;
    const AREA: &'static str = "upgrade.source";
    /// The slots change only through this node (its API, its trial): nothing drifts.
    const RESYNC: Duration = Duration::from_secs(3600);
    /// A write by the API in progress: look again soon.
    const POLL: Duration = Duration::from_secs(5);
    const BACKOFF_FIRST: Duration = RETRY_FIRST;
    const BACKOFF_CAP: Duration = RETRY_CAP;

    type Desired = Option<Upgrade>;
    type Observed = SourceObserved;
    type Op = SourceOp;
    /// The network came up (or went).
    type Event = ();

    async fn observe(&mut self, target: &crate::controller::Target<Option<Upgrade>>) -> Result<SourceObserved, String> {
        Ok(SourceObserved {
            status: super::status(),
            network: *self.network.borrow(),
            settled: self.settled.clone(),
            generation: target.generation,
        })
    }

    fn plan(desired: &Option<Upgrade>, observed: &SourceObserved) -> crate::controller::Plan<SourceOp> {
        plan(desired, observed)
    }

    async fn apply(&mut self, op: SourceOp, _generation: Option<u64>) -> Result<(), String> {
        match op {
            SourceOp::Skip { generation, upgrade, why } => {
                log::info!(
                    "upgrade.source_skipped generation={generation} sha256={} reason={}",
                    upgrade.sha256,
                    q(&why)
                );
                self.settled = Some((generation, upgrade));
                Ok(())
            }
            SourceOp::Fetch { generation, upgrade } => match attempt(&upgrade, generation).await {
                Attempt::Installed => {
                    self.settled = Some((generation, upgrade));
                    let reason = "upgrade from config".to_string();
                    let _ = self.power.send(Request { action: Action::Reboot, reason }).await;
                    Ok(())
                }
                Attempt::Settled => {
                    self.settled = Some((generation, upgrade));
                    Ok(())
                }
                Attempt::Retry(why) => Err(why),
            },
        }
    }

    /// Installing the image the config names follows the config.
    fn repairs(_op: &SourceOp) -> bool {
        false
    }
}

const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_CAP: Duration = Duration::from_secs(600);

/// Starts the upgrade source: it fetches and installs the image the config names once the network is up; a
/// failed try is retried with the runner's backoff until it succeeds or a new config arrives.
pub fn start(
    network: watch::Receiver<bool>,
    power: mpsc::Sender<Request>,
) -> (crate::controller::DesiredTx<Option<Upgrade>>, watch::Receiver<crate::controller::ControllerStatus>) {
    let (events, inbox) = mpsc::channel(4);
    let mut up = network.clone();
    crate::spawn_apart(move || async move {
        while up.changed().await.is_ok() {
            if events.send(()).await.is_err() {
                return;
            }
        }
    });
    crate::controller::runner::start_with(Source { network, power, settled: None }, inbox)
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

    fn observed(network: bool, settled: Option<(u64, Upgrade)>) -> SourceObserved {
        SourceObserved { status: Status::default(), network, settled, generation: Some(4) }
    }

    fn ops(p: crate::controller::Plan<SourceOp>) -> Vec<String> {
        p.ops.iter().map(|(_, op)| op.to_string()).collect()
    }

    #[test]
    fn waits_for_the_network_then_fetches_once_per_config() {
        use crate::controller::ItemState;
        let d = Some(want("aa"));
        let waiting = plan(&d, &observed(false, None));
        assert!(waiting.ops.is_empty());
        assert!(matches!(waiting.items[0].1, ItemState::Waiting(_)), "no fetch before the network is up");
        assert_eq!(ops(plan(&d, &observed(true, None))), ["op=install url=http://h/slot.img sha256=aa"]);
        // Done with (4, aa): nothing more for this config, even if it failed to boot and rolled back.
        let done = plan(&d, &observed(true, Some((4, want("aa")))));
        assert!(done.ops.is_empty() && done.items[0].1 == ItemState::Converged);
        // A new generation naming the same image is looked at anew (should_fetch then says why not).
        assert_eq!(ops(plan(&d, &observed(true, Some((3, want("aa")))))).len(), 1);
        assert!(
            plan(&None, &observed(true, None)).ops.is_empty() && plan(&None, &observed(true, None)).items.is_empty()
        );
    }

    #[test]
    fn an_image_that_cannot_be_installed_is_skipped_once_and_a_busy_writer_is_waited_for() {
        let d = Some(want("aa"));
        let mut o = observed(true, None);
        o.status.unsupported = Some("not booted by UEFI".into());
        assert!(ops(plan(&d, &o))[0].starts_with("op=skip sha256=aa"));
        let mut o = observed(true, None);
        o.status.writing = true;
        let p = plan(&d, &o);
        assert!(p.ops.is_empty() && matches!(p.items[0].1, crate::controller::ItemState::Waiting(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_retried_with_backoff_after_the_network_is_up() {
        // The runner's policy with the source's constants: a fetch from a closed port fails, is retried after
        // ~5 s, then ~10 s (±20%), and never before the network is up.
        let (net_tx, net) = watch::channel(false);
        let (power, _power_rx) = mpsc::channel(1);
        let (desired, status) = start(net, power);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("http://{closed}/slot.img");
        desired.send_replace(Some(crate::controller::Target::new(4, Some(Upgrade { url, sha256: "aa".into() }))));
        // Not on a multiple of the 5 s poll: the poll's pass and the network's event would both try at once.
        tokio::time::sleep(Duration::from_secs(62)).await;
        let s = status.borrow().clone();
        assert!(s.failures == 0 && s.waiting(), "waits for the network: {s:?}");
        net_tx.send_replace(true);
        let mut seen = Vec::new();
        let mut st = status.clone();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(3600), st.wait_for(|s| s.failures > seen.len() as u32))
                .await
                .expect("a retry")
                .expect("the runner runs");
            seen.push(tokio::time::Instant::now());
        }
        let (gap1, gap2) = (seen[1] - seen[0], seen[2] - seen[1]);
        assert!(gap1 >= Duration::from_secs(4) && gap2 > gap1, "backoff grows: {gap1:?} {gap2:?}");
        assert!(status.borrow().problems().iter().any(|p| p.contains("image aa")), "{:?}", status.borrow());
    }
}
