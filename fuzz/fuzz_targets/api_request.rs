//! The node API's request handling, in process and without sockets: bytes go through a tokio duplex pipe into
//! hyper's HTTP/1 server (built as init/src/api/mod.rs builds it) and an axum router with the node's routes,
//! body limit and extractors, decoding the node's own request types (init/src/api/request.rs) and checking
//! signed commands with the node's code (init/src/api/command.rs). The handlers stop where the node would
//! touch its state (the config pipeline, power): those are reached only with valid signatures.
//!
//! The first byte picks the shape: raw HTTP bytes as a client sends them, or a well-formed head for one of the
//! endpoints with the rest as its body or query (so the JSON and query decoders are reached quickly).
#![no_main]

// command.rs takes its HTTP statuses from the one refusal table.
#[path = "../../init/src/api/refusals.rs"]
#[allow(dead_code)]
mod refusals;
#[path = "../../init/src/api/command.rs"]
#[allow(dead_code)]
mod command;
#[path = "../../init/src/api/request.rs"]
mod request;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keel_config::sshsig::{self, AllowedSigners, PrivateKey};
use libfuzzer_sys::fuzz_target;
use request::{LogQuery, Push, SignedCommand};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// As init/src/api/routes.rs.
const MAX_BODY: usize = 1 << 20;
const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

struct Inner {
    allowed: AllowedSigners,
    nonces: Mutex<command::Nonces>,
}
type AppState = Arc<Inner>;

fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "detail": detail.into()}))).into_response()
}

async fn put_config(State(s): State<AppState>, body: Result<Json<Push>, JsonRejection>) -> Response {
    let Json(push) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), "bad-request", e.body_text()),
    };
    // The pipeline's first steps (init/src/config/pipeline.rs): signature, then parse and validate.
    let verified =
        sshsig::verify(push.config.as_bytes(), &push.signature, &s.allowed, None, "keel-config", SystemTime::now());
    if let Err(e) = verified {
        return error(StatusCode::FORBIDDEN, keel_config::Reason::from(&e).code(), e.to_string());
    }
    match keel_config::parse_bytes("api", push.config.as_bytes()) {
        Ok(c) => Json(json!({"accepted": true, "generation": c.generation})).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()),
    }
}

async fn command(
    State(s): State<AppState>,
    body: Result<Json<SignedCommand>, JsonRejection>,
    action: &str,
) -> Response {
    let Json(cmd) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), "bad-request", e.body_text()),
    };
    let verified = {
        let mut nonces = s.nonces.lock().unwrap_or_else(|p| p.into_inner());
        nonces.verify(&cmd.command, &cmd.signature, &s.allowed, ID, action, SystemTime::now())
    };
    match verified {
        Ok(_) => (StatusCode::ACCEPTED, Json(json!({"accepted": true, "action": action}))).into_response(),
        Err(r) => {
            let status = StatusCode::from_u16(command::http_status(&r)).unwrap_or(StatusCode::CONFLICT);
            (status, Json(json!({"accepted": false, "reason": r.code, "detail": r.detail}))).into_response()
        }
    }
}

async fn logs(Query(q): Query<LogQuery>) -> Response {
    let follow = matches!(q.follow.as_deref(), Some("1") | Some("true"));
    ([("content-type", "text/plain; charset=utf-8")], format!("follow={follow}\n")).into_response()
}

fn router() -> Router {
    let key = PrivateKey::from_seed([7; 32], "ops");
    let line = format!("ops namespaces=\"keel-config,keel-command\" {}", key.public_key().to_openssh());
    let state = Arc::new(Inner {
        allowed: AllowedSigners::parse("allowed_signers", &line).unwrap(),
        nonces: Mutex::new(command::Nonces::default()),
    });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/status", get(|| async { Json(json!({"version": "fuzz"})) }))
        .route("/v1/config", get(|| async { Json(json!({})) }).put(put_config))
        .route("/v1/reboot", post(|s, b| command(s, b, "reboot")))
        .route("/v1/poweroff", post(|s, b| command(s, b, "poweroff")))
        .route("/v1/logs", get(logs))
        .route("/metrics", get(|| async { "keel_uptime_seconds 1\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not-found", "no such endpoint; see docs/api.md") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn shaped(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else { return Vec::new() };
    let with_body = |head: &str| {
        let mut v = format!(
            "{head} HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            rest.len()
        )
        .into_bytes();
        v.extend_from_slice(rest);
        v
    };
    match mode % 5 {
        0 => with_body("PUT /v1/config"),
        1 => with_body("POST /v1/reboot"),
        2 => with_body("POST /v1/poweroff"),
        3 => {
            let mut v = b"GET /v1/logs?".to_vec();
            v.extend(rest.iter().filter(|b| !b.is_ascii_whitespace()));
            v.extend_from_slice(b" HTTP/1.1\r\nHost: n\r\n\r\n");
            v
        }
        _ => rest.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = shaped(data);
    let router = router();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(MAX_BODY * 2);
        let serve = tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(server);
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service)
                .await;
        });
        let _ = client.write_all(&input).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let _ = serve.await;
        // Whatever came back is HTTP (an HTTP/1.0 request gets an HTTP/1.0 answer).
        if !answer.is_empty() {
            assert!(answer.starts_with(b"HTTP/1."), "{:?}", String::from_utf8_lossy(&answer[..answer.len().min(80)]));
        }
    });
});
