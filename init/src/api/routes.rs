//! The HTTP handlers of the node API (docs/api.md). Every handler answers; none can take PID 1 down: bad input
//! is a 4xx with a JSON reason.

use super::request::{LogQuery, Push, SignedCommand};
use super::state::{AppState, Inner, StatusCache};
use super::status;
use crate::config::run::Submit;
use crate::config::store::Signed;
use crate::power::Action;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

pub const MAX_BODY: usize = 1 << 20;
/// How long PUT /v1/config waits for the node to converge before answering "accepted, still converging".
const CONVERGE_WAIT: Duration = Duration::from_secs(30);

fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (status, Json(json!({"error": code, "detail": detail.into()}))).into_response()
}

fn refusal(status: u16, reason: &str, detail: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
    (status, Json(json!({"accepted": false, "reason": reason, "detail": detail}))).into_response()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/status", get(get_status))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/reboot", post(|s, b| command(s, b, Action::Reboot)))
        .route("/v1/poweroff", post(|s, b| command(s, b, Action::Poweroff)))
        .route("/v1/logs", get(logs))
        .route("/metrics", get(super::metrics::metrics))
        .route("/v1/upgrade", axum::routing::put(super::upgrade::put_upgrade))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not-found", "no such endpoint; see docs/api.md") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::authorize))
        .with_state(state)
}

/// How long a rendered `/v1/status` is served again: under many readers, the node renders it four times a
/// second instead of once per request. A config accepted or converged, or any write request answered (a refused
/// push changes `last_rejection`), makes a fresh one at once.
const STATUS_FRESH: Duration = Duration::from_millis(250);

async fn get_status(State(s): State<AppState>) -> Response {
    let applied = s.config.applied.borrow().as_ref().map(|a| a.generation);
    let writes = s.gates.writes_done.load(std::sync::atomic::Ordering::Relaxed);
    let generations = (applied, *s.config.converged.borrow(), writes);
    let mut cache = s.status_cache.lock().unwrap_or_else(|p| p.into_inner());
    let body = match cache.as_ref() {
        Some(c) if c.generations == generations && c.at.elapsed() < STATUS_FRESH => c.body.clone(),
        _ => {
            let body = axum::body::Bytes::from(serde_json::to_string(&render_status(&s)).unwrap_or_default());
            *cache = Some(StatusCache { at: tokio::time::Instant::now(), generations, body: body.clone() });
            body
        }
    };
    drop(cache);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn render_status(s: &Inner) -> keel_config::status::NodeStatus {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0;
    let mut boot = crate::upgrade::boot_status();
    boot.ready_uptime_ms = load(&crate::metrics::READY_UPTIME_US);
    boot.init_ms = load(&crate::metrics::READY_INIT_US);
    crate::trust::secureboot::fill_boot(crate::trust::secureboot::current(), &mut boot);
    keel_config::status::NodeStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        machine_id: s.machine_id.clone(),
        hostname: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
        uptime_s: crate::clock::uptime().as_secs_f64(),
        boot,
        api: keel_config::status::ApiStatus {
            fingerprint: s.fingerprint.clone(),
            port: super::PORT,
            free: super::limits::free(&s.gates),
        },
        config: status::config(&s.config),
        controllers: status::controllers(&s.config),
        network: s.net.as_ref().map(|n| status::network(&n.borrow())),
        time: status::time(&s.time.borrow()),
        services: status::services(&s.config),
        storage: status::storage(&s.config),
        install: crate::install::install_status(),
        logs: s.config.logs.borrow().clone(),
        rollback: crate::trust::floor::rollback_status(),
        rss_kib: crate::procfs::self_rss_kib(),
    }
}

async fn get_config(State(s): State<AppState>) -> Json<Value> {
    Json(status::running_config(&s.config))
}

fn config_status(code: &str) -> u16 {
    super::refusals::status(super::refusals::Kind::Config, code)
}

async fn put_config(State(s): State<AppState>, body: Result<Json<Push>, JsonRejection>) -> Response {
    let Json(push) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), "bad-request", e.body_text()),
    };
    let (reply, outcome) = oneshot::channel();
    let signed = Signed { text: push.config.into_bytes(), sig: push.signature.into_bytes() };
    let mut converged = s.config.converged.clone();
    if s.config.submit.send(Submit { source: "api".into(), signed, reply: Some(reply) }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the config pipeline is not running");
    }
    match outcome.await {
        Ok(Ok(generation)) => {
            // Held for this node's rollout turn: nothing converges before then, so the answer says when.
            let held = s.config.waiting.borrow().clone().filter(|w| w.generation == generation);
            if let Some(w) = held {
                let waiting = status::rollout_waiting(&w);
                return Json(json!({"accepted": true, "generation": generation, "converged": false,
                                   "waiting_rollout": waiting}))
                .into_response();
            }
            let done = tokio::time::timeout(CONVERGE_WAIT, converged.wait_for(|g| g.is_some_and(|g| g >= generation)));
            let converged = matches!(done.await, Ok(Ok(_)));
            Json(json!({"accepted": true, "generation": generation, "converged": converged})).into_response()
        }
        Ok(Err(r)) => refusal(config_status(r.code), r.code, &r.detail),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the config pipeline did not answer"),
    }
}

async fn command(
    State(s): State<AppState>,
    body: Result<Json<SignedCommand>, JsonRejection>,
    action: Action,
) -> Response {
    let Json(cmd) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), "bad-request", e.body_text()),
    };
    if let Err(e) = &s.allowed {
        return refusal(
            super::refusals::status(super::refusals::Kind::Command, "untrusted-image"),
            "untrusted-image",
            e,
        );
    }
    let name = action.to_string();
    // The signature check and the nonce record's fsync run on a blocking thread, never on PID 1's event loop;
    // commands are checked one at a time (the lock), so a nonce is never accepted twice.
    let verified = {
        let (s, name) = (s.clone(), name.clone());
        crate::fsutil::off_loop("command check", move || {
            let Ok(allowed) = &s.allowed else { return Err(None) };
            let mut nonces = s.nonces.lock().unwrap_or_else(|p| p.into_inner());
            nonces.verify(&cmd.command, &cmd.signature, allowed, &s.machine_id, &name, SystemTime::now()).map_err(Some)
        })
        .await
    };
    let verified = match verified {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Some(r))) => Err(r),
        Ok(Err(None)) | Err(_) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the command could not be checked")
        }
    };
    match verified {
        Ok(v) => {
            log::info!("api.command action={name} signer={}", crate::logging::q(&v.signer));
            // Answer first, then act: the client hears the outcome before the node goes down.
            crate::power::after_reply(&s.power, action, format!("api:{}", v.signer));
            (StatusCode::ACCEPTED, Json(json!({"accepted": true, "action": name}))).into_response()
        }
        Err(r) => {
            log::warn!("api.command_refused action={name} reason={} detail={}", r.code, crate::logging::q(&r.detail));
            refusal(super::command::http_status(&r), r.code, &r.detail)
        }
    }
}

fn log_line(e: &crate::logging_ring::Entry) -> String {
    let source = match &e.source {
        crate::logging_ring::Source::Init => "keel".to_string(),
        crate::logging_ring::Source::Service { name, stream } => format!("{name}[{}]", stream.as_str()),
    };
    format!("{:>10.3} {:<5} {source}: {}\n", e.uptime_ms as f64 / 1000.0, e.level, e.text)
}

/// The ring buffer as text; with `?follow=1` new lines keep coming until the client goes away (at most
/// [`MAX_FOLLOWERS`](super::limits::MAX_FOLLOWERS) streams at once).
async fn logs(
    State(s): State<AppState>,
    conn: Option<axum::Extension<Arc<super::limits::Conn>>>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Response {
    let follow = matches!(q.follow.as_deref(), Some("1") | Some("true"));
    let permit = match follow {
        false => None,
        true => match s.gates.followers.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let detail = format!("{} log streams are open already; try later", super::limits::MAX_FOLLOWERS);
                return error(StatusCode::SERVICE_UNAVAILABLE, "busy", detail);
            }
        },
    };
    let entries = crate::logging_ring::since(0);
    let next = entries.last().map_or(0, |e| e.seq + 1);
    let text: String = entries.iter().map(log_line).collect();
    if !follow {
        return ([("content-type", "text/plain; charset=utf-8")], text).into_response();
    }
    if let Some(axum::Extension(c)) = conn {
        c.streaming();
    }
    let first = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(text) });
    // The permit lives in the stream's state: the place frees when the client goes away.
    let rest = futures_util::stream::unfold((next, permit), |(next, permit)| async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let fresh = crate::logging_ring::since(next);
            if let Some(last) = fresh.last() {
                let chunk: String = fresh.iter().map(log_line).collect();
                return Some((Ok(chunk), (last.seq + 1, permit)));
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(first, rest));
    ([("content-type", "text/plain; charset=utf-8")], body).into_response()
}
