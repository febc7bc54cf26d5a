//! The vocabulary of the state machine ([`super::machine`]): its states, inputs, actions and context.

use super::codec::Message;
use super::lease::Lease;
use std::net::Ipv4Addr;
use std::time::Duration;

pub struct Config {
    pub mac: [u8; 6],
    pub hostname: Option<String>,
}

/// Everything a step needs besides the state and the input.
pub struct Context<'a> {
    pub config: &'a Config,
    /// Now, on the caller's monotonic clock; every time in [`Action::SetTimer`] is on the same clock.
    pub now: Duration,
    /// A fresh random number for this step: the low half makes new xids, the high half jitter.
    pub random: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Packet(Message),
    Timer,
    LinkDown,
    LinkUp,
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To 255.255.255.255 from `ciaddr` (0.0.0.0 while we hold no address), on the link.
    Broadcast,
    /// Unicast to the server, from the leased address.
    Server(Ipv4Addr),
}

/// Why a timer was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Init: discover again after repeated NAKs.
    Restart,
    /// No reply yet: send again. `attempt` is 0 after a message's first send, 1 after its first retransmission, …
    Retransmit { attempt: u32 },
    /// Bound: T1.
    Renew,
    /// Link down: the held lease runs out.
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        message: Message,
        to: Dest,
    },
    /// Replaces the one timer; `Input::Timer` is due at `at`.
    SetTimer {
        at: Duration,
        why: Timer,
    },
    ClearTimer,
    Bound(Lease),
    /// The same address again; the options may have changed.
    Renewed(Lease),
    /// The address is no longer ours: the caller removes it.
    Expired(Lease),
    Released,
}

/// A lease and when we asked for it (its times count from then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub lease: Lease,
    pub since: Duration,
}

impl Held {
    pub fn t1_at(&self) -> Duration {
        self.since.saturating_add(self.lease.t1)
    }
    pub fn t2_at(&self) -> Duration {
        self.since.saturating_add(self.lease.t2)
    }
    pub fn expires_at(&self) -> Duration {
        self.since.saturating_add(self.lease.lease)
    }
}

/// One exchange of requests and replies: its xid, when it started (for `secs`), its last send and the sends so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub xid: u32,
    pub started: Duration,
    pub sent: Duration,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Init {
        naks: u32,
    },
    Selecting {
        ex: Exchange,
        naks: u32,
    },
    Requesting {
        ex: Exchange,
        naks: u32,
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
    Bound {
        held: Held,
    },
    Renewing {
        ex: Exchange,
        held: Held,
    },
    Rebinding {
        ex: Exchange,
        held: Held,
    },
    InitReboot {
        ex: Exchange,
        held: Held,
    },
    /// The link is down; a held lease still runs out.
    Stopped {
        held: Option<Held>,
    },
    Released,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Init { .. } => "init",
            State::Selecting { .. } => "selecting",
            State::Requesting { .. } => "requesting",
            State::Bound { .. } => "bound",
            State::Renewing { .. } => "renewing",
            State::Rebinding { .. } => "rebinding",
            State::InitReboot { .. } => "init-reboot",
            State::Stopped { .. } => "stopped",
            State::Released => "released",
        }
    }

    pub(super) fn exchange(&self) -> Option<&Exchange> {
        match self {
            State::Selecting { ex, .. }
            | State::Requesting { ex, .. }
            | State::Renewing { ex, .. }
            | State::Rebinding { ex, .. }
            | State::InitReboot { ex, .. } => Some(ex),
            _ => None,
        }
    }

    pub(super) fn into_held(self) -> Option<Held> {
        match self {
            State::Bound { held }
            | State::Renewing { held, .. }
            | State::Rebinding { held, .. }
            | State::InitReboot { held, .. }
            | State::Stopped { held: Some(held) } => Some(held),
            _ => None,
        }
    }
}
