//! OpenSSH public keys of the supported types, their wire blobs, fingerprints, and signature checks
//! (as OpenSSH's `sshkey_verify` does them for each type).

use sha2::{Digest, Sha256};

use super::wire::{b64_decode, b64_encode, Reader, Writer};

pub const ED25519: &str = "ssh-ed25519";
pub const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com";
pub const ECDSA_P256: &str = "ecdsa-sha2-nistp256";
pub const SK_ECDSA_P256: &str = "sk-ecdsa-sha2-nistp256@openssh.com";

/// A public key that can sign SSHSIG signatures. Security-key (`sk-`) keys carry their FIDO application string.
/// ECDSA points are kept as SEC1 bytes; they verify only with the crate's `ecdsa` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519([u8; 32]),
    SkEd25519 { key: [u8; 32], application: String },
    EcdsaP256(Vec<u8>),
    SkEcdsaP256 { point: Vec<u8>, application: String },
}

impl PublicKey {
    /// The key type name as in `ssh-ed25519 AAAA…`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => ED25519,
            PublicKey::SkEd25519 { .. } => SK_ED25519,
            PublicKey::EcdsaP256(_) => ECDSA_P256,
            PublicKey::SkEcdsaP256 { .. } => SK_ECDSA_P256,
        }
    }

    /// The short type `ssh-keygen -l` prints: `ED25519`, `ED25519-SK`, `ECDSA`, `ECDSA-SK`.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => "ED25519",
            PublicKey::SkEd25519 { .. } => "ED25519-SK",
            PublicKey::EcdsaP256(_) => "ECDSA",
            PublicKey::SkEcdsaP256 { .. } => "ECDSA-SK",
        }
    }

    pub fn from_blob(blob: &[u8]) -> Result<PublicKey, String> {
        let mut r = Reader::new(blob);
        let algorithm = r.str().map_err(|e| format!("public key: {e}"))?;
        let key = match algorithm {
            ED25519 | SK_ED25519 => {
                let raw = r.string().map_err(|e| format!("public key: {e}"))?;
                let key: [u8; 32] = raw.try_into().map_err(|_| "ed25519 public key is not 32 bytes".to_string())?;
                if algorithm == ED25519 {
                    PublicKey::Ed25519(key)
                } else {
                    PublicKey::SkEd25519 { key, application: application(&mut r)? }
                }
            }
            ECDSA_P256 | SK_ECDSA_P256 => {
                let curve = r.str().map_err(|e| format!("public key: {e}"))?;
                if curve != "nistp256" {
                    return Err(format!("{algorithm} key names curve {curve:?}, not nistp256"));
                }
                let point = r.string().map_err(|e| format!("public key: {e}"))?.to_vec();
                if point.len() != 65 || point[0] != 4 {
                    return Err("nistp256 public key is not an uncompressed point".into());
                }
                if algorithm == ECDSA_P256 {
                    PublicKey::EcdsaP256(point)
                } else {
                    PublicKey::SkEcdsaP256 { point, application: application(&mut r)? }
                }
            }
            other => return Err(unsupported(other)),
        };
        r.finish().map_err(|e| format!("public key: {e}"))?;
        Ok(key)
    }

    pub fn blob(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.string(self.algorithm().as_bytes());
        match self {
            PublicKey::Ed25519(key) => w.string(key),
            PublicKey::SkEd25519 { key, application } => w.string(key).string(application.as_bytes()),
            PublicKey::EcdsaP256(point) => w.string(b"nistp256").string(point),
            PublicKey::SkEcdsaP256 { point, application } => {
                w.string(b"nistp256").string(point).string(application.as_bytes())
            }
        };
        w.buf
    }

    /// `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.blob());
        format!("SHA256:{}", b64_encode(&digest).trim_end_matches('='))
    }

    /// From `type base64 [comment]` (an `.pub` file or the key part of an `allowed_signers` line).
    pub fn from_openssh(text: &str) -> Result<(PublicKey, String), String> {
        let mut words = text.split_ascii_whitespace();
        let algorithm = words.next().ok_or("no public key")?;
        let b64 = words.next().ok_or_else(|| format!("no key data after {algorithm:?}"))?;
        let blob = b64_decode(b64).map_err(|e| format!("key data: {e}"))?;
        let key = PublicKey::from_blob(&blob)?;
        if key.algorithm() != algorithm {
            return Err(format!("key data is a {} key but the line says {algorithm}", key.algorithm()));
        }
        Ok((key, words.collect::<Vec<_>>().join(" ")))
    }

    /// `type base64`, the form `.pub` files and `allowed_signers` use (without a comment).
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm(), b64_encode(&self.blob()))
    }

    /// Checks an SSH signature blob (`string type, …`) over `data` the way OpenSSH does for this key type.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(signature);
        let algorithm = r.str().map_err(|e| format!("signature: {e}"))?;
        if algorithm != self.algorithm() {
            return Err(format!("a {algorithm} signature from a {} key", self.algorithm()));
        }
        let sig = r.string().map_err(|e| format!("signature: {e}"))?;
        // Security keys sign the SHA-256 of the application and the data, with the authenticator's flags and counter.
        let sk_data = |application: &str, r: &mut Reader| -> Result<Vec<u8>, String> {
            let flags = r.u8().map_err(|e| format!("signature: {e}"))?;
            let counter = r.u32().map_err(|e| format!("signature: {e}"))?;
            let mut w = Writer::default();
            w.raw(&Sha256::digest(application)).u8(flags).u32(counter).raw(&Sha256::digest(data));
            Ok(w.buf)
        };
        match self {
            PublicKey::Ed25519(key) => {
                r.finish().map_err(|e| format!("signature: {e}"))?;
                ed25519(key, data, sig)
            }
            PublicKey::SkEd25519 { key, application } => {
                let signed = sk_data(application, &mut r)?;
                r.finish().map_err(|e| format!("signature: {e}"))?;
                ed25519(key, &signed, sig)
            }
            PublicKey::EcdsaP256(point) => {
                r.finish().map_err(|e| format!("signature: {e}"))?;
                ecdsa_p256(point, data, sig)
            }
            PublicKey::SkEcdsaP256 { point, application } => {
                let signed = sk_data(application, &mut r)?;
                r.finish().map_err(|e| format!("signature: {e}"))?;
                ecdsa_p256(point, &signed, sig)
            }
        }
    }
}

fn application(r: &mut Reader) -> Result<String, String> {
    r.str().map(str::to_string).map_err(|e| format!("security key application: {e}"))
}

fn unsupported(algorithm: &str) -> String {
    let hint = if algorithm.contains("cert") { " (certificates are not supported)" } else { "" };
    format!(
        "unsupported key type {algorithm:?}{hint}; use ssh-ed25519, ecdsa-sha2-nistp256, or their sk- security-key forms"
    )
}

const MISMATCH: &str = "the signature does not match the data";

fn ed25519(key: &[u8; 32], data: &[u8], sig: &[u8]) -> Result<(), String> {
    let sig = ed25519_compact::Signature::from_slice(sig).map_err(|_| "ed25519 signature is not 64 bytes")?;
    ed25519_compact::PublicKey::new(*key).verify(data, &sig).map_err(|_| MISMATCH.to_string())
}

/// ECDSA over SHA-256 of `data`; the signature is `mpint r, mpint s`.
#[cfg(feature = "ecdsa")]
fn ecdsa_p256(point: &[u8], data: &[u8], sig: &[u8]) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;

    let mut r = Reader::new(sig);
    let mut rs = r.mpint(32).map_err(|e| format!("ecdsa signature: {e}"))?;
    rs.extend(r.mpint(32).map_err(|e| format!("ecdsa signature: {e}"))?);
    r.finish().map_err(|e| format!("ecdsa signature: {e}"))?;
    let sig = p256::ecdsa::Signature::from_slice(&rs).map_err(|_| "ecdsa signature: r or s out of range")?;
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| "nistp256 public key is not on the curve")?;
    key.verify(data, &sig).map_err(|_| MISMATCH.to_string())
}

#[cfg(not(feature = "ecdsa"))]
fn ecdsa_p256(_point: &[u8], _data: &[u8], _sig: &[u8]) -> Result<(), String> {
    Err("this build verifies no ECDSA signatures (keel-config without its `ecdsa` feature)".into())
}
