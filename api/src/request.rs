//! The request bodies and queries the API decodes (through the router's axum extractors, in the node and in the
//! fuzz target `api_request` alike).

/// `PUT /v1/config`.
#[derive(Debug, serde::Deserialize)]
pub struct Push {
    pub config: String,
    /// Missing is the same as empty: refused `unsigned` (403), not a JSON error.
    #[serde(default)]
    pub signature: String,
}

/// `POST /v1/reboot`, `POST /v1/poweroff`.
#[derive(Debug, serde::Deserialize)]
pub struct SignedCommand {
    pub command: String,
    /// Missing is refused `unsigned` (403).
    #[serde(default)]
    pub signature: String,
}

/// `GET /v1/logs?follow=1`.
#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    pub follow: Option<String>,
}

impl LogQuery {
    /// `follow=1` or `follow=true`: keep streaming new lines.
    pub fn follows(&self) -> bool {
        matches!(self.follow.as_deref(), Some("1") | Some("true"))
    }
}

/// `PUT /v1/upgrade?sha256=HEX&version=V`: the image's pinned hash and the version it claims (both optional).
#[derive(Debug, Default, serde::Deserialize)]
pub struct UpgradeQuery {
    pub sha256: Option<String>,
    pub version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_signature_is_an_empty_one_refused_as_unsigned_not_a_json_error() {
        let push: Push = serde_json::from_str(r#"{"config": "version = 1"}"#).unwrap();
        assert_eq!((push.config.as_str(), push.signature.as_str()), ("version = 1", ""));
        let cmd: SignedCommand = serde_json::from_str(r#"{"command": "action = \"reboot\""}"#).unwrap();
        assert!(cmd.signature.is_empty());
        assert!(serde_json::from_str::<Push>(r#"{"signature": "x"}"#).is_err(), "the config itself is required");
    }
}
