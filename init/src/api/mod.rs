//! The node API: HTTPS on port 7443, served by PID 1 (docs/api.md). TLS terminates here with rustls on the ring
//! provider; each connection is one task, with a cap on how many run at once (more wait their turn) and
//! deadlines on the handshake and on reading a request, so a slow or hostile client costs little and never
//! blocks the init.

pub mod command;
pub mod request;
pub mod routes;
pub mod status;
pub mod tls;
pub mod upgrade;

use routes::{AppState, Inner};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const PORT: u16 = 7443;
const TLS_DIR: &str = "/var/lib/keel/api";
/// Connections served at once (TLS and HTTP state each).
const MAX_CONNECTIONS: usize = 64;
/// Connections accepted and waiting, unencrypted and idle, for one of those slots. Held here rather than in the
/// kernel's queue: the node's kernel has no SYN cookies, so a long listen queue drops connection attempts (the
/// load test's 200 readers saw resets); beyond this, the kernel's queue takes the rest.
const MAX_WAITING: usize = 256;
/// Counted from when the connection gets its slot: generous, because a node busy with many clients handshakes
/// slowly.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Parts {
    pub machine_id: String,
    pub hostname: String,
    pub config: crate::config::run::ConfigHandle,
    pub net: Option<tokio::sync::watch::Receiver<crate::net::controller::NetStatus>>,
    pub time: tokio::sync::watch::Receiver<crate::time::TimeStatus>,
    pub power: tokio::sync::mpsc::Sender<crate::power::Request>,
}

async fn bind() -> std::io::Result<TcpListener> {
    match TcpListener::bind(("::", PORT)).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(("0.0.0.0", PORT)).await,
    }
}

/// Starts the API; failures are logged and leave the node running without it.
pub async fn start(parts: Parts) {
    let names = vec![parts.hostname.clone(), format!("keel-{}", &parts.machine_id[..8.min(parts.machine_id.len())])];
    // Off the event loop: a first boot makes a key (the kernel's entropy pool may not be ready yet) and writes
    // it durably; the network, the reaper and everything else go on meanwhile, and the API listens when it is done.
    let made = tokio::task::spawn_blocking(move || tls::load_or_create(std::path::Path::new(TLS_DIR), names)).await;
    let identity = match made.map_err(|e| e.to_string()).and_then(|r| r) {
        Ok(id) => id,
        Err(e) => return log::error!("api.tls_failed error={}", crate::logging::q(&e)),
    };
    let tls_config = match tls::server_config(&identity) {
        Ok(c) => c,
        Err(e) => return log::error!("api.tls_failed error={}", crate::logging::q(&e)),
    };
    let listener = match bind().await {
        Ok(l) => l,
        Err(e) => return log::error!("api.bind_failed port={PORT} error={e}"),
    };
    log::info!(
        "api.listening port={PORT} fingerprint={} identity={}",
        identity.fingerprint,
        if identity.created { "new" } else { "kept" }
    );
    let trust = crate::config::trust::allowed_signers();
    let state: AppState = Arc::new(Inner {
        machine_id: parts.machine_id,
        fingerprint: identity.fingerprint.clone(),
        config: parts.config,
        net: parts.net,
        time: parts.time,
        power: parts.power,
        allowed: trust,
        nonces: Mutex::new(
            command::Nonces::load(std::path::Path::new(TLS_DIR).join("command-nonces"))
                .with_floor(Box::new(crate::trust::floor::Places::system())),
        ),
    });
    serve(listener, tls_config, routes::router(state)).await
}

async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: axum::Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let admitted = Arc::new(Semaphore::new(MAX_CONNECTIONS + MAX_WAITING));
    loop {
        // Backpressure, not refusal: clients beyond the slots wait for one instead of being dropped.
        let Ok(admission) = admitted.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("api.accept_failed error={e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let Ok(_slot) = slots.acquire_owned().await else { return };
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return log::debug!("api.handshake_failed peer={peer} error={e}"),
                Err(_) => return log::debug!("api.handshake_timeout peer={peer}"),
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                log::debug!("api.connection_error peer={peer} error={e}");
            }
        });
    }
}
