//! The acceptance pipeline every config goes through, whatever its source (embedded, pulled, pushed):
//! verify signature → parse → validate → check target, expiry and generation → persist → publish.
//! Any failure is one clear line (`config.rejected reason=… source=…`), is kept in status, and leaves the running
//! config untouched.

use super::rollout::{self, Gate, Held, Waiting};
use super::store::{Signed, Store};
use keel_config::sshsig::{self, AllowedSigners};
use keel_config::{check_generation, check_target, Config, NodeFacts, Reason};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// The config the node runs.
#[derive(Debug)]
pub struct Applied {
    pub generation: u64,
    pub source: String,
    pub signer: String,
    /// The signing key's `SHA256:…` fingerprint.
    pub fingerprint: String,
    pub config: Config,
    pub accepted_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A stable short word: unsigned, bad-signature, unknown-key, malformed, invalid, wrong-node, expired,
    /// not-newer, untrusted-image, not-persisted.
    pub code: &'static str,
    pub detail: String,
    pub source: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// How strict the generation check is: a new config must be newer; at boot the last-known-good may equal the
/// highest generation ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    New,
    Boot,
}

pub type AppliedRx = watch::Receiver<Option<Arc<Applied>>>;
pub type RejectionRx = watch::Receiver<Option<Rejection>>;

pub struct Pipeline {
    allowed: Result<AllowedSigners, String>,
    machine_id: String,
    store: Store,
    highest: Option<u64>,
    publish: watch::Sender<Option<Arc<Applied>>>,
    last_rejection: watch::Sender<Option<Rejection>>,
    /// A verified config whose rollout turn has not come for this node (never recorded as applied).
    held: Option<Held>,
    waiting: watch::Sender<Option<Waiting>>,
}

pub type WaitingRx = watch::Receiver<Option<Waiting>>;

/// The node's clock, never below the rollback floor's time (a clock reset to 1970 cannot expire-proof a config
/// or hold a rollout forever behind the last time the node knew).
fn node_now() -> SystemTime {
    let floor = crate::trust::floor::current();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(crate::trust::floor::now_at_least(&floor))
}

fn node_macs() -> Vec<keel_config::net::MacAddr> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("address")).ok())
        .filter_map(|a| crate::net::model::parse_mac(a.trim()))
        .filter(|m| *m != [0; 6])
        .map(keel_config::net::MacAddr)
        .collect()
}

impl Pipeline {
    /// `allowed_signers`: the image's trust file as text, or why there is none.
    pub fn new(
        allowed_signers: Result<String, String>,
        machine_id: String,
        store: Store,
    ) -> (Pipeline, AppliedRx, RejectionRx) {
        let allowed = allowed_signers.and_then(|text| super::trust::parse(&text));
        // The stricter of the state volume's record and the rollback floor (UEFI variable + state volume).
        let floor = crate::trust::floor::current();
        let highest = store.highest().max(floor.generation);
        let (publish, applied) = watch::channel(None);
        let (last_rejection, rejections) = watch::channel(None);
        let (waiting, _) = watch::channel(None);
        let pipeline = Pipeline { allowed, machine_id, store, highest, publish, last_rejection, held: None, waiting };
        (pipeline, applied, rejections)
    }

    /// What status shows of a config held for its rollout turn.
    pub fn waiting(&self) -> WaitingRx {
        self.waiting.subscribe()
    }

    fn set_held(&mut self, held: Option<Held>) {
        let shown = held.as_ref().map(|h| Waiting {
            generation: h.generation,
            applies_at: h.applies_at,
            slot: keel_config::rollout::slot(&self.machine_id),
            source: h.source.clone(),
        });
        self.held = held;
        self.waiting.send_replace(shown);
    }

    /// How long until the held config (if any) should be looked at again: at most [`rollout::RECHECK`].
    pub fn next_wake(&self) -> Option<std::time::Duration> {
        let now = keel_config::Timestamp::from_system(node_now());
        self.held.as_ref().map(|h| rollout::wake_in(h.applies_at, now))
    }

    /// Applies the held config if its time has come (re-checked: it may have expired meanwhile); None when there
    /// is nothing to do yet.
    pub fn apply_due(&mut self) -> Option<Result<u64, Rejection>> {
        let now = keel_config::Timestamp::from_system(node_now());
        if self.held.as_ref()?.applies_at > now {
            return None;
        }
        let held = self.held.take()?;
        self.set_held(None);
        log::info!(
            "config.rollout_due generation={} applies_at={} source={}",
            held.generation,
            held.applies_at,
            held.source
        );
        Some(self.submit_gated(&held.source, &held.signed, Mode::New, false))
    }

    /// Runs a config through every check; on success it is persisted (unless it came from the store or the
    /// image) and published to the controllers.
    pub fn submit(&mut self, source: &str, signed: &Signed, mode: Mode) -> Result<u64, Rejection> {
        self.submit_gated(source, signed, mode, true)
    }

    /// [`Pipeline::submit`]; `gated`: a new config waits for this node's rollout turn (false once it came).
    fn submit_gated(&mut self, source: &str, signed: &Signed, mode: Mode, gated: bool) -> Result<u64, Rejection> {
        // The config already held, sent again (pushed twice, or pulled after an ETag change): still waiting.
        if let Some(h) = self.held.as_ref().filter(|h| mode == Mode::New && h.signed == *signed) {
            log::info!(
                "config.waiting_rollout generation={} applies_at={} source={source}",
                h.generation,
                h.applies_at
            );
            return Ok(h.generation);
        }
        let result = self.check(source, signed, mode);
        if let (Ok(applied), Mode::New, true) = (&result, mode, gated) {
            let now = keel_config::Timestamp::from_system(node_now());
            if let Gate::Wait(at) = rollout::gate(applied.config.rollout.as_ref(), &self.machine_id, now) {
                let generation = applied.generation;
                log::info!(
                    "config.waiting_rollout generation={generation} applies_at={at} slot={:.6} source={source} \
                     running={}",
                    keel_config::rollout::slot(&self.machine_id),
                    self.publish.borrow().as_ref().map_or("none".to_string(), |a| a.generation.to_string())
                );
                if let Some(before) = &self.held {
                    log::info!("config.rollout_superseded generation={} by_generation={generation}", before.generation);
                }
                self.set_held(Some(Held {
                    source: source.to_string(),
                    signed: signed.clone(),
                    generation,
                    applies_at: at,
                }));
                return Ok(generation);
            }
        }
        match &result {
            Ok(applied) => {
                crate::metrics::bump(&crate::metrics::CONFIG_ACCEPTED);
                log::info!(
                    "config.accepted generation={} source={source} signer={} fingerprint={}",
                    applied.generation,
                    crate::logging::q(&applied.signer),
                    applied.fingerprint
                );
            }
            Err(r) => {
                crate::metrics::rejected(r.code);
                log::warn!("config.rejected reason={} source={source} detail={}", r.code, crate::logging::q(&r.detail));
                self.last_rejection.send_replace(Some(r.clone()));
            }
        }
        let applied = result?;
        let generation = applied.generation;
        if mode == Mode::New {
            let saved =
                self.store.save(signed, generation).map_err(|e| format!("cannot save it: {e}")).and_then(|()| {
                    let now = crate::trust::floor::now_at_least(&crate::trust::floor::Floor::default());
                    crate::trust::floor::raise(|f| {
                        f.generation = Some(generation);
                        f.time = now;
                    })
                    .map(drop)
                    .map_err(|e| format!("cannot raise the rollback floor, so it could be rolled back: {e}"))
                });
            if let Err(e) = saved {
                let r = Rejection { code: "not-persisted", detail: e, source: source.into() };
                log::error!(
                    "config.rejected reason={} source={source} detail={}",
                    r.code,
                    crate::logging::q(&r.detail)
                );
                self.last_rejection.send_replace(Some(r.clone()));
                return Err(r);
            }
        }
        self.highest = Some(self.highest.map_or(generation, |h| h.max(generation)));
        // A newer config supersedes one held for its rollout turn (that is how an operator halts a rollout).
        if self.held.is_some() {
            let before = self.held.as_ref().map_or(0, |h| h.generation);
            log::info!("config.rollout_superseded generation={before} by_generation={generation} source={source}");
            self.set_held(None);
        }
        self.publish.send_replace(Some(Arc::new(applied)));
        Ok(generation)
    }

    fn check(&self, source: &str, signed: &Signed, mode: Mode) -> Result<Applied, Rejection> {
        let reject =
            |reason: &Reason| Rejection { code: reason.code(), detail: reason.to_string(), source: source.into() };
        let allowed = self.allowed.as_ref().map_err(|e| Rejection {
            code: "untrusted-image",
            detail: format!("this image trusts no signing key ({e})"),
            source: source.into(),
        })?;
        if signed.sig.is_empty() {
            return Err(reject(&Reason::Unsigned));
        }
        let armored = String::from_utf8_lossy(&signed.sig);
        let verified = sshsig::verify(&signed.text, &armored, allowed, None, keel_config::NAMESPACE, SystemTime::now())
            .map_err(|e| reject(&Reason::from(&e)))?;
        let config = keel_config::parse_bytes(source, &signed.text).map_err(|e| reject(&Reason::from(&e)))?;
        // Expiry against the node's clock, never below the rollback floor's time.
        let floor = crate::trust::floor::current();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(crate::trust::floor::now_at_least(&floor));
        let facts = NodeFacts { machine_id: self.machine_id.clone(), macs: node_macs(), now };
        check_target(&config, &facts).map_err(|r| reject(&r))?;
        if mode == Mode::New && crate::trust::floor::state_lost() && floor.generation.is_none() {
            return Err(Rejection {
                code: "state-unavailable",
                detail: "keel.state names a state volume that could not be mounted and no UEFI variable holds the \
                         rollback floor: the node cannot prove which generations it has seen"
                    .into(),
                source: source.into(),
            });
        }
        // A config held for its rollout turn counts: nothing at or below it is accepted while it waits.
        let held = self.held.as_ref().map(|h| h.generation);
        let highest = self.highest.max(floor.generation).max(held);
        // The same generation as the highest is no rollback while the node runs nothing newer: at boot, and for
        // a diskless node fetching its current config again after a power cycle.
        let running = self.publish.borrow().as_ref().map(|a| a.generation);
        match highest {
            Some(h) if config.generation == h && running != Some(h) && held != Some(h) => {}
            _ => check_generation(config.generation, highest).map_err(|r| reject(&r))?,
        }
        Ok(Applied {
            generation: config.generation,
            source: source.to_string(),
            signer: verified.principal,
            fingerprint: verified.fingerprint,
            config,
            accepted_at: SystemTime::now(),
        })
    }
}
