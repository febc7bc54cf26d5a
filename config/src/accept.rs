//! Acceptance rules: whether a valid, signed config is for this node, still current, and newer than what runs.
//! Pure functions over facts the init gathers, so they are tested here and not on a booted node.

use std::fmt;
use std::time::SystemTime;

use crate::diag::LoadError;
use crate::model::Config;
use crate::net::{normalize_machine_id, MacAddr};
use crate::sshsig::VerifyError;
use crate::time::Timestamp;

/// What the init knows about the node it runs on.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The machine id (32 hex digits; a dashed UUID is accepted too).
    pub machine_id: String,
    /// The MAC addresses of all of the node's network interfaces.
    pub macs: Vec<MacAddr>,
    pub now: SystemTime,
}

/// Why a config was refused. [`Reason::code`] is a stable short word for log lines; `Display` gives the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No signature came with the config.
    Unsigned,
    /// The signature is corrupt, for another namespace, or does not verify.
    BadSignature {
        detail: String,
    },
    /// A good signature by a key that `allowed_signers` does not allow (at all, or for this namespace or time).
    UnknownKey {
        fingerprint: String,
        detail: String,
    },
    /// Not TOML, or not the config's shape.
    Malformed {
        detail: String,
    },
    /// Semantically invalid; `first` is the first problem of `errors`.
    Invalid {
        errors: usize,
        first: String,
    },
    /// `[node] uuid` or `mac` names another node.
    WrongNode {
        key: &'static str,
        wanted: String,
        have: String,
    },
    Expired {
        expires: Timestamp,
        now: Timestamp,
    },
    /// The generation is not above the applied one.
    NotNewer {
        new: u64,
        applied: u64,
    },
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::BadSignature { .. } => "bad-signature",
            Reason::UnknownKey { .. } => "unknown-key",
            Reason::Malformed { .. } => "malformed",
            Reason::Invalid { .. } => "invalid",
            Reason::WrongNode { .. } => "wrong-node",
            Reason::Expired { .. } => "expired",
            Reason::NotNewer { .. } => "not-newer",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unsigned => f.write_str("the config has no signature"),
            Reason::BadSignature { detail } => write!(f, "bad signature: {detail}"),
            Reason::UnknownKey { fingerprint, detail } => write!(f, "signed by {fingerprint}, not allowed: {detail}"),
            Reason::Malformed { detail } => f.write_str(detail),
            Reason::Invalid { errors: 1, first } => f.write_str(first),
            Reason::Invalid { errors, first } => write!(f, "{first} (and {} more)", errors - 1),
            Reason::WrongNode { key, wanted, have } => {
                write!(f, "the config is for {key} {wanted}; this node has {have}")
            }
            Reason::Expired { expires, now } => write!(f, "the config expired at {expires}; it is now {now}"),
            Reason::NotNewer { new, applied } => {
                write!(f, "generation {new} is not newer than the applied generation {applied}")
            }
        }
    }
}

impl From<&LoadError> for Reason {
    fn from(e: &LoadError) -> Reason {
        match e {
            LoadError::Malformed(d) => Reason::Malformed { detail: d.to_string() },
            LoadError::Invalid(ds) => {
                Reason::Invalid { errors: ds.len(), first: ds.first().map(ToString::to_string).unwrap_or_default() }
            }
        }
    }
}

impl From<&VerifyError> for Reason {
    fn from(e: &VerifyError) -> Reason {
        match e {
            VerifyError::UnknownKey { fingerprint, detail } => {
                Reason::UnknownKey { fingerprint: fingerprint.clone(), detail: detail.clone() }
            }
            other => Reason::BadSignature { detail: other.to_string() },
        }
    }
}

/// The config is for this node (`[node] uuid` / `mac`, when given) and has not expired (`[node] expires`).
pub fn check_target(config: &Config, node: &NodeFacts) -> Result<(), Reason> {
    let target = &config.target;
    if let Some(wanted) = &target.machine_id {
        let have = normalize_machine_id(&node.machine_id).unwrap_or_else(|| node.machine_id.clone());
        if *wanted != have {
            return Err(Reason::WrongNode { key: "uuid", wanted: wanted.clone(), have });
        }
    }
    if let Some(wanted) = target.mac {
        if !node.macs.contains(&wanted) {
            let have = if node.macs.is_empty() {
                "no MAC address".to_string()
            } else {
                node.macs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            };
            return Err(Reason::WrongNode { key: "mac", wanted: wanted.to_string(), have });
        }
    }
    if let Some(expires) = target.expires {
        let now = Timestamp::from_system(node.now);
        if now >= expires {
            return Err(Reason::Expired { expires, now });
        }
    }
    Ok(())
}

/// A config is applied only if its generation is above the applied one (none applied yet: any generation).
pub fn check_generation(new: u64, applied: Option<u64>) -> Result<(), Reason> {
    match applied {
        Some(applied) if new <= applied => Err(Reason::NotNewer { new, applied }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const TARGETED: &str = r#"
version = 1
generation = 3
[node]
uuid = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"
mac = "52:54:00:12:34:56"
expires = 2026-12-31T00:00:00Z
"#;

    fn facts(id: &str, macs: &[&str], unix: u64) -> NodeFacts {
        NodeFacts {
            machine_id: id.into(),
            macs: macs.iter().map(|m| m.parse().unwrap()).collect(),
            now: UNIX_EPOCH + Duration::from_secs(unix),
        }
    }

    const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const BEFORE: u64 = 1_798_675_199; // 2026-12-30T23:59:59Z

    #[test]
    fn a_matching_node_accepts() {
        let config = crate::parse("n.toml", TARGETED).unwrap();
        assert_eq!(check_target(&config, &facts(ID, &["02:00:00:00:00:01", "52:54:00:12:34:56"], BEFORE)), Ok(()));
        let dashed = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        assert_eq!(check_target(&config, &facts(dashed, &["52:54:00:12:34:56"], BEFORE)), Ok(()));
        let untargeted = crate::parse("n.toml", "version = 1\ngeneration = 1\n").unwrap();
        assert_eq!(check_target(&untargeted, &facts("", &[], u64::MAX / 4)), Ok(()));
    }

    #[test]
    fn another_node_is_refused() {
        let config = crate::parse("n.toml", TARGETED).unwrap();
        let other = "6b65656c000040008000000000000001";
        let err = check_target(&config, &facts(other, &["52:54:00:12:34:56"], BEFORE)).unwrap_err();
        assert_eq!(err.code(), "wrong-node");
        assert_eq!(err.to_string(), format!("the config is for uuid {ID}; this node has {other}"));
        let err = check_target(&config, &facts(ID, &["52:54:00:12:34:57"], BEFORE)).unwrap_err();
        assert_eq!(err.to_string(), "the config is for mac 52:54:00:12:34:56; this node has 52:54:00:12:34:57");
        let err = check_target(&config, &facts(ID, &[], BEFORE)).unwrap_err();
        assert_eq!(err.to_string(), "the config is for mac 52:54:00:12:34:56; this node has no MAC address");
    }

    #[test]
    fn an_expired_config_is_refused() {
        let config = crate::parse("n.toml", TARGETED).unwrap();
        let err = check_target(&config, &facts(ID, &["52:54:00:12:34:56"], BEFORE + 1)).unwrap_err();
        assert_eq!(err.code(), "expired");
        assert_eq!(err.to_string(), "the config expired at 2026-12-31T00:00:00Z; it is now 2026-12-31T00:00:00Z");
    }

    #[test]
    fn only_newer_generations_apply() {
        assert_eq!(check_generation(1, None), Ok(()));
        assert_eq!(check_generation(8, Some(7)), Ok(()));
        let err = check_generation(7, Some(7)).unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("not-newer", "generation 7 is not newer than the applied generation 7")
        );
        assert_eq!(check_generation(3, Some(7)), Err(Reason::NotNewer { new: 3, applied: 7 }));
    }

    #[test]
    fn every_reason_has_its_code() {
        let ts = Timestamp { unix_seconds: 0 };
        let all = [
            (Reason::Unsigned, "unsigned"),
            (Reason::BadSignature { detail: "x".into() }, "bad-signature"),
            (Reason::UnknownKey { fingerprint: "SHA256:x".into(), detail: "x".into() }, "unknown-key"),
            (Reason::Malformed { detail: "x".into() }, "malformed"),
            (Reason::Invalid { errors: 2, first: "n.toml:1:1: x".into() }, "invalid"),
            (Reason::WrongNode { key: "uuid", wanted: "a".into(), have: "b".into() }, "wrong-node"),
            (Reason::Expired { expires: ts, now: ts }, "expired"),
            (Reason::NotNewer { new: 1, applied: 1 }, "not-newer"),
        ];
        for (reason, code) in all {
            assert_eq!(reason.code(), code);
            assert!(!reason.to_string().is_empty());
        }
        let invalid = Reason::Invalid { errors: 3, first: "n.toml:1:1: x".into() };
        assert_eq!(invalid.to_string(), "n.toml:1:1: x (and 2 more)");
    }

    #[test]
    fn load_errors_map_to_malformed_or_invalid() {
        let malformed = crate::parse("n.toml", "version = 1\ngeneration = \n").unwrap_err();
        assert_eq!(Reason::from(&malformed).code(), "malformed");
        let invalid = crate::parse("n.toml", "version = 1\ngeneration = 0\n").unwrap_err();
        let reason = Reason::from(&invalid);
        assert_eq!(reason, Reason::Invalid { errors: 1, first: "n.toml:2:14: generation: must be at least 1".into() });
    }
}
