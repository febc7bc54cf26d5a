//! The acceptance pipeline every config goes through, whatever its source (embedded, pulled, pushed):
//! verify signature → parse → validate → check target, expiry and generation → persist → publish.
//! Any failure is one clear line (`config.rejected reason=… source=…`), is kept in status, and leaves the running
//! config untouched.

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

#[cfg(test)]
impl Applied {
    /// An accepted config as the controllers see it, without the pipeline.
    pub fn for_tests(generation: u64, config: Config) -> Applied {
        Applied {
            generation,
            source: "test".into(),
            signer: "test".into(),
            fingerprint: "SHA256:test".into(),
            config,
            accepted_at: SystemTime::UNIX_EPOCH,
        }
    }
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
        (Pipeline { allowed, machine_id, store, highest, publish, last_rejection }, applied, rejections)
    }

    /// Runs a config through every check; on success it is persisted (unless it came from the store or the
    /// image) and published to the controllers.
    pub fn submit(&mut self, source: &str, signed: &Signed, mode: Mode) -> Result<u64, Rejection> {
        let result = self.check(source, signed, mode);
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
        let highest = self.highest.max(floor.generation);
        // The same generation as the highest is no rollback while the node runs nothing newer: at boot, and for
        // a diskless node fetching its current config again after a power cycle.
        let running = self.publish.borrow().as_ref().map(|a| a.generation);
        match highest {
            Some(h) if config.generation == h && running != Some(h) => {}
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
