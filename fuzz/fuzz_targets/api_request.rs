//! The node API's request handling, in process and without sockets: bytes go through a tokio duplex pipe into
//! hyper's HTTP/1 server (built as init/src/api/mod.rs builds it) and the node's own router (`keel_api::router`:
//! its routes, fallback, body limit, extractors and rejection replies), with signed commands checked by the node's
//! code (`keel_api::command::Nonces`). The node behind it is a fake ([`Fake`]) that stops where the node would
//! touch its state (the config pipeline after the signature and parse, power, the slot writer).
//!
//! The first byte picks the shape: raw HTTP bytes as a client sends them, or a well-formed head for one of the
//! endpoints with the rest as its body or query (so the JSON and query decoders are reached quickly).
#![no_main]

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_api::command::{Nonces, Refusal};
use keel_api::request::{Push, SignedCommand, UpgradeQuery};
use keel_api::{reply, Action, Failure, NodeApi, MAX_BODY};
use keel_config::sshsig::{self, AllowedSigners, PrivateKey};
use keel_config::status::{ConfigAccepted, NodeStatus, RunningConfig};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

struct Fake {
    allowed: AllowedSigners,
    nonces: Mutex<Nonces>,
}

impl NodeApi for Fake {
    type Conn = ();

    /// A credential that is there must parse (the parser is the node's); the checks against a TLS exporter are
    /// `credential_parse`'s.
    async fn authorize(&self, _conn: Option<()>, req: Request, next: Next) -> Response {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let parsed = value.to_str().map_err(|_| ()).and_then(|v| keel_config::credential::parse(v).map_err(drop));
            if parsed.is_err() {
                return reply::error(StatusCode::UNAUTHORIZED, "malformed", "bad credential");
            }
        }
        next.run(req).await
    }

    fn status(&self) -> Response {
        Json(NodeStatus { machine_id: ID.into(), ..NodeStatus::default() }).into_response()
    }

    fn running_config(&self) -> RunningConfig {
        RunningConfig::default()
    }

    /// The pipeline's first steps (init/src/config/pipeline.rs): signature, then parse and validate.
    async fn push_config(&self, push: Push) -> Result<ConfigAccepted, Failure> {
        let verified = sshsig::verify(
            push.config.as_bytes(),
            &push.signature,
            &self.allowed,
            None,
            "keel-config",
            SystemTime::now(),
        );
        if let Err(e) = verified {
            return Err(Failure::Refused(Refusal::new(keel_config::Reason::from(&e).code(), e.to_string())));
        }
        match keel_config::parse_bytes("api", push.config.as_bytes()) {
            Ok(c) => {
                Ok(ConfigAccepted { accepted: true, converged: false, generation: c.generation, waiting_rollout: None })
            }
            Err(e) => Err(Failure::Refused(Refusal::new("invalid", e.to_string()))),
        }
    }

    async fn check_command(&self, cmd: SignedCommand, action: Action) -> Result<String, Failure> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let verified = nonces.verify(&cmd.command, &cmd.signature, &self.allowed, ID, action.name(), SystemTime::now());
        verified.map(|v| v.signer).map_err(Failure::Refused)
    }

    fn act(&self, _action: Action, _signer: &str) {}

    fn logs(&self, follow: bool, _conn: Option<()>) -> Response {
        ([("content-type", "text/plain; charset=utf-8")], format!("follow={follow}\n")).into_response()
    }

    fn metrics(&self) -> Response {
        "keel_uptime_seconds 1\n".into_response()
    }

    /// No slots to write: refused as a node without UEFI slots refuses, after the query decoded.
    async fn upgrade(&self, query: UpgradeQuery, _body: axum::body::Body) -> Response {
        let detail = format!("no UEFI slots (sha256 {:?}, version {:?})", query.sha256, query.version);
        reply::refused(
            keel_api::refusals::status(keel_api::refusals::Kind::Upgrade, "unsupported"),
            "unsupported",
            detail,
        )
    }
}

fn node() -> Arc<Fake> {
    let key = PrivateKey::from_seed([7; 32], "ops");
    let line = format!("ops namespaces=\"keel-config,keel-command\" {}", key.public_key().to_openssh());
    Arc::new(Fake {
        allowed: AllowedSigners::parse("allowed_signers", &line).unwrap(),
        nonces: Mutex::new(Nonces::default()),
    })
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
    let with_query = |path: &[u8]| {
        let mut v = path.to_vec();
        v.extend(rest.iter().filter(|b| !b.is_ascii_whitespace()));
        v.extend_from_slice(b" HTTP/1.1\r\nHost: n\r\nContent-Length: 0\r\n\r\n");
        v
    };
    match mode % 6 {
        0 => with_body("PUT /v1/config"),
        1 => with_body("POST /v1/reboot"),
        2 => with_body("POST /v1/poweroff"),
        3 => with_query(b"GET /v1/logs?"),
        5 => with_query(b"PUT /v1/upgrade?"),
        _ => rest.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = shaped(data);
    let router = keel_api::router(node());
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
