//! The node's side of the API's routes (`keel_api::router`, docs/api.md): [`NodeApi`] on the PID 1's state. The
//! route table, request decoding and reply shapes live in keel-api; here is what each endpoint does on the node.

use super::state::{AppState, Inner, StatusCache};
use super::status;
use crate::config::run::Submit;
use crate::config::store::Signed;
use crate::power;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_api::command::Refusal;
use keel_api::request::{Push, SignedCommand, UpgradeQuery};
use keel_api::{Action, Failure, NodeApi};
use keel_config::status::{ConfigAccepted, RunningConfig};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// How long PUT /v1/config waits for the node to converge before answering "accepted, still converging".
const CONVERGE_WAIT: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> axum::Router {
    keel_api::router(state)
}

fn power_action(a: Action) -> power::Action {
    match a {
        Action::Reboot => power::Action::Reboot,
        Action::Poweroff => power::Action::Poweroff,
    }
}

impl NodeApi for Inner {
    type Conn = Arc<super::limits::Conn>;

    async fn authorize(&self, conn: Option<Self::Conn>, req: Request, next: Next) -> Response {
        super::auth::authorize(self, conn, req, next).await
    }

    fn status(&self) -> Response {
        get_status(self)
    }

    fn running_config(&self) -> RunningConfig {
        status::running_config(&self.config)
    }

    async fn push_config(&self, push: Push) -> Result<ConfigAccepted, Failure> {
        put_config(self, push).await
    }

    async fn check_command(&self, cmd: SignedCommand, action: Action) -> Result<String, Failure> {
        check_command(self, cmd, action).await
    }

    fn act(&self, action: Action, signer: &str) {
        // Answer first, then act: the client hears the outcome before the node goes down.
        power::after_reply(&self.power, power_action(action), format!("api:{signer}"));
    }

    fn logs(&self, follow: bool, conn: Option<Self::Conn>) -> Response {
        logs(self, follow, conn)
    }

    fn metrics(&self) -> Response {
        super::metrics::metrics(self)
    }

    async fn upgrade(&self, query: UpgradeQuery, body: axum::body::Body) -> Response {
        super::upgrade::put_upgrade(self, query, body).await
    }
}

/// How long a rendered `/v1/status` is served again: under many readers, the node renders it four times a
/// second instead of once per request. A config accepted or converged, or any write request answered (a refused
/// push changes `last_rejection`), makes a fresh one at once.
const STATUS_FRESH: Duration = Duration::from_millis(250);

fn get_status(s: &Inner) -> Response {
    let applied = s.config.applied.borrow().as_ref().map(|a| a.generation);
    let writes = s.gates.writes_done.load(std::sync::atomic::Ordering::Relaxed);
    let generations = (applied, *s.config.converged.borrow(), writes);
    let mut cache = s.status_cache.lock().unwrap_or_else(|p| p.into_inner());
    let body = match cache.as_ref() {
        Some(c) if c.generations == generations && c.at.elapsed() < STATUS_FRESH => c.body.clone(),
        _ => {
            let body = axum::body::Bytes::from(serde_json::to_string(&render_status(s)).unwrap_or_default());
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

async fn put_config(s: &Inner, push: Push) -> Result<ConfigAccepted, Failure> {
    let (reply, outcome) = oneshot::channel();
    let signed = Signed { text: push.config.into_bytes(), sig: push.signature.into_bytes() };
    let mut converged = s.config.converged.clone();
    if s.config.submit.send(Submit { source: "api".into(), signed, reply: Some(reply) }).await.is_err() {
        return Err(Failure::Unavailable("the config pipeline is not running"));
    }
    match outcome.await {
        Ok(Ok(generation)) => {
            // Held for this node's rollout turn: nothing converges before then, so the answer says when.
            let held = s.config.waiting.borrow().clone().filter(|w| w.generation == generation);
            if let Some(w) = held {
                let waiting_rollout = Some(status::rollout_waiting(&w));
                return Ok(ConfigAccepted { accepted: true, converged: false, generation, waiting_rollout });
            }
            let done = tokio::time::timeout(CONVERGE_WAIT, converged.wait_for(|g| g.is_some_and(|g| g >= generation)));
            let converged = matches!(done.await, Ok(Ok(_)));
            Ok(ConfigAccepted { accepted: true, converged, generation, waiting_rollout: None })
        }
        Ok(Err(r)) => Err(Failure::Refused(Refusal::new(r.code, r.detail))),
        Err(_) => Err(Failure::Unavailable("the config pipeline did not answer")),
    }
}

async fn check_command(s: &Inner, cmd: SignedCommand, action: Action) -> Result<String, Failure> {
    let name = action.name();
    if let Err(e) = &s.allowed {
        return Err(Failure::Refused(Refusal::new("untrusted-image", e.clone())));
    }
    // The signature check and the nonce record's fsync run on a blocking thread, never on PID 1's event loop;
    // commands are checked one at a time (the lock), so a nonce is never accepted twice.
    let verified = {
        let (allowed, nonces, machine_id) = (s.allowed.clone(), s.nonces.clone(), s.machine_id.clone());
        crate::fsutil::off_loop("command check", move || {
            let Ok(allowed) = &allowed else { return Err(None) };
            let mut nonces = nonces.lock().unwrap_or_else(|p| p.into_inner());
            nonces.verify(&cmd.command, &cmd.signature, allowed, &machine_id, name, SystemTime::now()).map_err(Some)
        })
        .await
    };
    match verified {
        Ok(Ok(v)) => {
            log::info!("api.command action={name} signer={}", crate::logging::q(&v.signer));
            Ok(v.signer)
        }
        Ok(Err(Some(r))) => {
            log::warn!("api.command_refused action={name} reason={} detail={}", r.code, crate::logging::q(&r.detail));
            Err(Failure::Refused(r))
        }
        Ok(Err(None)) | Err(_) => Err(Failure::Unavailable("the command could not be checked")),
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
fn logs(s: &Inner, follow: bool, conn: Option<Arc<super::limits::Conn>>) -> Response {
    let permit = match follow {
        false => None,
        true => match s.gates.followers.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let detail = format!("{} log streams are open already; try later", super::limits::MAX_FOLLOWERS);
                return keel_api::reply::error(axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy", detail);
            }
        },
    };
    let entries = crate::logging_ring::since(0);
    let next = entries.last().map_or(0, |e| e.seq + 1);
    let text: String = entries.iter().map(log_line).collect();
    if !follow {
        return ([("content-type", "text/plain; charset=utf-8")], text).into_response();
    }
    if let Some(c) = conn {
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
