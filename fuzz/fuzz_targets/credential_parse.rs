//! The API credential parser (`Authorization: Keel-SSHSIG …` / `Bearer km1.…`) and its verifiers on arbitrary
//! input. The first byte picks the form: the header text as sent, or the binary SSHSIG blob behind either scheme
//! (so the wire parser is reached, not only the base64 decoder). Whatever parses must verify without panicking,
//! and a proof must never verify against an exporter it was not made for.
#![no_main]

use base64::Engine;
use keel_config::credential::{self, Credential};
use keel_config::sshsig::{AllowedSigners, PrivateKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn allowed() -> &'static AllowedSigners {
    static A: OnceLock<AllowedSigners> = OnceLock::new();
    A.get_or_init(|| {
        let key = |s| PrivateKey::from_seed([s; 32], "k").public_key().to_openssh();
        let text = format!(
            "reader namespaces=\"keel-read\" {}\nscraper namespaces=\"keel-metrics\" {}\nops {}\n",
            key(1),
            key(2),
            key(3)
        );
        AllowedSigners::parse("allowed_signers", &text).unwrap()
    })
}

fn check(header: &str) {
    let at = UNIX_EPOCH + Duration::from_secs(1_795_600_000);
    match credential::parse(header) {
        Ok(Credential::Proof(sig)) => {
            for exporter in [[0u8; 32], [0xA5; 32]] {
                if let Ok(id) = credential::verify_proof(&sig, &exporter, allowed(), at) {
                    panic!("a fuzzed proof verified: {id:?}");
                }
            }
            // What parses must round-trip through the header keelctl writes.
            let again = credential::parse(&credential::proof_header(&sig));
            assert_eq!(again, Ok(Credential::Proof(sig)));
        }
        Ok(Credential::Metrics(t)) => {
            let _ = credential::verify_metrics(&t, allowed(), "6b65656c0000400080000000000000a1", at);
        }
        Err(e) => assert!(!e.detail.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let b64 = || base64::engine::general_purpose::STANDARD.encode(rest);
    match mode % 3 {
        0 => check(&String::from_utf8_lossy(rest)),
        1 => check(&format!("Keel-SSHSIG {}", b64())),
        _ => check(&format!("Bearer km1.*.1900000000.{}", b64())),
    }
});
