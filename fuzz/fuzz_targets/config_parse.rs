//! The node config parser and validator (keel-config), then the acceptance rules, on arbitrary bytes: what
//! every pulled or pushed config reaches once its signature verified. Nothing may panic; every diagnostic
//! must render.
#![no_main]

use keel_config::{check_generation, check_target, LoadError, NodeFacts};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    match keel_config::parse_bytes("fuzz.toml", data) {
        Ok(config) => {
            let facts = NodeFacts {
                machine_id: "0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
                macs: vec![keel_config::net::MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])],
                now: UNIX_EPOCH + Duration::from_secs(1_795_600_000),
            };
            if let Err(r) = check_target(&config, &facts) {
                let _ = (r.code(), r.to_string());
            }
            let _ = check_generation(config.generation, Some(7));
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = matches!(e, LoadError::Malformed(_));
            for d in e.diagnostics() {
                let _ = d.to_string();
            }
        }
    }
});
