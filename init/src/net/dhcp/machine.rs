//! The DHCP client state machine (RFC 2131 §4.4), as a pure function: [`step`] takes a state and an input and
//! returns the next state and the actions for the caller to carry out. It does no I/O and reads no clock: the time
//! (on the caller's monotonic clock) and a random number (for transaction ids and jitter) come in a [`Context`],
//! so a test replays any lifecycle exactly.
//!
//! ```text
//! start ─▶ Selecting ─OFFER─▶ Requesting ─ACK─▶ Bound ─T1─▶ Renewing ─T2─▶ Rebinding ─end of lease─▶ Selecting
//!              ▲                  │ NAK           ▲ ◀──ACK──────┘               │
//!              └──────────────────┘               └◀──ACK───────────────────────┘
//! ```
//!
//! A NAK while renewing or rebinding ends the lease (`Expired`) and discovers again; a second NAK in a row waits
//! in Init first (4 s, 8 s, … like a retransmission), so a server that refuses everything is not asked in a loop.
//!
//! - Selecting and Requesting retransmit after 4 s, 8 s, 16 s, … capped at 64 s, each ±1 s of jitter; Requesting
//!   gives up on its offer after 5 tries and discovers again.
//! - Renewing and Rebinding retransmit after half the time left to T2 (resp. expiry), at least 60 s but never
//!   past that deadline (§4.4.5).
//! - An ACK for a different address than requested is taken (the server decides): a new address in place of a
//!   held one is reported as `Expired(old)` then `Bound(new)`.
//! - Link down stops everything but the lease clock (`Expired` still comes on time); link up verifies a held
//!   lease with an INIT-REBOOT request and, if no server answers, keeps using it until it runs out (§3.2).
//! - Only replies with our xid and our MAC in `chaddr` are looked at.

use super::codec::{code, Message, MessageType, BOOTREPLY};
use super::lease::Lease;
use super::options;
pub use super::state::{Action, Config, Context, Dest, Exchange, Held, Input, State, Timer};
use std::time::Duration;

/// Parameter request list (option 55).
pub const PARAMETERS: [u8; 14] = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121];
/// Option 57: the largest message we accept.
pub const MAX_MESSAGE_SIZE: u16 = 1500;
/// Requesting sends its REQUEST this many times before it gives up on the offer.
const REQUEST_TRIES: u32 = 5;
/// INIT-REBOOT sends its REQUEST this many times before it falls back on the lease it holds.
const REBOOT_TRIES: u32 = 3;
/// Renewing and Rebinding never retransmit sooner than this (RFC 2131 §4.4.5).
const MIN_REACQUIRE_WAIT: Duration = Duration::from_secs(60);

type Step = (State, Vec<Action>);

/// The first step: discover at once.
pub fn start(ctx: &Context) -> Step {
    discover(ctx, 0, Vec::new())
}

pub fn step(state: State, input: Input, ctx: &Context) -> Step {
    match input {
        Input::Packet(msg) => on_packet(state, msg, ctx),
        Input::Timer => on_timer(state, ctx),
        Input::LinkDown => match state {
            State::Released => (state, Vec::new()),
            state => match state.into_held() {
                Some(held) => {
                    let at = held.expires_at();
                    (State::Stopped { held: Some(held) }, vec![Action::SetTimer { at, why: Timer::Expire }])
                }
                None => (State::Stopped { held: None }, vec![Action::ClearTimer]),
            },
        },
        Input::LinkUp => match state {
            State::Stopped { held: Some(held) } => enter(Phase::InitReboot, held, ctx),
            State::Stopped { held: None } => discover(ctx, 0, Vec::new()),
            // A link that just came up deserves a DISCOVER now, not at the next backoff.
            State::Selecting { naks, .. } => discover(ctx, naks, Vec::new()),
            state => (state, Vec::new()),
        },
        Input::Release => {
            if state == State::Released {
                return (state, Vec::new());
            }
            let mut actions = Vec::new();
            if let Some(held) = state.into_held() {
                let mut message = message(ctx, new_xid(ctx), MessageType::Release, ctx.now);
                message.ciaddr = held.lease.address;
                message.options.set(code::SERVER_ID, held.lease.server.octets().to_vec());
                actions.push(Action::Send { message, to: Dest::Server(held.lease.server) });
            }
            actions.extend([Action::ClearTimer, Action::Released]);
            (State::Released, actions)
        }
    }
}

fn on_packet(state: State, msg: Message, ctx: &Context) -> Step {
    let ours = msg.op == BOOTREPLY && msg.is_for(&ctx.config.mac) && state.exchange().map(|ex| ex.xid) == Some(msg.xid);
    let Some(kind) = msg.message_type().filter(|_| ours) else {
        return (state, Vec::new());
    };
    let server_id = msg.options.get(code::SERVER_ID).and_then(|d| options::ipv4(d).ok());
    // Only the server we asked answers Requesting and Renewing: others saw a broadcast naming someone else.
    let expected = match &state {
        State::Requesting { server, .. } => Some(*server),
        State::Renewing { held, .. } => Some(held.lease.server),
        _ => None,
    };
    if expected.is_some_and(|want| server_id.is_some_and(|id| id != want)) {
        return (state, Vec::new());
    }
    let lease = match kind {
        MessageType::Ack => match Lease::from_ack(&msg) {
            Ok(lease) => Some(lease),
            Err(e) => {
                log::warn!("net.dhcp.ack_refused state={} error={}", state.name(), crate::logging::q(&e.to_string()));
                return (state, Vec::new());
            }
        },
        _ => None,
    };
    match (state, kind, lease) {
        (State::Selecting { ex, naks }, MessageType::Offer, _) => match server_id {
            Some(server) if !msg.yiaddr.is_unspecified() => {
                let ex = Exchange { sent: ctx.now, attempt: 0, ..ex };
                let state = State::Requesting { ex, naks, address: msg.yiaddr, server };
                let actions = send(&state, ctx);
                (state, actions)
            }
            _ => (State::Selecting { ex, naks }, Vec::new()),
        },
        (State::Requesting { ex, address, .. }, MessageType::Ack, Some(lease)) => {
            if lease.address != address {
                log::info!("net.dhcp.address_changed requested={address} acked={}", lease.address);
            }
            bind(Held { lease: lease.clone(), since: ex.sent }, vec![Action::Bound(lease)])
        }
        (State::Requesting { naks, .. }, MessageType::Nak, _) => restart_after_nak(naks + 1, ctx, Vec::new()),
        (
            State::Renewing { ex, held } | State::Rebinding { ex, held } | State::InitReboot { ex, held },
            MessageType::Ack,
            Some(lease),
        ) => {
            let actions = if lease.address == held.lease.address {
                vec![Action::Renewed(lease.clone())]
            } else {
                log::info!("net.dhcp.address_changed held={} acked={}", held.lease.address, lease.address);
                vec![Action::Expired(held.lease), Action::Bound(lease.clone())]
            };
            bind(Held { lease, since: ex.sent }, actions)
        }
        (
            State::Renewing { held, .. } | State::Rebinding { held, .. } | State::InitReboot { held, .. },
            MessageType::Nak,
            _,
        ) => restart_after_nak(1, ctx, vec![Action::Expired(held.lease)]),
        (state, _, _) => (state, Vec::new()),
    }
}

fn on_timer(state: State, ctx: &Context) -> Step {
    let now = ctx.now;
    match state {
        State::Init { naks } => discover(ctx, naks, Vec::new()),
        State::Selecting { ex, naks } => retransmit(State::Selecting { ex: next_try(ex, now), naks }, ctx),
        State::Requesting { ex, naks, .. } if ex.attempt + 1 >= REQUEST_TRIES => {
            log::info!("net.dhcp.offer_abandoned attempts={REQUEST_TRIES}");
            discover(ctx, naks, Vec::new())
        }
        State::Requesting { ex, naks, address, server } => {
            retransmit(State::Requesting { ex: next_try(ex, now), naks, address, server }, ctx)
        }
        State::Bound { held } => resume(held, ctx),
        State::Renewing { ex, held } if now < held.t2_at() => {
            retransmit(State::Renewing { ex: next_try(ex, now), held }, ctx)
        }
        State::Rebinding { ex, held } if now < held.expires_at() => {
            retransmit(State::Rebinding { ex: next_try(ex, now), held }, ctx)
        }
        State::Renewing { held, .. } | State::Rebinding { held, .. } => resume(held, ctx),
        State::InitReboot { ex, held } if ex.attempt + 1 < REBOOT_TRIES => {
            retransmit(State::InitReboot { ex: next_try(ex, now), held }, ctx)
        }
        // No server confirmed the lease after the link came back: keep using it while it lasts (§3.2).
        State::InitReboot { held, .. } => resume(held, ctx),
        State::Stopped { held: Some(held) } if now >= held.expires_at() => {
            (State::Stopped { held: None }, vec![Action::Expired(held.lease), Action::ClearTimer])
        }
        State::Stopped { held: Some(held) } => {
            let at = held.expires_at();
            (State::Stopped { held: Some(held) }, vec![Action::SetTimer { at, why: Timer::Expire }])
        }
        state @ (State::Stopped { held: None } | State::Released) => (state, Vec::new()),
    }
}

/// The state a held lease is in at this time: bound, renewing, rebinding, or gone.
fn resume(held: Held, ctx: &Context) -> Step {
    let now = ctx.now;
    if now >= held.expires_at() {
        discover(ctx, 0, vec![Action::Expired(held.lease)])
    } else if now >= held.t2_at() {
        enter(Phase::Rebinding, held, ctx)
    } else if now >= held.t1_at() {
        enter(Phase::Renewing, held, ctx)
    } else {
        let at = held.t1_at();
        (State::Bound { held }, vec![Action::SetTimer { at, why: Timer::Renew }])
    }
}

fn bind(held: Held, mut actions: Vec<Action>) -> Step {
    actions.push(Action::SetTimer { at: held.t1_at(), why: Timer::Renew });
    (State::Bound { held }, actions)
}

enum Phase {
    Renewing,
    Rebinding,
    InitReboot,
}

/// Starts a new exchange about a held lease.
fn enter(phase: Phase, held: Held, ctx: &Context) -> Step {
    let ex = Exchange { xid: new_xid(ctx), started: ctx.now, sent: ctx.now, attempt: 0 };
    let state = match phase {
        Phase::Renewing => State::Renewing { ex, held },
        Phase::Rebinding => State::Rebinding { ex, held },
        Phase::InitReboot => State::InitReboot { ex, held },
    };
    let actions = send(&state, ctx);
    (state, actions)
}

fn discover(ctx: &Context, naks: u32, mut actions: Vec<Action>) -> Step {
    let ex = Exchange { xid: new_xid(ctx), started: ctx.now, sent: ctx.now, attempt: 0 };
    let state = State::Selecting { ex, naks };
    actions.extend(send(&state, ctx));
    (state, actions)
}

/// Back to Init: at once after a first NAK, then after a growing delay, so a server that refuses every request
/// is not asked in a tight loop.
fn restart_after_nak(naks: u32, ctx: &Context, actions: Vec<Action>) -> Step {
    if naks <= 1 {
        return discover(ctx, naks, actions);
    }
    let mut actions = actions;
    actions.push(Action::SetTimer { at: ctx.now + backoff(naks - 2, ctx.random), why: Timer::Restart });
    (State::Init { naks }, actions)
}

fn next_try(ex: Exchange, now: Duration) -> Exchange {
    Exchange { sent: now, attempt: ex.attempt + 1, ..ex }
}

fn retransmit(state: State, ctx: &Context) -> Step {
    let actions = send(&state, ctx);
    (state, actions)
}

/// The message of a state's exchange, and the timer for its retransmission.
fn send(state: &State, ctx: &Context) -> Vec<Action> {
    let now = ctx.now;
    let Some(ex) = state.exchange() else {
        return Vec::new();
    };
    let (kind, to, wait) = match state {
        State::Selecting { .. } => (MessageType::Discover, Dest::Broadcast, backoff(ex.attempt, ctx.random)),
        State::Requesting { .. } | State::InitReboot { .. } => {
            (MessageType::Request, Dest::Broadcast, backoff(ex.attempt, ctx.random))
        }
        State::Renewing { held, .. } => {
            (MessageType::Request, Dest::Server(held.lease.server), reacquire_wait(now, held.t2_at()))
        }
        State::Rebinding { held, .. } => {
            (MessageType::Request, Dest::Broadcast, reacquire_wait(now, held.expires_at()))
        }
        _ => return Vec::new(),
    };
    let mut message = message(ctx, ex.xid, kind, ex.started);
    match state {
        State::Requesting { address, server, .. } => {
            message.options.set(code::REQUESTED_IP, address.octets().to_vec());
            message.options.set(code::SERVER_ID, server.octets().to_vec());
        }
        State::InitReboot { held, .. } => {
            message.options.set(code::REQUESTED_IP, held.lease.address.octets().to_vec());
        }
        State::Renewing { held, .. } | State::Rebinding { held, .. } => message.ciaddr = held.lease.address,
        _ => {}
    }
    let timer = Action::SetTimer { at: now.saturating_add(wait), why: Timer::Retransmit { attempt: ex.attempt } };
    vec![Action::Send { message, to }, timer]
}

/// 4 s, 8 s, 16 s, 32 s, then 64 s, each ±1 s of jitter from the high half of `random`.
pub fn backoff(attempt: u32, random: u64) -> Duration {
    let base = Duration::from_secs(4 << attempt.min(4));
    let jitter_ms = (random >> 32) % 2001;
    (base + Duration::from_millis(jitter_ms)).saturating_sub(Duration::from_secs(1))
}

/// Half the time left to `deadline`, at least 60 s, but never past the deadline (RFC 2131 §4.4.5).
fn reacquire_wait(now: Duration, deadline: Duration) -> Duration {
    let left = deadline.saturating_sub(now);
    (left / 2).max(MIN_REACQUIRE_WAIT).min(left)
}

fn new_xid(ctx: &Context) -> u32 {
    ctx.random as u32
}

/// A request with the options every message of ours carries.
fn message(ctx: &Context, xid: u32, kind: MessageType, started: Duration) -> Message {
    let mac = ctx.config.mac;
    let mut m = Message::request(xid, mac);
    m.secs = u16::try_from(ctx.now.saturating_sub(started).as_secs()).unwrap_or(u16::MAX);
    m.options.set(code::MESSAGE_TYPE, vec![kind as u8]);
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&mac);
    m.options.set(code::CLIENT_ID, client_id);
    if kind != MessageType::Release {
        m.options.set(code::MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE.to_be_bytes().to_vec());
        m.options.set(code::PARAMETER_REQUEST, PARAMETERS.to_vec());
        if let Some(name) = ctx.config.hostname.as_deref().filter(|n| !n.is_empty() && n.len() <= 255) {
            m.options.set(code::HOSTNAME, name.as_bytes().to_vec());
        }
    }
    m
}
