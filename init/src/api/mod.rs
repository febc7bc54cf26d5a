//! The node API: HTTPS on port 7443, served by PID 1 (docs/api.md). TLS 1.3 terminates here with rustls on the
//! ring provider; each connection is one task. Every endpoint but `/healthz` needs a credential bound to the
//! connection ([`auth`]); [`limits`] caps what unauthenticated and authenticated clients can hold, so a slow or
//! hostile client costs little, never blocks the init, and never locks out a signed write. The routes, request
//! and reply types, refusal table and command checks are the keel-api crate's; [`routes`] is what they do here.

pub mod auth;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod status;
pub mod tls;
pub mod upgrade;

use state::{AppState, Inner};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const PORT: u16 = 7443;
const TLS_DIR: &str = "/var/lib/keel/api";
/// Connections accepted and not yet authenticated, waiting for or holding a first-stage place ([`limits`]).
/// Held here rather than in the kernel's queue: the node's kernel has no SYN cookies, so a long listen queue
/// drops connection attempts (the load test's 200 readers saw resets); beyond this, the kernel's queue takes
/// the rest.
const MAX_WAITING: usize = 384;
/// How often a connection's watchdog looks at its deadlines.
const WATCH_EVERY: Duration = Duration::from_secs(1);

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
    let made =
        crate::fsutil::off_loop("tls identity", move || tls::load_or_create(std::path::Path::new(TLS_DIR), names));
    let identity = match made.await.and_then(|r| r) {
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
    let gates = Arc::new(limits::Gates::default());
    let state: AppState = Arc::new(Inner {
        gates: gates.clone(),
        status_cache: Mutex::new(None),
        machine_id: parts.machine_id,
        fingerprint: identity.fingerprint.clone(),
        config: parts.config,
        net: parts.net,
        time: parts.time,
        power: parts.power,
        allowed: trust,
        nonces: Arc::new(Mutex::new(
            keel_api::command::Nonces::load(std::path::Path::new(TLS_DIR).join("command-nonces"), |path, bytes| {
                crate::safe_fs::write_atomic(path, bytes, 0o600, None)
            })
            .with_floor(Box::new(crate::trust::floor::Places::system())),
        )),
    });
    serve(listener, tls_config, routes::router(state), gates).await
}

async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: axum::Router, gates: Arc<limits::Gates>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let admitted = Arc::new(Semaphore::new(MAX_WAITING));
    loop {
        // Backpressure, not refusal: clients beyond the first-stage places wait for one instead of being dropped.
        let Ok(admission) = admitted.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("api.accept_failed error={e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router, gates) = (acceptor.clone(), router.clone(), gates.clone());
        tokio::spawn(async move {
            let Ok(Some(mut first_stage)) = tokio::time::timeout(limits::ADMIT_WAIT, gates.admit(peer.ip())).await
            else {
                return log::debug!("api.admit_timeout peer={peer}");
            };
            first_stage.push(admission);
            let accepted = tokio::time::Instant::now();
            // A handshake turn is taken only once the ClientHello is in: a client that connects and stays
            // silent holds its first-stage place until HELLO_DEADLINE, never a turn that others wait for.
            let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = match tokio::time::timeout(limits::HELLO_DEADLINE, hello).await {
                Ok(Ok(start)) => start,
                Ok(Err(e)) => return log::debug!("api.handshake_failed peer={peer} error={e}"),
                Err(_) => {
                    limits::PREAUTH_CLOSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return log::debug!("api.hello_timeout peer={peer}");
                }
            };
            let handshake = async {
                let _turn = gates.handshakes.clone().acquire_owned().await;
                start.into_stream(acceptor.config().clone()).await
            };
            let left = limits::PREAUTH_DEADLINE.saturating_sub(accepted.elapsed());
            let stream = match tokio::time::timeout(left, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return log::debug!("api.handshake_failed peer={peer} error={e}"),
                Err(_) => return log::debug!("api.handshake_timeout peer={peer}"),
            };
            let label = keel_config::credential::EXPORTER_LABEL;
            let Ok(exporter) = stream.get_ref().1.export_keying_material([0u8; 32], label, None) else {
                return log::debug!("api.exporter_failed peer={peer}");
            };
            let conn = Arc::new(limits::Conn::new(exporter, gates, first_stage));
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(conn.clone())));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            tokio::pin!(served);
            loop {
                tokio::select! {
                    done = &mut served => {
                        if let Err(e) = done {
                            log::debug!("api.connection_error peer={peer} error={e}");
                        }
                        return;
                    }
                    _ = tokio::time::sleep(WATCH_EVERY) => {
                        if limits::should_close(&conn, accepted) {
                            return log::debug!("api.connection_closed peer={peer} authenticated={}", conn.is_authenticated());
                        }
                    }
                }
            }
        });
    }
}
