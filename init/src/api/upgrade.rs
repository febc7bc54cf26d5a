//! `PUT /v1/upgrade`: a signed slot image, written to the inactive boot slot and verified before the answer; the
//! node then reboots into it for its trial (README, "Upgrades"). Body: the armored `keel-image` signature, then
//! the image. `?sha256=HEX` additionally pins the image's hash.

use super::routes::AppState;
use crate::power::{Action, Request};
use crate::upgrade::image::{self, Refusal};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::time::Duration;

/// The largest body: the image and its signature.
pub const MAX_UPGRADE_BODY: usize = image::MAX_IMAGE + (64 << 10);

#[derive(serde::Deserialize)]
pub struct UpgradeQuery {
    sha256: Option<String>,
}

fn http_status(code: &str) -> StatusCode {
    match code {
        "unsigned" | "bad-signature" | "unknown-key" => StatusCode::FORBIDDEN,
        "malformed" | "wrong-hash" | "too-big" | "not-a-slot-image" => StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported" | "busy" | "pending" | "downgrade" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn refused(r: &Refusal) -> Response {
    (http_status(r.code), Json(json!({"accepted": false, "reason": r.code, "detail": r.detail}))).into_response()
}

pub async fn put_upgrade(
    State(s): State<AppState>,
    Query(q): Query<UpgradeQuery>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = &s.allowed {
        return refused(&Refusal::new("untrusted-image", e.clone()));
    }
    let state = s.clone();
    let work = tokio::task::spawn_blocking(move || {
        let allowed = state.allowed.as_ref().map_err(|e| Refusal::new("untrusted-image", e.clone()))?;
        let (sig, img) = image::split_body(&body).inspect_err(|r| {
            log::warn!("upgrade.refused reason={} detail={}", r.code, crate::logging::q(&r.detail));
        })?;
        crate::upgrade::install(sig, img, q.sha256.as_deref(), allowed)
    });
    let done = match work.await {
        Ok(Ok(done)) => done,
        Ok(Err(r)) => return refused(&r),
        Err(e) => return refused(&Refusal::new("internal", e.to_string())),
    };
    let power = s.power.clone();
    let reason = format!("upgrade to slot {}", done.slot);
    // Answer first, then reboot into the trial.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = power.send(Request { action: Action::Reboot, reason }).await;
    });
    Json(json!({"accepted": true, "slot": done.slot, "sha256": done.sha256, "signer": done.signer,
                "bytes": done.bytes, "rebooting": true}))
    .into_response()
}
