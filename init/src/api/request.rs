//! The request bodies and queries the API decodes, kept apart from the handlers so the fuzz targets
//! (`fuzz/fuzz_targets/api_request.rs`) decode exactly these types through the same axum extractors.

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
