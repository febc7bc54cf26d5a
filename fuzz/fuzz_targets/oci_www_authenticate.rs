//! The registry's `WWW-Authenticate` challenge and the token service's answer from arbitrary input.
#![no_main]

use keel_oci::auth::{parse_challenge, parse_token_response, token_url, Challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let text = String::from_utf8_lossy(rest);
        if let Ok(Challenge::Bearer { realm, service, scope }) = parse_challenge(&text) {
            assert!(realm.starts_with("https://") || realm.starts_with("http://"));
            let url = token_url(&realm, service.as_deref(), scope.as_deref());
            assert!(url.starts_with(&realm));
        }
    } else if let Ok(t) = parse_token_response(rest) {
        assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
    }
});
