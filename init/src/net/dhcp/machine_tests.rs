//! The state machine on a fake clock: whole lifecycles, retransmission, NAKs, foreign packets, link changes.

use super::codec::{code, Message, MessageType, BOOTREPLY};
use super::lease::Lease;
use super::machine::{self, backoff, Action, Config, Context, Dest, Input, State, Timer};
use std::net::Ipv4Addr;
use std::time::Duration;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
/// The high half of every random number: jitter exactly 0.
const NO_JITTER: u64 = 1000 << 32;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// The machine on a fake clock; each step gets a new random number, so each new exchange a new xid.
struct Sim {
    config: Config,
    now: Duration,
    counter: u64,
    state: State,
}

impl Sim {
    fn start() -> (Sim, Vec<Action>) {
        let config = Config { mac: MAC, hostname: None };
        let mut sim = Sim { config, now: Duration::ZERO, counter: 1, state: State::Released };
        let (state, actions) = machine::start(&sim.ctx());
        sim.state = state;
        (sim, actions)
    }

    fn ctx(&mut self) -> Context<'_> {
        self.counter += 1;
        Context { config: &self.config, now: self.now, random: NO_JITTER | self.counter }
    }

    fn step(&mut self, input: Input) -> Vec<Action> {
        let state = std::mem::replace(&mut self.state, State::Released);
        let (state, actions) = machine::step(state, input, &self.ctx());
        self.state = state;
        actions
    }

    /// Moves the clock to `at` and fires the timer.
    fn fire_at(&mut self, at: Duration) -> Vec<Action> {
        self.now = at;
        self.step(Input::Timer)
    }

    fn receive(&mut self, m: Message) -> Vec<Action> {
        self.step(Input::Packet(m))
    }

    fn name(&self) -> &'static str {
        self.state.name()
    }
}

fn sent(actions: &[Action]) -> (Message, Dest) {
    match actions.iter().find_map(|a| match a {
        Action::Send { message, to } => Some((message.clone(), *to)),
        _ => None,
    }) {
        Some(found) => found,
        None => panic!("nothing sent: {actions:?}"),
    }
}

fn timer(actions: &[Action]) -> (Duration, Timer) {
    match actions.iter().rev().find_map(|a| match a {
        Action::SetTimer { at, why } => Some((*at, *why)),
        _ => None,
    }) {
        Some(found) => found,
        None => panic!("no timer: {actions:?}"),
    }
}

fn reply(kind: MessageType, xid: u32, yiaddr: Ipv4Addr, lease_s: u32) -> Message {
    let mut m = Message::request(xid, MAC);
    m.op = BOOTREPLY;
    m.yiaddr = yiaddr;
    m.options.set(code::MESSAGE_TYPE, vec![kind as u8]);
    m.options.set(code::SERVER_ID, SERVER.octets().to_vec());
    if kind != MessageType::Nak {
        m.options.set(code::LEASE_TIME, lease_s.to_be_bytes().to_vec());
        m.options.set(code::SUBNET_MASK, vec![255, 255, 255, 0]);
        m.options.set(code::ROUTERS, SERVER.octets().to_vec());
    }
    m
}

/// Start → DISCOVER → OFFER → REQUEST → ACK at time 0 with a lease of `lease_s`; returns the ACK's lease.
fn bound(lease_s: u32) -> (Sim, Lease) {
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    let actions = sim.receive(reply(MessageType::Offer, discover.xid, ADDR, lease_s));
    let (request, _) = sent(&actions);
    let actions = sim.receive(reply(MessageType::Ack, request.xid, ADDR, lease_s));
    let Some(Action::Bound(lease)) = actions.first().cloned() else { panic!("not bound: {actions:?}") };
    (sim, lease)
}

#[test]
fn discovers_with_exponential_backoff() {
    let (mut sim, actions) = Sim::start();
    let (discover, to) = sent(&actions);
    assert_eq!((discover.message_type(), to), (Some(MessageType::Discover), Dest::Broadcast));
    assert_eq!(discover.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(timer(&actions), (s(4), Timer::Retransmit { attempt: 0 }));
    let mut at = s(4);
    for (attempt, wait) in [8, 16, 32, 64, 64, 64].into_iter().enumerate() {
        let actions = sim.fire_at(at);
        let (again, _) = sent(&actions);
        assert_eq!(again.xid, discover.xid, "a retransmission keeps its xid");
        assert_eq!(again.secs as u64, at.as_secs(), "secs counts from the first DISCOVER");
        assert_eq!(timer(&actions), (at + s(wait), Timer::Retransmit { attempt: attempt as u32 + 1 }));
        at += s(wait);
    }
}

#[test]
fn backoff_jitter_stays_within_a_second() {
    assert_eq!(backoff(0, 0), s(3));
    assert_eq!(backoff(0, 2000 << 32), s(5));
    assert_eq!(backoff(2, 1500 << 32), Duration::from_millis(16_500));
    assert_eq!(backoff(40, NO_JITTER), s(64), "capped, and no overflow on huge attempts");
    for r in 0..5000u64 {
        let b = backoff(1, r.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert!(b >= s(7) && b <= s(9), "{b:?}");
    }
}

#[test]
fn full_lifecycle_renew_rebind_expire() {
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    sim.now = s(1);
    let actions = sim.receive(reply(MessageType::Offer, discover.xid, ADDR, 1000));
    let (request, to) = sent(&actions);
    assert_eq!((sim.name(), to, request.xid), ("requesting", Dest::Broadcast, discover.xid));
    assert_eq!(request.options.get(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
    assert_eq!(request.options.get(code::SERVER_ID), Some(&SERVER.octets()[..]));
    assert_eq!(timer(&actions), (s(5), Timer::Retransmit { attempt: 0 }));

    sim.now = s(2);
    let actions = sim.receive(reply(MessageType::Ack, request.xid, ADDR, 1000));
    let Some(Action::Bound(lease)) = actions.first() else { panic!("{actions:?}") };
    assert_eq!((lease.address, lease.prefix_len, lease.t1, lease.t2), (ADDR, 24, s(500), s(875)));
    // The lease counts from when the REQUEST went out (1 s), not from the ACK.
    assert_eq!(timer(&actions), (s(501), Timer::Renew));
    assert_eq!(sim.name(), "bound");
    // A second copy of the ACK (it arrives on both sockets) changes nothing.
    assert!(sim.receive(reply(MessageType::Ack, request.xid, ADDR, 1000)).is_empty());

    // T1: renew, unicast to the server, from the leased address, with a new xid.
    let actions = sim.fire_at(s(501));
    let (renew, to) = sent(&actions);
    assert_eq!((sim.name(), to), ("renewing", Dest::Server(SERVER)));
    assert_eq!((renew.message_type(), renew.ciaddr), (Some(MessageType::Request), ADDR));
    assert_eq!(renew.options.get(code::REQUESTED_IP), None, "RFC 2131 table 5: not in RENEWING");
    assert_eq!(renew.options.get(code::SERVER_ID), None);
    assert_ne!(renew.xid, request.xid);
    // Half the time to T2 (876 s): 187.5 s.
    assert_eq!(timer(&actions), (s(501) + Duration::from_millis(187_500), Timer::Retransmit { attempt: 0 }));
    let actions = sim.fire_at(s(688) + Duration::from_millis(500));
    assert_eq!(sent(&actions).1, Dest::Server(SERVER));
    assert_eq!(timer(&actions).0, Duration::from_millis(782_250), "half of 187.5 s left");

    // T2: rebind, broadcast, still from the leased address.
    let actions = sim.fire_at(s(876));
    let (rebind, to) = sent(&actions);
    assert_eq!((sim.name(), to, rebind.ciaddr), ("rebinding", Dest::Broadcast, ADDR));
    assert_eq!(timer(&actions).0, Duration::from_millis(938_500), "half of the 125 s left to expiry");
    // Any server may answer a rebind: a renewed lease, same address.
    sim.now = s(900);
    let actions = sim.receive(reply(MessageType::Ack, rebind.xid, ADDR, 1000));
    assert!(matches!(actions.first(), Some(Action::Renewed(l)) if l.address == ADDR), "{actions:?}");
    assert_eq!(timer(&actions), (s(876 + 500), Timer::Renew), "counted from the rebind's last send");

    // Now no server answers: renewing, rebinding, each retransmitting, then expiry and a new DISCOVER.
    let mut at = timer(&sim.fire_at(s(1376))).0;
    let mut seen = vec![sim.name()];
    let actions = loop {
        let actions = sim.fire_at(at);
        if sim.name() == "selecting" {
            break actions;
        }
        seen.push(sim.name());
        let next = timer(&actions).0;
        // At least 60 s apart, unless cut short by T2 (1751 s) or the end of the lease (1876 s).
        assert!(next > at && (next - at >= s(60) || next == s(1751) || next == s(1876)), "{at:?} then {next:?}");
        at = next;
    };
    seen.dedup();
    assert_eq!(seen, ["renewing", "rebinding"]);
    assert_eq!(at, s(876 + 1000), "expired exactly at the end of the lease");
    assert!(matches!(actions.first(), Some(Action::Expired(l)) if l.address == ADDR), "{actions:?}");
    assert_eq!(sent(&actions).0.message_type(), Some(MessageType::Discover));
}

#[test]
fn expiry_reports_the_lease_then_discovers() {
    let (mut sim, lease) = bound(120);
    sim.fire_at(s(60));
    sim.fire_at(s(105));
    assert_eq!(sim.name(), "rebinding");
    let actions = sim.fire_at(s(120));
    assert_eq!(actions.first(), Some(&Action::Expired(lease)));
    assert_eq!(sent(&actions).0.message_type(), Some(MessageType::Discover));
    assert_eq!(sim.name(), "selecting");
}

#[test]
fn naks_restart_discovery_with_growing_delays() {
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    let (request, _) = sent(&sim.receive(reply(MessageType::Offer, discover.xid, ADDR, 600)));
    // A first NAK: discover at once.
    let actions = sim.receive(reply(MessageType::Nak, request.xid, Ipv4Addr::UNSPECIFIED, 0));
    assert_eq!((sim.name(), sent(&actions).0.message_type()), ("selecting", Some(MessageType::Discover)));
    // A second NAK in a row: wait first (4 s), then discover.
    let (d2, _) = sent(&actions);
    let (r2, _) = sent(&sim.receive(reply(MessageType::Offer, d2.xid, ADDR, 600)));
    let actions = sim.receive(reply(MessageType::Nak, r2.xid, Ipv4Addr::UNSPECIFIED, 0));
    assert_eq!((sim.name(), timer(&actions)), ("init", (s(4), Timer::Restart)));
    assert!(actions.iter().all(|a| !matches!(a, Action::Send { .. })));
    let actions = sim.fire_at(s(4));
    assert_eq!(sent(&actions).0.message_type(), Some(MessageType::Discover));
}

#[test]
fn nak_while_renewing_expires_the_lease() {
    let (mut sim, lease) = bound(100);
    let (renew, _) = sent(&sim.fire_at(s(50)));
    let actions = sim.receive(reply(MessageType::Nak, renew.xid, Ipv4Addr::UNSPECIFIED, 0));
    assert_eq!(actions.first(), Some(&Action::Expired(lease)));
    assert_eq!(sim.name(), "selecting");
}

#[test]
fn ack_for_another_address() {
    // While requesting: the server decides; we are bound to what it acked.
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    let (request, _) = sent(&sim.receive(reply(MessageType::Offer, discover.xid, ADDR, 600)));
    let other = Ipv4Addr::new(10, 0, 0, 77);
    let actions = sim.receive(reply(MessageType::Ack, request.xid, other, 600));
    assert!(matches!(actions.first(), Some(Action::Bound(l)) if l.address == other), "{actions:?}");

    // While renewing: the old address goes, the new one comes.
    let (mut sim, lease) = bound(600);
    let (renew, _) = sent(&sim.fire_at(s(300)));
    let actions = sim.receive(reply(MessageType::Ack, renew.xid, other, 600));
    assert_eq!(actions[0], Action::Expired(lease));
    assert!(matches!(&actions[1], Action::Bound(l) if l.address == other), "{actions:?}");
    assert_eq!(sim.name(), "bound");
}

#[test]
fn ignores_packets_that_are_not_ours() {
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    let offer = reply(MessageType::Offer, discover.xid, ADDR, 600);
    let mut wrong_xid = offer.clone();
    wrong_xid.xid ^= 1;
    let mut wrong_mac = offer.clone();
    wrong_mac.chaddr[5] ^= 1;
    let mut request_op = offer.clone();
    request_op.op = 1;
    let mut no_server = offer.clone();
    no_server.options = super::codec::Options::default();
    no_server.options.set(code::MESSAGE_TYPE, vec![2]);
    let mut no_address = offer.clone();
    no_address.yiaddr = Ipv4Addr::UNSPECIFIED;
    let mut no_type = offer.clone();
    no_type.options.set(code::MESSAGE_TYPE, vec![99]);
    let ack_in_selecting = reply(MessageType::Ack, discover.xid, ADDR, 600);
    for m in [wrong_xid, wrong_mac, request_op, no_server, no_address, no_type, ack_in_selecting] {
        assert!(sim.receive(m.clone()).is_empty(), "{m:?}");
        assert_eq!(sim.name(), "selecting");
    }
    // Requesting: another server's ACK or NAK (it saw our broadcast naming someone else), or an ACK we cannot use.
    let (request, _) = sent(&sim.receive(offer));
    let mut other_server = reply(MessageType::Nak, request.xid, Ipv4Addr::UNSPECIFIED, 0);
    other_server.options.set(code::SERVER_ID, vec![10, 0, 0, 2]);
    assert!(sim.receive(other_server).is_empty());
    let mut no_lease_time = reply(MessageType::Ack, request.xid, ADDR, 600);
    no_lease_time.options.set(code::LEASE_TIME, vec![0, 0, 0, 0]);
    assert!(sim.receive(no_lease_time).is_empty());
    assert_eq!(sim.name(), "requesting");
}

#[test]
fn requesting_gives_up_on_an_offer() {
    let (mut sim, actions) = Sim::start();
    let (discover, _) = sent(&actions);
    let actions = sim.receive(reply(MessageType::Offer, discover.xid, ADDR, 600));
    let mut at = timer(&actions).0;
    for _ in 0..4 {
        at = timer(&sim.fire_at(at)).0;
        assert_eq!(sim.name(), "requesting");
    }
    let actions = sim.fire_at(at);
    assert_eq!((sim.name(), sent(&actions).0.message_type()), ("selecting", Some(MessageType::Discover)));
}

#[test]
fn release_goes_to_the_server() {
    let (mut sim, lease) = bound(600);
    let actions = sim.step(Input::Release);
    let (release, to) = sent(&actions);
    assert_eq!((release.message_type(), to, release.ciaddr), (Some(MessageType::Release), Dest::Server(SERVER), ADDR));
    assert_eq!(release.options.get(code::SERVER_ID), Some(&lease.server.octets()[..]));
    assert_eq!(release.options.get(code::CLIENT_ID), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
    assert_eq!(&actions[1..], &[Action::ClearTimer, Action::Released]);
    // Released is final.
    for input in [Input::Timer, Input::LinkUp, Input::LinkDown, Input::Release] {
        assert!(sim.step(input).is_empty());
    }
    // Nothing held: nothing to send.
    let (mut sim, _) = Sim::start();
    assert_eq!(sim.step(Input::Release), vec![Action::ClearTimer, Action::Released]);
}

#[test]
fn link_down_and_up_verifies_the_lease() {
    let (mut sim, lease) = bound(600);
    sim.now = s(100);
    let actions = sim.step(Input::LinkDown);
    assert_eq!((sim.name(), actions), ("stopped", vec![Action::SetTimer { at: s(600), why: Timer::Expire }]));
    sim.now = s(200);
    let actions = sim.step(Input::LinkUp);
    let (reboot, to) = sent(&actions);
    assert_eq!((sim.name(), to, reboot.ciaddr), ("init-reboot", Dest::Broadcast, Ipv4Addr::UNSPECIFIED));
    assert_eq!(reboot.options.get(code::REQUESTED_IP), Some(&ADDR.octets()[..]));
    assert_eq!(reboot.options.get(code::SERVER_ID), None);
    let actions = sim.receive(reply(MessageType::Ack, reboot.xid, ADDR, 600));
    assert!(matches!(actions.first(), Some(Action::Renewed(_))), "{actions:?}");

    // No answer after the link comes back: keep the lease we hold (RFC 2131 §3.2).
    sim.step(Input::LinkDown);
    let mut at = timer(&sim.step(Input::LinkUp)).0;
    at = timer(&sim.fire_at(at)).0;
    at = timer(&sim.fire_at(at)).0;
    let actions = sim.fire_at(at);
    assert_eq!((sim.name(), timer(&actions)), ("bound", (s(200 + 300), Timer::Renew)));

    // Down past the lease's end: expired while down, discover when up.
    sim.step(Input::LinkDown);
    let actions = sim.fire_at(s(800));
    assert!(matches!(actions.first(), Some(Action::Expired(l)) if l.address == lease.address), "{actions:?}");
    assert_eq!(sim.name(), "stopped");
    let actions = sim.step(Input::LinkUp);
    assert_eq!(sent(&actions).0.message_type(), Some(MessageType::Discover));
}

#[test]
fn spurious_timers_rearm() {
    let (mut sim, _) = bound(600);
    assert_eq!(sim.fire_at(s(10)), vec![Action::SetTimer { at: s(300), why: Timer::Renew }]);
    assert_eq!(sim.name(), "bound");
    // A link-up while bound is nothing new.
    assert!(sim.step(Input::LinkUp).is_empty());
}
