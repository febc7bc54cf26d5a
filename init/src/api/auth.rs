//! Who may do what on the API (docs/api.md, "Authentication"). Every endpoint but `/healthz` needs a credential
//! (`keel_config::credential`): a signature over this TLS connection's RFC 9266 exporter, or a metrics-only
//! token. It is checked in a middleware, before any handler runs and so before a byte of the body is read. The
//! first proof on a connection is verified once and remembered: later requests on the same keep-alive
//! connection that carry the same header cost a byte comparison. Refusals are counted, not logged one line
//! each, so anonymous clients cannot push real lines out of the log ring.

use super::limits::{self, Conn};
use super::state::Inner;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use keel_config::credential::{self, Credential, Identity, Refusal, Role};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Requests refused for a missing or bad credential (401) and for a missing role (403), for /metrics.
pub static UNAUTHENTICATED: AtomicU64 = AtomicU64::new(0);
pub static FORBIDDEN: AtomicU64 = AtomicU64::new(0);

/// The role a request needs; None for `/healthz`. Unknown paths need a reader, so a stranger learns nothing,
/// not even which endpoints exist.
pub fn needed(method: &Method, path: &str) -> Option<Role> {
    Some(match (method, path) {
        (_, "/healthz") => return None,
        (&Method::PUT, "/v1/config") => Role::Config,
        (&Method::POST, "/v1/reboot" | "/v1/poweroff") => Role::Command,
        (&Method::PUT, "/v1/upgrade") => Role::Image,
        (_, "/metrics") => Role::Metrics,
        _ => Role::Read,
    })
}

/// How long a request may take to produce its answer's head: reads and commands answer in moments; a config
/// push waits for convergence (30 s); an upgrade streams up to 64 MiB to the slot and reads it back.
pub fn deadline(role: Role) -> Duration {
    match role {
        Role::Image => Duration::from_secs(600),
        Role::Config => Duration::from_secs(90),
        _ => Duration::from_secs(30),
    }
}

fn refuse(status: StatusCode, code: &str, detail: String) -> Response {
    let counter = if status == StatusCode::UNAUTHORIZED { &UNAUTHENTICATED } else { &FORBIDDEN };
    counter.fetch_add(1, Ordering::Relaxed);
    let mut r = keel_api::reply::error(status, code, detail);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Keel-SSHSIG"));
    }
    // The body of a refused request is never read: close rather than drain it.
    r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    r
}

/// Verifies `value` for this connection.
fn verify(s: &Inner, conn: &Conn, value: &str) -> Result<Identity, Refusal> {
    let allowed = s.allowed.as_ref().map_err(|e| Refusal { code: "untrusted-image", detail: e.clone() })?;
    match credential::parse(value)? {
        Credential::Proof(sig) => credential::verify_proof(&sig, &conn.exporter, allowed, SystemTime::now()),
        Credential::Metrics(t) => credential::verify_metrics(&t, allowed, &s.machine_id, SystemTime::now()),
    }
}

/// The middleware (`NodeApi::authorize`): 401 without a valid credential, 403 without the role, else the handler
/// under its deadline. Every connection the server accepts carries its [`Conn`].
pub async fn authorize(s: &Inner, conn: Option<Arc<Conn>>, req: Request, next: Next) -> Response {
    let Some(conn) = conn else {
        return keel_api::reply::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no connection state");
    };
    let Some(role) = needed(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this endpoint needs a credential (keelctl signs one with --key or an ssh-agent key; docs/api.md)".into(),
        );
    };
    let identity = match conn.cached(value.as_bytes()) {
        Some(id) => id,
        None => {
            let Ok(text) = value.to_str() else {
                return refuse(StatusCode::UNAUTHORIZED, "malformed", "Authorization is not text".into());
            };
            match verify(s, &conn, text) {
                Ok(id) => {
                    if let Err(busy) = conn.authenticated(value.as_bytes(), &id).await {
                        return busy;
                    }
                    id
                }
                Err(r) => return refuse(StatusCode::UNAUTHORIZED, r.code, r.detail),
            }
        }
    };
    if !identity.roles.allow(role) {
        let detail = format!(
            "key {} ({}) has role {}; {} {} needs {}",
            identity.fingerprint,
            identity.principal,
            if identity.roles.is_empty() { "none".into() } else { identity.roles.names() },
            req.method(),
            req.uri().path(),
            role.namespace()
        );
        return refuse(StatusCode::FORBIDDEN, "forbidden", detail);
    }
    let _busy = conn.busy();
    let answer = async {
        let _turn = match role {
            Role::Read | Role::Metrics => conn.read_turn().await,
            _ => None,
        };
        next.run(req).await
    };
    let answered = tokio::time::timeout(deadline(role), answer).await;
    if identity.roles.writes() && !matches!(role, Role::Read | Role::Metrics) {
        s.gates.writes_done.fetch_add(1, Ordering::Relaxed);
    }
    match answered {
        Ok(r) => r,
        Err(_) => {
            limits::DEADLINE_EXPIRED.fetch_add(1, Ordering::Relaxed);
            let detail = format!("no answer within {} s", deadline(role).as_secs());
            let mut r = keel_api::reply::error(StatusCode::SERVICE_UNAVAILABLE, "deadline", detail);
            r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_but_healthz_needs_a_role() {
        assert_eq!(needed(&Method::GET, "/healthz"), None);
        assert_eq!(needed(&Method::GET, "/v1/status"), Some(Role::Read));
        assert_eq!(needed(&Method::GET, "/v1/logs"), Some(Role::Read));
        assert_eq!(needed(&Method::GET, "/v1/config"), Some(Role::Read));
        assert_eq!(needed(&Method::GET, "/metrics"), Some(Role::Metrics));
        assert_eq!(needed(&Method::PUT, "/v1/config"), Some(Role::Config));
        assert_eq!(needed(&Method::POST, "/v1/reboot"), Some(Role::Command));
        assert_eq!(needed(&Method::POST, "/v1/poweroff"), Some(Role::Command));
        assert_eq!(needed(&Method::PUT, "/v1/upgrade"), Some(Role::Image));
        assert_eq!(needed(&Method::GET, "/v1/nothing"), Some(Role::Read));
        assert_eq!(needed(&Method::DELETE, "/v1/upgrade"), Some(Role::Read));
    }
}
