//! The request bodies and queries the API decodes, kept apart from the handlers so the fuzz targets
//! (`fuzz/fuzz_targets/api_request.rs`) decode exactly these types through the same axum extractors.

/// `PUT /v1/config`.
#[derive(Debug, serde::Deserialize)]
pub struct Push {
    pub config: String,
    pub signature: String,
}

/// `POST /v1/reboot`, `POST /v1/poweroff`.
#[derive(Debug, serde::Deserialize)]
pub struct SignedCommand {
    pub command: String,
    pub signature: String,
}

/// `GET /v1/logs?follow=1`.
#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    pub follow: Option<String>,
}
