//! Image indexes, manifests and configs from arbitrary bytes: no panic, bounded results.
#![no_main]

use keel_oci::manifest::{parse_manifest, Fetched, MAX_LAYERS};
use keel_oci::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let content_type = (mode & 2 != 0).then_some("application/vnd.docker.distribution.manifest.list.v2+json");
        match parse_manifest(content_type, body) {
            Ok(Fetched::Index(i)) => {
                assert!(i.manifests.len() <= MAX_LAYERS);
                let _ = i.linux_amd64();
            }
            Ok(Fetched::Manifest(m)) => {
                assert!(m.layers.len() <= MAX_LAYERS);
                let _ = m.total_size();
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    } else if let Ok(c) = ImageConfig::parse(body) {
        let _ = c.argv();
    }
});
