//! Unencrypted OpenSSH ed25519 private keys (`-----BEGIN OPENSSH PRIVATE KEY-----`, OpenSSH's PROTOCOL.key):
//! read as ssh-keygen writes them, and written so that ssh-keygen reads them.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::key::{PublicKey, ED25519};
use super::wire::{armor, dearmor, Reader, Writer};

const LABEL: &str = "OPENSSH PRIVATE KEY";
const AUTH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// An ed25519 signing key and its comment.
pub struct PrivateKey {
    keypair: ed25519_compact::KeyPair,
    pub comment: String,
    /// OpenSSH's "checkint", repeated twice in the private section; it only detects a wrong passphrase.
    checkint: u32,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} {:?})", self.public_key().fingerprint(), self.comment)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("not an OpenSSH private key: {0}")]
    Format(String),
    #[error(
        "the key is encrypted ({cipher}); keel signs only with unencrypted keys: \
         remove the passphrase from a copy with `ssh-keygen -p -N '' -f COPY`"
    )]
    Encrypted { cipher: String },
    #[error(
        "unsupported private key type {0:?}; keel signs with ed25519 keys (`ssh-keygen -t ed25519` or keelctl keygen)"
    )]
    Unsupported(String),
}

impl PrivateKey {
    pub fn from_seed(seed: [u8; 32], comment: &str) -> PrivateKey {
        let keypair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        let digest = Sha256::digest(seed);
        let checkint = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        PrivateKey { keypair, comment: comment.to_string(), checkint }
    }

    /// A new key from the kernel's random pool.
    pub fn generate(comment: &str) -> std::io::Result<PrivateKey> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        Ok(PrivateKey::from_seed(seed, comment))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::Ed25519(*self.keypair.pk)
    }

    pub(crate) fn sign_raw(&self, data: &[u8]) -> [u8; 64] {
        *self.keypair.sk.sign(data, None)
    }

    pub fn parse(text: &str) -> Result<PrivateKey, KeyFileError> {
        let bytes = dearmor(LABEL, text).map_err(KeyFileError::Format)?;
        let format = |e: &str| KeyFileError::Format(e.to_string());
        let mut r = Reader::new(&bytes);
        if r.take(AUTH_MAGIC.len()).map_err(|_| format("too short"))? != AUTH_MAGIC {
            return Err(format("no openssh-key-v1 header"));
        }
        let cipher = r.str().map_err(format)?;
        let kdf = r.str().map_err(format)?;
        let _kdf_options = r.string().map_err(format)?;
        if cipher != "none" || kdf != "none" {
            return Err(KeyFileError::Encrypted { cipher: format!("cipher {cipher}, kdf {kdf}") });
        }
        if r.u32().map_err(format)? != 1 {
            return Err(format("holds more than one key"));
        }
        let public_blob = r.string().map_err(format)?;
        let private = r.string().map_err(format)?;
        r.finish().map_err(format)?;

        let mut p = Reader::new(private);
        let (check1, check2) = (p.u32().map_err(format)?, p.u32().map_err(format)?);
        if check1 != check2 {
            return Err(format("corrupt private section (check values differ)"));
        }
        let algorithm = p.str().map_err(format)?;
        if algorithm != ED25519 {
            return Err(KeyFileError::Unsupported(algorithm.to_string()));
        }
        let public = p.string().map_err(format)?;
        let secret = p.string().map_err(format)?;
        let comment = p.str().map_err(format)?.to_string();
        let padding = p.rest();
        if padding.len() >= 8 || padding.iter().enumerate().any(|(i, b)| usize::from(*b) != i + 1) {
            return Err(format("bad padding after the private key"));
        }
        let seed: [u8; 32] =
            secret.get(..32).and_then(|s| s.try_into().ok()).ok_or_else(|| format("ed25519 key too short"))?;
        let key = PrivateKey { checkint: check1, ..PrivateKey::from_seed(seed, &comment) };
        let derived = key.public_key().blob();
        if secret.len() != 64 || secret[32..] != *public || derived != public_blob {
            return Err(format("the public key does not belong to the private key"));
        }
        Ok(key)
    }

    /// The unencrypted OpenSSH private key file (ssh-keygen's format; store it with mode 0600).
    pub fn to_openssh(&self) -> String {
        let public_blob = self.public_key().blob();
        let mut p = Writer::default();
        p.u32(self.checkint).u32(self.checkint).string(ED25519.as_bytes()).string(&self.keypair.pk[..]);
        p.string(&self.keypair.sk[..]).string(self.comment.as_bytes());
        let mut pad = 1u8;
        while p.buf.len() % 8 != 0 {
            p.u8(pad);
            pad += 1;
        }
        let mut w = Writer::default();
        w.raw(AUTH_MAGIC).string(b"none").string(b"none").string(b"").u32(1).string(&public_blob).string(&p.buf);
        armor(LABEL, &w.buf)
    }

    /// The `.pub` line: `ssh-ed25519 AAAA… comment`.
    pub fn public_line(&self) -> String {
        let key = self.public_key().to_openssh();
        if self.comment.is_empty() {
            format!("{key}\n")
        } else {
            format!("{key} {}\n", self.comment)
        }
    }
}
