//! keel-config: the node config that Keel nodes accept, shared by the init (which applies it) and keelctl (which
//! writes, signs and checks it).
//!
//! - [`parse`] reads the TOML ([`raw`] types, `deny_unknown_fields`) and validates it into a typed [`Config`];
//!   every problem comes back as `file:line:col: key.path: message`, all of them at once for semantic errors.
//! - [`check_target`] and [`check_generation`] are the acceptance rules; a refusal is a [`Reason`] with a stable
//!   short code for log lines.
//! - [`sshsig`] verifies (and, for keelctl, makes) OpenSSH `SSHSIG` signatures against an `allowed_signers` file,
//!   exactly as `ssh-keygen -Y verify` does for the supported key types.
//! - [`status`]: the typed parts of the node's status, serialized by the node and read by keelctl.

// The PID 1 links this crate: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod accept;
pub mod credential;
mod diag;
mod diagnose;
pub mod model;
pub mod net;
pub mod raw;
pub mod rollout;
pub mod slot_manifest;
pub mod sshsig;
pub mod status;
pub mod storage;
mod time;
mod validate;

pub use accept::{check_generation, check_target, NodeFacts, Reason};
pub use diag::{Diagnostic, LoadError};
pub use diagnose::all_diagnostics;
pub use model::Config;
pub use time::{civil_from_days, days_from_civil, Timestamp};

use diag::Sink;
use raw::At;

/// The signature namespace for node configs (`ssh-keygen -Y sign -n keel-config`).
pub const NAMESPACE: &str = "keel-config";

/// The largest config a node reads; anything bigger is refused before parsing.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Parses and validates a config. `file` names it in diagnostics (e.g. `node.toml`).
pub fn parse(file: &str, text: &str) -> Result<Config, LoadError> {
    let sink = Sink::new(file, text);
    if text.len() > MAX_CONFIG_BYTES {
        return Err(LoadError::Malformed(sink.diagnostic(0, "", format!("larger than {MAX_CONFIG_BYTES} bytes"))));
    }
    // Look at `version` alone first: a config for a newer schema should say so, not list unknown keys.
    #[derive(serde::Deserialize)]
    struct Probe {
        version: Option<At<AnyInt>>,
    }
    let probe: Probe = toml::from_str(text).map_err(|e| malformed(&sink, e))?;
    match probe.version {
        None => return Err(LoadError::Malformed(sink.diagnostic(0, "", "missing key `version` (version = 1)"))),
        Some(v) if v.get().0 != Some(1) => {
            let msg = match v.get().0 {
                Some(n) => format!("unsupported config version {n}; this node understands version = 1"),
                None => "must be the integer 1".to_string(),
            };
            return Err(LoadError::Malformed(sink.diagnostic(v.span().start, "version", msg)));
        }
        Some(_) => {}
    }
    let doc: raw::Document = toml::from_str(text).map_err(|e| malformed(&sink, e))?;
    let mut sink = sink;
    let config = validate::document(&doc, &mut sink);
    let diags = sink.finish();
    if diags.is_empty() {
        Ok(config)
    } else {
        Err(LoadError::Invalid(diags))
    }
}

/// [`parse`] for bytes as read from a file: they must be UTF-8.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Config, LoadError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let text = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let msg = format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to());
            Err(LoadError::Malformed(Sink::new(file, &text).diagnostic(e.valid_up_to(), "", msg)))
        }
    }
}

/// A toml/serde error as one diagnostic. toml keeps the key path private but prints it as "in `a.b`" when the
/// error carries no input text, so it is read from there.
fn malformed(sink: &Sink, mut e: toml::de::Error) -> LoadError {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim_end().replace('\n', "; ");
    e.set_input(None);
    let shown = e.to_string();
    let path = shown.lines().find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`'))).unwrap_or("");
    LoadError::Malformed(sink.diagnostic(offset, path, message))
}

/// Any TOML value, keeping only whether it is an integer (smaller than going through `toml::Value`).
struct AnyInt(Option<i64>);

impl<'de> serde::Deserialize<'de> for AnyInt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AnyInt, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AnyInt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<AnyInt, E> {
                Ok(AnyInt(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<AnyInt, E> {
                Ok(AnyInt(i64::try_from(v).ok()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<AnyInt, E> {
                Ok(AnyInt(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<AnyInt, E> {
                Ok(AnyInt(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<AnyInt, E> {
                Ok(AnyInt(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<AnyInt, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnyInt(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<AnyInt, A::Error> {
                while a.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnyInt(None))
            }
        }
        d.deserialize_any(Visitor)
    }
}
