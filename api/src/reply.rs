//! The replies the handlers build, from the wire types keelctl reads too (`keel_config::status`).

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_config::status::{ApiError, Refused};

/// `{"error": code, "detail": ...}` with `status`.
pub fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (status, Json(ApiError { detail: detail.into(), error: code.into() })).into_response()
}

/// `{"accepted": false, "reason": code, "detail": ...}` with `status` (from [`crate::refusals`]; 409 if it is
/// not an HTTP status).
pub fn refused(status: u16, reason: &str, detail: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
    (status, Json(Refused { accepted: false, detail: detail.into(), reason: reason.into() })).into_response()
}

/// A body that is not the JSON the endpoint takes: its 4xx (400 syntax, 415 content type, 413 too large, 422
/// shape) with axum's reason.
pub fn bad_request(e: JsonRejection) -> Response {
    error(e.status(), "bad-request", e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn replies_keep_the_wire_shape_clients_read() {
        let (status, v) = body(error(StatusCode::NOT_FOUND, "not-found", "no such endpoint")).await;
        assert_eq!((status, v), (404, serde_json::json!({"error": "not-found", "detail": "no such endpoint"})));
        let (status, v) = body(refused(409, "replayed", "nonce n was used already")).await;
        let want = serde_json::json!({"accepted": false, "reason": "replayed", "detail": "nonce n was used already"});
        assert_eq!((status, v), (409, want));
        assert_eq!(body(refused(1, "x", "")).await.0, 409, "not a status: 409");
    }
}
