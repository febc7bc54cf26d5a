//! The SSHSIG signature parser and verifier, and the allowed_signers parser, on arbitrary input. The first
//! byte picks what the rest is: armored text as sent, the binary blob inside the armor (so the wire parser is
//! reached, not only the base64 decoder), or an allowed_signers file.
#![no_main]

use base64::Engine;
use keel_config::sshsig::{self, AllowedSigners, PrivateKey, Signature};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn allowed() -> &'static AllowedSigners {
    static A: OnceLock<AllowedSigners> = OnceLock::new();
    A.get_or_init(|| {
        let key = PrivateKey::from_seed([7; 32], "ops").public_key().to_openssh();
        let text = format!(
            "ops namespaces=\"keel-config,keel-command\" {key}\n\
             *@example.com,!bad@example.com namespaces=\"keel-config\",valid-after=\"20240101\",valid-before=\"20300101Z\" {key}\n"
        );
        AllowedSigners::parse("allowed_signers", &text).unwrap()
    })
}

fn check(armored: &str) {
    let at = UNIX_EPOCH + Duration::from_secs(1_795_600_000);
    if let Ok(sig) = Signature::from_armored(armored) {
        // What parses must round-trip: the armor keelctl writes is what the node reads.
        assert_eq!(Signature::from_armored(&sig.to_armored()).as_ref(), Ok(&sig));
    }
    for ns in ["keel-config", "keel-command"] {
        if let Err(e) = sshsig::verify(b"message", armored, allowed(), None, ns, at) {
            let _ = (keel_config::Reason::from(&e).code(), e.to_string());
        }
    }
    let _ = sshsig::verify(b"message", armored, allowed(), Some("x@example.com"), "keel-config", at);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => check(&String::from_utf8_lossy(rest)),
        1 => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(rest);
            let lines: Vec<&str> =
                b64.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
            check(&format!("-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n", lines.join("\n")));
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(a) = AllowedSigners::parse("fuzz", &text) {
                let key = PrivateKey::from_seed([7; 32], "ops");
                let sig = sshsig::sign(b"message", &key, "keel-config", sshsig::HashAlg::Sha256);
                let at = UNIX_EPOCH + Duration::from_secs(1_795_600_000);
                let _ = sshsig::verify(b"message", &sig, &a, None, "keel-config", at);
            }
        }
        _ => {
            let _ = PrivateKey::parse(&String::from_utf8_lossy(rest));
        }
    }
});
