//! What one client, or many, can take from the node (docs/api.md, "Limits"). A connection passes two stages:
//!
//! 1. **Unauthenticated**: it needs a place among [`MAX_PREAUTH`] (at most [`MAX_PREAUTH_PER_ADDRESS`] from one
//!    address), must send its TLS ClientHello within [`HELLO_DEADLINE`] (only then does it wait for one of
//!    [`MAX_HANDSHAKES`] turns, so silent clients cannot hold the turns), and must finish its handshake and send
//!    a request with a valid credential within [`PREAUTH_DEADLINE`]; else it is closed. Clients beyond the cap wait their turn (fair, first come first
//!    served), at most [`ADMIT_WAIT`].
//! 2. **Authenticated**: it leaves the first stage and takes a place in a lane for its key's roles: readers in
//!    [`MAX_READERS`], writers (any write role) in their own [`MAX_WRITERS`], so a signed push, reboot or upgrade
//!    is served even when readers fill every reader place. An idle keep-alive connection is closed after
//!    [`IDLE_TIMEOUT`].
//!
//! Per request: a total deadline ([`super::auth::deadline`]); reads answered [`MAX_READS_IN_FLIGHT`] at a time
//! (writes never wait for them); at most [`MAX_FOLLOWERS`] `logs?follow=1` streams; one upgrade upload at a time.

use axum::http::StatusCode;
use axum::response::Response;
use keel_config::credential::Identity;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Connections not yet authenticated that are handshaking or sending their first request.
pub const MAX_PREAUTH: usize = 96;
/// Of those, from one client address.
pub const MAX_PREAUTH_PER_ADDRESS: usize = 48;
/// From accept to a verified credential.
pub const PREAUTH_DEADLINE: Duration = Duration::from_secs(15);
/// From a first-stage place to the TLS ClientHello: a real client sends it at once; a silent one is closed.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);
/// How long an accepted connection may wait for a first-stage place.
pub const ADMIT_WAIT: Duration = Duration::from_secs(30);
/// Authenticated connections of keys that only read.
pub const MAX_READERS: usize = 256;
/// Authenticated connections of keys with a write role: the reserved lane.
pub const MAX_WRITERS: usize = 8;
/// How long an authenticated connection waits for its lane before a 503.
pub const LANE_WAIT: Duration = Duration::from_secs(2);
/// An authenticated connection with no request in flight is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `GET /v1/logs?follow=1` streams at once.
pub const MAX_FOLLOWERS: usize = 8;
/// TLS handshakes computed at once (each costs PID 1's one thread an ECDHE and a signature); more wait, parked.
pub const MAX_HANDSHAKES: usize = 8;
/// Read requests being answered at once; the rest wait, parked, for a turn. PID 1 runs on one thread: with
/// hundreds of readers all busy at once, every other task of the node (the config's controllers, a push) would
/// wait behind a full round of them at each of its steps.
pub const MAX_READS_IN_FLIGHT: usize = 4;

pub static DEADLINE_EXPIRED: AtomicU64 = AtomicU64::new(0);
pub static PREAUTH_CLOSED: AtomicU64 = AtomicU64::new(0);

pub struct Gates {
    preauth: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    readers: Arc<Semaphore>,
    writers: Arc<Semaphore>,
    pub followers: Arc<Semaphore>,
    pub upload: Arc<Semaphore>,
    pub reading: Arc<Semaphore>,
    pub handshakes: Arc<Semaphore>,
    /// Bumped after every write request (push, command, upgrade): a shared `/v1/status` from before is stale.
    pub writes_done: AtomicU64,
}

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            preauth: Arc::new(Semaphore::new(MAX_PREAUTH)),
            per_address: Mutex::new(HashMap::new()),
            readers: Arc::new(Semaphore::new(MAX_READERS)),
            writers: Arc::new(Semaphore::new(MAX_WRITERS)),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
            upload: Arc::new(Semaphore::new(1)),
            reading: Arc::new(Semaphore::new(MAX_READS_IN_FLIGHT)),
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            writes_done: AtomicU64::new(0),
        }
    }
}

impl Gates {
    fn address(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 1024 {
            // Forget addresses with nothing in the first stage.
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < MAX_PREAUTH_PER_ADDRESS);
        }
        map.entry(ip).or_insert_with(|| Arc::new(Semaphore::new(MAX_PREAUTH_PER_ADDRESS))).clone()
    }

    /// A first-stage place for a connection from `ip`: its address's, then the node's. Waits (fairly).
    pub async fn admit(&self, ip: IpAddr) -> Option<Vec<OwnedSemaphorePermit>> {
        let mine = self.address(ip).acquire_owned().await.ok()?;
        let global = self.preauth.clone().acquire_owned().await.ok()?;
        Some(vec![mine, global])
    }
}

/// Free places, for `/v1/status`.
pub fn free(g: &Gates) -> keel_config::status::ApiFree {
    keel_config::status::ApiFree {
        unauthenticated: g.preauth.available_permits(),
        readers: g.readers.available_permits(),
        writers: g.writers.available_permits(),
        log_followers: g.followers.available_permits(),
    }
}

#[derive(Default)]
struct State {
    header: Option<Vec<u8>>,
    identity: Option<Identity>,
    first_stage: Vec<OwnedSemaphorePermit>,
    lane: Option<OwnedSemaphorePermit>,
    in_flight: usize,
    streaming: bool,
    last_active: Option<Instant>,
}

/// One TLS connection: its channel binding, who authenticated on it, and the places it holds.
pub struct Conn {
    /// RFC 9266 `tls-exporter` keying material of this connection.
    pub exporter: [u8; 32],
    gates: Arc<Gates>,
    state: Mutex<State>,
}

fn busy(detail: &str) -> Response {
    let mut r = keel_api::reply::error(StatusCode::SERVICE_UNAVAILABLE, "busy", detail);
    r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
    r
}

impl Conn {
    pub fn new(exporter: [u8; 32], gates: Arc<Gates>, first_stage: Vec<OwnedSemaphorePermit>) -> Conn {
        let state = State { first_stage, ..State::default() };
        Conn { exporter, gates, state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity already verified on this connection for exactly this `Authorization` value.
    pub fn cached(&self, header: &[u8]) -> Option<Identity> {
        let s = self.state();
        (s.header.as_deref() == Some(header)).then(|| s.identity.clone()).flatten()
    }

    pub fn is_authenticated(&self) -> bool {
        self.state().lane.is_some()
    }

    /// Records a verified credential; the first one moves the connection into its lane (or answers 503).
    pub async fn authenticated(&self, header: &[u8], id: &Identity) -> Result<(), Response> {
        if self.state().lane.is_none() {
            let g = &self.gates;
            let lane = if id.roles.writes() {
                match g.writers.clone().try_acquire_owned() {
                    Ok(p) => Ok(Ok(p)),
                    // The writers' lane is full: a reader's place will do.
                    Err(_) => tokio::time::timeout(LANE_WAIT, g.readers.clone().acquire_owned()).await,
                }
            } else {
                tokio::time::timeout(LANE_WAIT, g.readers.clone().acquire_owned()).await
            };
            let Ok(Ok(lane)) = lane else {
                return Err(busy("every connection place for this role is taken; try again"));
            };
            let mut s = self.state();
            s.lane = Some(lane);
            s.first_stage.clear();
        }
        let mut s = self.state();
        s.header = Some(header.to_vec());
        s.identity = Some(id.clone());
        Ok(())
    }

    /// A turn to answer a read (waits, parked, while [`MAX_READS_IN_FLIGHT`] others are answered).
    pub async fn read_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.gates.reading.clone().acquire_owned().await.ok()
    }

    /// Marks a request in flight until the guard drops.
    pub fn busy(self: &Arc<Conn>) -> InFlight {
        self.state().in_flight += 1;
        InFlight(self.clone())
    }

    /// The connection carries a long-lived stream (`logs?follow=1`): never idle.
    pub fn streaming(&self) {
        self.state().streaming = true;
    }

    /// How long the connection has had nothing in flight (None while a request or stream runs).
    pub fn idle_for(&self, since_accept: Instant) -> Option<Duration> {
        let s = self.state();
        (s.in_flight == 0 && !s.streaming).then(|| s.last_active.unwrap_or(since_accept).elapsed())
    }
}

pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_active = Some(Instant::now());
    }
}

/// Whether the watchdog of a connection should close it now.
pub fn should_close(conn: &Conn, accepted: Instant) -> bool {
    if !conn.is_authenticated() {
        if accepted.elapsed() > PREAUTH_DEADLINE {
            PREAUTH_CLOSED.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        return false;
    }
    conn.idle_for(accepted).is_some_and(|idle| idle > IDLE_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::credential::{Role, Roles};

    fn id(role: Role) -> Identity {
        Identity { principal: "p".into(), fingerprint: "SHA256:x".into(), roles: Roles::only(role) }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn writers_have_a_lane_readers_cannot_fill() {
        let g = Arc::new(Gates::default());
        let ip: IpAddr = "10.0.2.2".parse().unwrap();
        let mut readers = Vec::new();
        for i in 0..MAX_READERS {
            let c = Conn::new([0; 32], g.clone(), g.admit(ip).await.unwrap());
            c.authenticated(format!("r{i}").as_bytes(), &id(Role::Read)).await.unwrap();
            readers.push(c);
        }
        let late = Conn::new([0; 32], g.clone(), g.admit(ip).await.unwrap());
        let refused = late.authenticated(b"late", &id(Role::Read)).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let writer = Conn::new([0; 32], g.clone(), g.admit(ip).await.unwrap());
        writer.authenticated(b"w", &id(Role::Config)).await.expect("the writer gets its lane");
        assert!(writer.is_authenticated() && !late.is_authenticated());
        assert_eq!(writer.cached(b"w").map(|i| i.roles), Some(Roles::only(Role::Config)));
        assert_eq!(writer.cached(b"other"), None);
        drop(readers.pop());
        late.authenticated(b"late", &id(Role::Read)).await.expect("a freed place is taken");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn one_address_cannot_take_every_first_stage_place() {
        let g = Arc::new(Gates::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..MAX_PREAUTH_PER_ADDRESS {
            held.push(g.admit(a).await.unwrap());
        }
        assert!(tokio::time::timeout(Duration::from_secs(1), g.admit(a)).await.is_err(), "a waits");
        assert!(g.admit(b).await.is_some(), "b still gets in");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn unauthenticated_connections_get_a_deadline_and_idle_ones_are_closed() {
        let g = Arc::new(Gates::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let accepted = Instant::now();
        let c = Arc::new(Conn::new([0; 32], g.clone(), g.admit(ip).await.unwrap()));
        assert!(!should_close(&c, accepted));
        tokio::time::advance(PREAUTH_DEADLINE + Duration::from_secs(1)).await;
        assert!(should_close(&c, accepted), "never authenticated");
        c.authenticated(b"h", &id(Role::Read)).await.unwrap();
        let guard = c.busy();
        assert!(!should_close(&c, accepted), "a request is in flight");
        drop(guard);
        assert!(!should_close(&c, accepted));
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        assert!(should_close(&c, accepted), "idle");
        c.streaming();
        assert!(!should_close(&c, accepted), "a follow stream is never idle");
    }
}
