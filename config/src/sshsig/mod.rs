//! OpenSSH signatures (`SSHSIG`, OpenSSH's PROTOCOL.sshsig): what `ssh-keygen -Y sign` writes and
//! `ssh-keygen -Y verify -f allowed_signers -I principal -n namespace -s file.sig < file` accepts.
//!
//! Verification: ssh-ed25519, sk-ssh-ed25519@openssh.com and (feature `ecdsa`) ecdsa-sha2-nistp256 and
//! sk-ecdsa-sha2-nistp256@openssh.com keys; sha256 or sha512 message hashes. Signing: ed25519 keys.
//! The namespace is a parameter: `keel-config` for node configs, others (`keel-command`, `keel-image`) later.

mod allowed;
mod key;
mod private;
mod wire;

use std::time::SystemTime;

use sha2::{Digest, Sha256, Sha512};

pub use allowed::{match_list, AllowedSigners, AllowedSignersError, Entry};
pub use key::PublicKey;
pub use private::{KeyFileError, PrivateKey};
pub use wire::{b64_decode as wire_b64_decode, b64_encode as wire_b64_encode};
use wire::{Reader, Writer};

use crate::time::Timestamp;

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;
const LABEL: &str = "SSH SIGNATURE";

/// The hash of the message that is signed; ssh-keygen signs with sha512 unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(message).to_vec(),
            HashAlg::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// A parsed `-----BEGIN SSH SIGNATURE-----` blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key: PublicKey,
    pub namespace: String,
    pub hash: HashAlg,
    /// The SSH signature blob (`string type, string sig, …`).
    pub blob: Vec<u8>,
}

/// A signature that verified, and the `allowed_signers` line that allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principal asked for, or else the matching line's principals.
    pub principal: String,
    pub key: PublicKey,
    /// `SHA256:…`, as ssh-keygen prints it.
    pub fingerprint: String,
    /// The `allowed_signers` line that allowed the key.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not an SSH signature: {0}")]
    Armor(String),
    #[error("malformed SSH signature: {0}")]
    Format(String),
    #[error("the signature is for namespace {got:?}, not {expected:?}")]
    Namespace { expected: String, got: String },
    #[error("the signature by {fingerprint} does not verify: {detail}")]
    Invalid { fingerprint: String, detail: String },
    #[error("the signing key {fingerprint} is not allowed: {detail}")]
    UnknownKey { fingerprint: String, detail: String },
}

impl Signature {
    pub fn from_armored(text: &str) -> Result<Signature, VerifyError> {
        let bytes = wire::dearmor(LABEL, text).map_err(VerifyError::Armor)?;
        Signature::from_bytes(&bytes)
    }

    /// The binary SSHSIG structure (what the armor's base64 holds).
    pub fn from_bytes(bytes: &[u8]) -> Result<Signature, VerifyError> {
        let format = |e: &str| VerifyError::Format(e.to_string());
        let mut r = Reader::new(bytes);
        if r.take(MAGIC.len()).map_err(format)? != MAGIC {
            return Err(format("does not start with SSHSIG"));
        }
        let version = r.u32().map_err(format)?;
        if version != VERSION {
            return Err(VerifyError::Format(format!("version {version}; only version 1 is known")));
        }
        let key = PublicKey::from_blob(r.string().map_err(format)?).map_err(VerifyError::Format)?;
        let namespace = r.str().map_err(format)?.to_string();
        let _reserved = r.string().map_err(format)?;
        let hash = match r.str().map_err(format)? {
            "sha256" => HashAlg::Sha256,
            "sha512" => HashAlg::Sha512,
            other => {
                return Err(VerifyError::Format(format!("unsupported hash algorithm {other:?} (sha256 or sha512)")))
            }
        };
        let blob = r.string().map_err(format)?.to_vec();
        r.finish().map_err(format)?;
        Ok(Signature { key, namespace, hash, blob })
    }

    pub fn to_armored(&self) -> String {
        wire::armor(LABEL, &self.to_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(MAGIC).u32(VERSION).string(&self.key.blob()).string(self.namespace.as_bytes()).string(b"");
        w.string(self.hash.name().as_bytes()).string(&self.blob);
        w.buf
    }

    /// Checks the signature over a message whose hash (by `self.hash`) is `digest`, for `namespace`: for
    /// messages hashed as they stream by. Says nothing about whether the key is trusted.
    pub fn verify_digest(&self, namespace: &str, digest: &[u8]) -> Result<(), VerifyError> {
        if self.namespace != namespace {
            return Err(VerifyError::Namespace { expected: namespace.to_string(), got: self.namespace.clone() });
        }
        let data = signed_data_for_digest(namespace, self.hash, digest);
        self.key
            .verify(&data, &self.blob)
            .map_err(|detail| VerifyError::Invalid { fingerprint: self.key.fingerprint(), detail })
    }
}

/// What the key signs: the magic, the namespace, an empty reserved field, the hash name and the message's hash.
/// Public for signers other than [`sign`] (an agent, a security key, tests).
pub fn signed_data(namespace: &str, hash: HashAlg, message: &[u8]) -> Vec<u8> {
    signed_data_for_digest(namespace, hash, &hash.digest(message))
}

/// [`signed_data`] for a message already hashed with `hash`.
pub fn signed_data_for_digest(namespace: &str, hash: HashAlg, digest: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(MAGIC).string(namespace.as_bytes()).string(b"").string(hash.name().as_bytes()).string(digest);
    w.buf
}

/// Verifies `armored` (a `.sig` file) over `message` for `namespace`, then finds the key in `allowed` (for
/// `principal`, when given, like `-I`; else any line, like `-Y find-principals`). `now` is checked against
/// `valid-after` / `valid-before`. The checks run in ssh-keygen's order: format, namespace, signature, key.
pub fn verify(
    message: &[u8],
    armored: &str,
    allowed: &AllowedSigners,
    principal: Option<&str>,
    namespace: &str,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let sig = Signature::from_armored(armored)?;
    if sig.namespace != namespace {
        return Err(VerifyError::Namespace { expected: namespace.to_string(), got: sig.namespace });
    }
    let fingerprint = sig.key.fingerprint();
    let data = signed_data(namespace, sig.hash, message);
    sig.key
        .verify(&data, &sig.blob)
        .map_err(|detail| VerifyError::Invalid { fingerprint: fingerprint.clone(), detail })?;
    let entry = allowed
        .find(&sig.key, principal, namespace, Timestamp::from_system(now))
        .map_err(|detail| VerifyError::UnknownKey { fingerprint: fingerprint.clone(), detail })?;
    let principal = principal.map_or_else(|| entry.principals.clone(), str::to_string);
    Ok(Verified { principal, key: sig.key, fingerprint, line: entry.line })
}

/// Signs `message` for `namespace` with an ed25519 key; returns the armored `.sig` text ssh-keygen accepts.
pub fn sign(message: &[u8], key: &PrivateKey, namespace: &str, hash: HashAlg) -> String {
    sign_signature(message, key, namespace, hash).to_armored()
}

/// [`sign`], as the parsed structure.
pub fn sign_signature(message: &[u8], key: &PrivateKey, namespace: &str, hash: HashAlg) -> Signature {
    let raw = key.sign_raw(&signed_data(namespace, hash, message));
    let mut blob = Writer::default();
    blob.string(key::ED25519.as_bytes()).string(&raw);
    Signature { key: key.public_key(), namespace: namespace.to_string(), hash, blob: blob.buf }
}

#[cfg(test)]
mod tests;
