//! Image references (`host/path/name@sha256:…`) from arbitrary text: what parses must print back to itself and
//! build API paths that stay under /v2/.
#![no_main]

use keel_oci::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Reference::parse(&text) {
        Ok(r) => {
            assert_eq!(r.to_string(), text);
            assert!(!r.repository.split('/').any(|c| c == ".." || c.is_empty()));
            assert!(r.manifest_path().starts_with("/v2/"));
        }
        Err(e) => assert!(!e.why.is_empty()),
    }
});
