//! The signed command parser of the node API (`keel_api::command`, the crate the node serves its API from). The
//! fuzzed document is signed with a trusted key first, so what follows the signature check (the TOML document,
//! node, nonce, expiry and replay rules) is reached; with the first byte odd, the rest is split into a document
//! and a signature as sent, and the signature parser sees it too.
#![no_main]

use keel_api::command::{self, Nonces};
use keel_config::sshsig::{self, AllowedSigners, HashAlg, PrivateKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn keys() -> &'static (PrivateKey, AllowedSigners) {
    static K: OnceLock<(PrivateKey, AllowedSigners)> = OnceLock::new();
    K.get_or_init(|| {
        let key = PrivateKey::from_seed([7; 32], "ops");
        let line = format!("ops namespaces=\"keel-command\" {}", key.public_key().to_openssh());
        let allowed = AllowedSigners::parse("allowed_signers", &line).unwrap();
        (key, allowed)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (key, allowed) = keys();
    let now = UNIX_EPOCH + Duration::from_secs(1_795_600_000);
    let mut nonces = Nonces::default();
    let (text, sig) = if mode & 1 == 0 {
        let text = String::from_utf8_lossy(rest).into_owned();
        let sig = sshsig::sign(text.as_bytes(), key, command::NAMESPACE, HashAlg::Sha512);
        (text, sig)
    } else {
        let s = String::from_utf8_lossy(rest);
        let (t, g) = s.split_once('\0').unwrap_or((&s, ""));
        (t.to_string(), g.to_string())
    };
    let action = if mode & 2 == 0 { "reboot" } else { "poweroff" };
    let first = nonces.verify(&text, &sig, allowed, ID, action, now);
    if let Err(r) = &first {
        let _ = command::http_status(r);
    }
    // An accepted command is never accepted twice.
    if first.is_ok() {
        let again = nonces.verify(&text, &sig, allowed, ID, action, now);
        assert_eq!(again.err().map(|r| r.code), Some("replayed"));
    }
});
