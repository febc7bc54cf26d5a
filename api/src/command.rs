//! Signed commands (reboot, poweroff): a small TOML document naming the node, the action, a nonce and an expiry
//! a few minutes ahead, signed by a trusted key in the `keel-command` namespace. Replays and expired or
//! far-future commands are refused. Verification is pure apart from the nonce memory, and unit-tested.

use keel_config::sshsig::{self, AllowedSigners};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "keel-command";
/// How far ahead a command may expire: a stolen signed command is useless after this.
pub const MAX_AHEAD: Duration = Duration::from_secs(15 * 60);

/// A refused command: the API's one refusal type (code and detail), shared with the credential checks.
pub use keel_config::credential::Refusal;

/// 403 for who signed, 422 for what was sent, 409 for when and where.
pub fn http_status(r: &Refusal) -> u16 {
    crate::refusals::status(crate::refusals::Kind::Command, r.code)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    action: String,
    node: String,
    nonce: String,
    expires: u64,
}

/// Nonces seen, each kept until its command expires. With a file (on the state volume), the memory outlives a
/// reboot: a reboot command captured on the wire cannot reboot the node again once it is back.
///
/// The rollback floor (`trust::floor`: a UEFI variable, and the state volume) holds them too, with the latest
/// time the node trusted: a diskless node still refuses a replay after a power cycle, and a nonce is forgotten
/// only once its command expired before that time, below which the clock never goes. So replay protection does
/// not rest on the wall clock alone.
#[derive(Default)]
pub struct Nonces {
    seen: BTreeMap<String, u64>,
    file: Option<(PathBuf, WriteFile)>,
    floor: Option<Box<dyn Floor>>,
}

/// How the nonce file is written. The node passes its one atomic durable write (`safe_fs::write_atomic`: temp
/// file, fsync, rename, fsync of the directory), so a remembered nonce survives a power cut right after the reply.
pub type WriteFile = fn(&Path, &[u8]) -> std::io::Result<()>;

/// At most this many unexpired commands are remembered in the floor (a UEFI variable has little room); one more is
/// refused (`too-many`) until some expire, at most [`MAX_AHEAD`] later.
pub const MAX_NONCES: usize = 64;

/// A memory that outlives power cycles without a disk (the node's rollback floor, `trust::floor`).
pub trait Floor: Send {
    /// The latest time the node trusted (seconds since 1970) and the nonces it holds, with their expiry.
    fn read(&self) -> (u64, BTreeMap<String, u64>);
    /// Keeps `nonce` (until `expires`) and raises the trusted time to `now`; Err when it could be kept nowhere.
    fn remember(&self, nonce: &str, expires: u64, now: u64) -> Result<(), String>;
}

pub struct Verified {
    pub signer: String,
}

fn now_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn normalize_id(id: &str) -> String {
    id.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase()
}

impl Nonces {
    /// The nonces remembered in `file` (lines `nonce expires`), written back with `write`; a missing or damaged
    /// file remembers nothing.
    pub fn load(file: PathBuf, write: WriteFile) -> Nonces {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let seen = text
            .lines()
            .filter_map(|l| {
                let (nonce, expires) = l.split_once(' ')?;
                Some((nonce.to_string(), expires.trim().parse().ok()?))
            })
            .collect();
        Nonces { seen, file: Some((file, write)), floor: None }
    }

    /// Also remembers in (and consults) `floor`.
    pub fn with_floor(mut self, floor: Box<dyn Floor>) -> Nonces {
        self.floor = Some(floor);
        self
    }

    /// Written before the command is acted on.
    fn save(&self) -> std::io::Result<()> {
        let Some((file, write)) = &self.file else { return Ok(()) };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text: String = self.seen.iter().map(|(n, e)| format!("{n} {e}\n")).collect();
        write(file, text.as_bytes())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &mut self,
        text: &str,
        signature: &str,
        allowed: &AllowedSigners,
        machine_id: &str,
        action: &str,
        now: SystemTime,
    ) -> Result<Verified, Refusal> {
        if signature.trim().is_empty() {
            return Err(Refusal::new("unsigned", "the command carries no signature"));
        }
        let verified = sshsig::verify(text.as_bytes(), signature, allowed, None, NAMESPACE, now).map_err(|e| {
            let reason = keel_config::Reason::from(&e);
            Refusal::new(
                if reason.code() == "unknown-key" { "unknown-key" } else { "bad-signature" },
                reason.to_string(),
            )
        })?;
        let doc: Document = toml::from_str(text).map_err(|e| Refusal::new("malformed", e.message().to_string()))?;
        if doc.action != action {
            return Err(Refusal::new(
                "wrong-action",
                format!("the command says {:?}, sent to /v1/{action}", doc.action),
            ));
        }
        if normalize_id(&doc.node) != normalize_id(machine_id) {
            return Err(Refusal::new("wrong-node", format!("for node {}, this is {machine_id}", doc.node)));
        }
        let ok_nonce = (16..=128).contains(&doc.nonce.len())
            && doc.nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_nonce {
            return Err(Refusal::new("malformed", "nonce must be 16..128 of A-Z a-z 0-9 - _"));
        }
        let (floor_time, kept) = self.floor.as_ref().map(|f| f.read()).unwrap_or_default();
        let now = now_secs(now).max(floor_time);
        self.seen.retain(|_, expires| *expires >= now);
        if doc.expires < now {
            return Err(Refusal::new("expired", format!("expired {} s ago", now - doc.expires)));
        }
        if doc.expires > now + MAX_AHEAD.as_secs() {
            return Err(Refusal::new("too-far", format!("expires more than {} s ahead", MAX_AHEAD.as_secs())));
        }
        if self.seen.contains_key(&doc.nonce) || kept.contains_key(&doc.nonce) {
            return Err(Refusal::new("replayed", format!("nonce {} was used already", doc.nonce)));
        }
        if self.floor.is_some() && kept.values().filter(|e| **e >= now).count() >= MAX_NONCES {
            return Err(Refusal::new(
                "too-many",
                format!("{MAX_NONCES} commands are still unexpired; try again when one expires"),
            ));
        }
        self.seen.insert(doc.nonce.clone(), doc.expires);
        let kept = match &self.floor {
            Some(f) => f.remember(&doc.nonce, doc.expires, now),
            None => Ok(()),
        };
        if let Err(e) = self.save().map_err(|e| e.to_string()).and(kept) {
            self.seen.remove(&doc.nonce);
            return Err(Refusal::new(
                "not-persisted",
                format!("cannot remember the nonce, so it could be replayed: {e}"),
            ));
        }
        Ok(Verified { signer: verified.principal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::sshsig::{sign, HashAlg, PrivateKey};

    const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn key() -> (PrivateKey, AllowedSigners) {
        let key = PrivateKey::from_seed([7u8; 32], "ops");
        let allowed = format!("ops namespaces=\"keel-command\" {}", key.public_key().to_openssh());
        (key, AllowedSigners::parse("allowed_signers", &allowed).unwrap())
    }

    fn doc(action: &str, node: &str, nonce: &str, expires: u64) -> String {
        format!("action = \"{action}\"\nnode = \"{node}\"\nnonce = \"{nonce}\"\nexpires = {expires}\n")
    }

    #[test]
    fn accepts_once_and_refuses_replays_and_bad_commands() {
        let (k, allowed) = key();
        let now = SystemTime::now();
        let t = now_secs(now);
        let mut nonces = Nonces::default();
        let ok = doc("reboot", ID, "abcdefghijklmnop", t + 60);
        let sig = sign(ok.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
        let v = nonces.verify(&ok, &sig, &allowed, ID, "reboot", now).unwrap();
        assert_eq!(v.signer, "ops");
        let code = |r: Result<Verified, Refusal>| r.err().map(|e| e.code);
        assert_eq!(code(nonces.verify(&ok, &sig, &allowed, ID, "reboot", now)), Some("replayed"));
        assert_eq!(code(nonces.verify(&ok, &sig, &allowed, ID, "poweroff", now)), Some("wrong-action"));
        let cases = [
            (doc("reboot", "ffffffffffffffffffffffffffffffff", "nonce-000000000001", t + 60), "wrong-node"),
            (doc("reboot", ID, "nonce-000000000002", t - 1), "expired"),
            (doc("reboot", ID, "nonce-000000000003", t + 3600), "too-far"),
            (doc("reboot", ID, "short", t + 60), "malformed"),
            ("action = 1".to_string(), "malformed"),
        ];
        for (text, want) in cases {
            let sig = sign(text.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
            assert_eq!(code(nonces.verify(&text, &sig, &allowed, ID, "reboot", now)), Some(want), "{text}");
        }
        let wrong_ns = sign(ok.as_bytes(), &k, "keel-config", HashAlg::Sha512);
        assert_eq!(code(nonces.verify(&ok, &wrong_ns, &allowed, ID, "reboot", now)), Some("bad-signature"));
        assert_eq!(code(nonces.verify(&ok, "", &allowed, ID, "reboot", now)), Some("unsigned"));
        let stranger = PrivateKey::from_seed([9u8; 32], "x");
        let other = doc("reboot", ID, "nonce-000000000009", t + 60);
        let sig = sign(other.as_bytes(), &stranger, NAMESPACE, HashAlg::Sha512);
        assert_eq!(code(nonces.verify(&other, &sig, &allowed, ID, "reboot", now)), Some("unknown-key"));
    }

    #[test]
    fn nonces_kept_in_a_file_are_refused_after_a_restart() {
        let (k, allowed) = key();
        let now = SystemTime::now();
        let t = now_secs(now);
        let dir = std::env::temp_dir().join(format!("keel-nonces-{}", std::process::id()));
        let file = dir.join("api/command-nonces");
        let write: WriteFile = |p, b| std::fs::write(p, b);
        let cmd = doc("reboot", ID, "nonce-persisted-0001", t + 60);
        let sig = sign(cmd.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
        assert!(Nonces::load(file.clone(), write).verify(&cmd, &sig, &allowed, ID, "reboot", now).is_ok());
        // A new PID 1 (after the reboot) reads the memory back and refuses the same command.
        let refused = Nonces::load(file.clone(), write).verify(&cmd, &sig, &allowed, ID, "reboot", now);
        assert_eq!(refused.err().map(|r| r.code), Some("replayed"));
        // Garbage in the file is ignored, not fatal; an unwritable place refuses rather than forgets.
        std::fs::write(&file, "junk\nnonce x\n").unwrap();
        let fresh = doc("reboot", ID, "nonce-persisted-0002", t + 60);
        let sig2 = sign(fresh.as_bytes(), &k, NAMESPACE, HashAlg::Sha512);
        assert!(Nonces::load(file.clone(), write).verify(&fresh, &sig2, &allowed, ID, "reboot", now).is_ok());
        let blocked = file.join("not-a-dir/nonces");
        let r = Nonces::load(blocked, write).verify(&cmd, &sig, &allowed, ID, "reboot", now);
        assert_eq!(r.err().map(|r| r.code), Some("not-persisted"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
