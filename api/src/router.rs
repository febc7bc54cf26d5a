//! The route table: every endpoint of docs/api.md, the fallback, the body limit, JSON rejections as 4xx with
//! axum's reason, and the node's credential check in front of every handler. Every handler answers; none can take
//! the node down: bad input is a 4xx with a JSON reason.

use crate::refusals::{self, Kind};
use crate::reply;
use crate::request::{LogQuery, Push, SignedCommand, UpgradeQuery};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use keel_config::credential::Refusal;
use keel_config::status::{CommandAccepted, ConfigAccepted, RunningConfig};
use std::future::Future;
use std::sync::Arc;

/// The largest JSON body (a config push, a command); `PUT /v1/upgrade` streams its body and sets its own limit.
pub const MAX_BODY: usize = 1 << 20;

/// What a signed command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Poweroff,
}

impl Action {
    /// As in the path (`/v1/reboot`) and in the signed document's `action`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Reboot => "reboot",
            Action::Poweroff => "poweroff",
        }
    }
}

/// Why a signed write was not done.
#[derive(Debug)]
pub enum Failure {
    /// By the node's rules: a code of the refusal table ([`refusals`]), answered with its status.
    Refused(Refusal),
    /// The node could not decide (a pipeline not running, a check that did not finish): 503.
    Unavailable(&'static str),
}

impl Failure {
    fn answer(self, kind: Kind) -> Response {
        match self {
            Failure::Refused(r) => reply::refused(refusals::status(kind, r.code), r.code, r.detail),
            Failure::Unavailable(detail) => reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail),
        }
    }
}

/// What the handlers need from the node. Requests arrive decoded (bodies within [`MAX_BODY`], JSON checked);
/// what a method answers goes to the client as it is.
pub trait NodeApi: Send + Sync + 'static {
    /// What the server puts in each request's extensions for the handlers (the PID 1: its connection, with its
    /// exporter and limits); the handlers get it when it is there.
    type Conn: Clone + Send + Sync + 'static;

    /// Runs in front of every request, `/healthz` and unknown paths included: `next.run(req)` to go on, or an
    /// answer of its own (401, 403, 503) to refuse before any body is read.
    fn authorize(&self, conn: Option<Self::Conn>, req: Request, next: Next) -> impl Future<Output = Response> + Send;
    /// `GET /v1/status`: the status document (`keel_config::status::NodeStatus`) as JSON.
    fn status(&self) -> Response;
    /// `GET /v1/config`.
    fn running_config(&self) -> RunningConfig;
    /// `PUT /v1/config`: through the node's acceptance rules; accepted, or a `Kind::Config` refusal.
    fn push_config(&self, push: Push) -> impl Future<Output = Result<ConfigAccepted, Failure>> + Send;
    /// `POST /v1/reboot` and `/v1/poweroff`: checks the signed command ([`crate::command::Nonces::verify`]);
    /// the signer, or a `Kind::Command` refusal.
    fn check_command(&self, cmd: SignedCommand, action: Action)
        -> impl Future<Output = Result<String, Failure>> + Send;
    /// Carries out a checked command once the reply has gone out.
    fn act(&self, action: Action, signer: &str);
    /// `GET /v1/logs` (`follow`: keep streaming).
    fn logs(&self, follow: bool, conn: Option<Self::Conn>) -> Response;
    /// `GET /metrics`.
    fn metrics(&self) -> Response;
    /// `PUT /v1/upgrade`: the body streamed, unread.
    fn upgrade(&self, query: UpgradeQuery, body: axum::body::Body) -> impl Future<Output = Response> + Send;
}

/// The node API's routes over `node` (docs/api.md).
pub fn router<N: NodeApi>(node: Arc<N>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/status", get(|State(n): State<Arc<N>>| async move { n.status() }))
        .route("/v1/config", get(|State(n): State<Arc<N>>| async move { Json(n.running_config()) }).put(put_config))
        .route("/v1/reboot", post(|s, b| command::<N>(s, b, Action::Reboot)))
        .route("/v1/poweroff", post(|s, b| command::<N>(s, b, Action::Poweroff)))
        .route("/v1/logs", get(logs::<N>))
        .route("/metrics", get(|State(n): State<Arc<N>>| async move { n.metrics() }))
        .route("/v1/upgrade", put(upgrade::<N>))
        .fallback(|| async { reply::error(StatusCode::NOT_FOUND, "not-found", "no such endpoint; see docs/api.md") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(node.clone(), authorize::<N>))
        .with_state(node)
}

async fn authorize<N: NodeApi>(
    State(n): State<Arc<N>>,
    conn: Option<Extension<N::Conn>>,
    req: Request,
    next: Next,
) -> Response {
    n.authorize(conn.map(|Extension(c)| c), req, next).await
}

async fn put_config<N: NodeApi>(State(n): State<Arc<N>>, body: Result<Json<Push>, JsonRejection>) -> Response {
    let Json(push) = match body {
        Ok(b) => b,
        Err(e) => return reply::bad_request(e),
    };
    match n.push_config(push).await {
        Ok(accepted) => Json(accepted).into_response(),
        Err(f) => f.answer(Kind::Config),
    }
}

async fn command<N: NodeApi>(
    State(n): State<Arc<N>>,
    body: Result<Json<SignedCommand>, JsonRejection>,
    action: Action,
) -> Response {
    let Json(cmd) = match body {
        Ok(b) => b,
        Err(e) => return reply::bad_request(e),
    };
    match n.check_command(cmd, action).await {
        Ok(signer) => {
            n.act(action, &signer);
            let accepted = CommandAccepted { accepted: true, action: action.name().into() };
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err(f) => f.answer(Kind::Command),
    }
}

async fn logs<N: NodeApi>(
    State(n): State<Arc<N>>,
    conn: Option<Extension<N::Conn>>,
    Query(q): Query<LogQuery>,
) -> Response {
    n.logs(q.follows(), conn.map(|Extension(c)| c))
}

async fn upgrade<N: NodeApi>(
    State(n): State<Arc<N>>,
    Query(q): Query<UpgradeQuery>,
    body: axum::body::Body,
) -> Response {
    n.upgrade(q, body).await
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
