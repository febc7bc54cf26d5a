//! Signed commands (docs/api.md, "Signed commands"): a small TOML document naming the action, the node's machine
//! id, a fresh nonce and an expiry, signed with the namespace `keel-command`.

use std::io::Read;

use serde_json::{json, Value};

use crate::signer::Signer;

/// The signature namespace for commands.
pub const NAMESPACE: &str = "keel-command";
/// How long a command stays valid; the node refuses more than 15 minutes.
pub const LIFETIME_S: u64 = 5 * 60;

/// 32 lowercase hex digits from the kernel's random source.
pub fn nonce() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The command document; `node` is already normalized (32 lowercase hex).
pub fn document(action: &str, node: &str, nonce: &str, expires: u64) -> String {
    format!("action = \"{action}\"\nnode = \"{node}\"\nnonce = \"{nonce}\"\nexpires = {expires}\n")
}

/// The request body for `POST /v1/<action>`.
pub fn request(action: &str, node: &str, nonce: &str, now: u64, signer: &Signer) -> Result<Value, String> {
    let doc = document(action, node, nonce, now + LIFETIME_S);
    let signature = signer.sign(doc.as_bytes(), NAMESPACE)?.to_armored();
    Ok(json!({"command": doc, "signature": signature}))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use keel_config::sshsig::{self, AllowedSigners, PrivateKey};

    use super::*;

    const NODE: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    #[test]
    fn nonces_are_fresh_hex() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn document_is_the_documented_toml() {
        let doc = document("reboot", NODE, "5f1c0c5e2a8b4d7e", 1_795_600_000);
        assert_eq!(
            doc,
            "action = \"reboot\"\nnode = \"0a1b2c3d4e5f60718293a4b5c6d7e8f9\"\nnonce = \"5f1c0c5e2a8b4d7e\"\n\
             expires = 1795600000\n"
        );
    }

    #[test]
    fn request_is_signed_for_keel_command_and_expires_in_five_minutes() {
        let key = PrivateKey::from_seed([7; 32], "ops");
        let now = 1_795_600_000;
        let signer = Signer::File(PrivateKey::from_seed([7; 32], "ops"));
        let body = request("poweroff", NODE, "abcdefabcdefabcdefabcdefabcdefab", now, &signer).unwrap();
        let doc = body["command"].as_str().unwrap();
        assert!(doc.contains("action = \"poweroff\"\n") && doc.contains(&format!("expires = {}\n", now + 300)));
        let line = format!("ops namespaces=\"keel-command\" {}", key.public_key().to_openssh());
        let allowed = AllowedSigners::parse("allowed", &line).unwrap();
        let sig = body["signature"].as_str().unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(now);
        let v = sshsig::verify(doc.as_bytes(), sig, &allowed, None, NAMESPACE, at).unwrap();
        assert_eq!(v.principal, "ops");
        // Not valid as a config signature.
        assert!(sshsig::verify(doc.as_bytes(), sig, &allowed, None, "keel-config", SystemTime::now()).is_err());
    }
}
