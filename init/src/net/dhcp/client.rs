//! Drives the state machine on one interface with real sockets and tokio timers, and reports what it leases.
//! It configures nothing itself: the network controller applies `Bound`/`Renewed` and removes on `Expired`.

use super::codec::Message;
use super::lease::Lease;
use super::machine::{self, Action, Config, Context, Dest, Input, State, Timer};
use super::socket::{self, PacketSocket};
use crate::logging::q;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpEvent {
    /// A new address: add it (and its routes, DNS, …).
    Bound { ifindex: u32, lease: Lease },
    /// The same address, renewed; the other fields may have changed.
    Renewed { ifindex: u32, lease: Lease },
    /// The lease ran out or a server refused it: remove the address.
    Expired { ifindex: u32, lease: Lease },
    /// Released on request (the address too, if one was held); the client has stopped.
    Released { ifindex: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpControl {
    /// Send DHCPRELEASE (when a lease is held), report `Released`, and stop.
    Release,
    LinkDown,
    LinkUp,
}

/// How long to wait before trying again to open the packet socket.
const OPEN_RETRY: Duration = Duration::from_secs(5);
/// The pause after a failed receive, so a socket error cannot spin the loop.
const RECV_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The DHCP client for one interface. Returns after `Released`, or when `control` or `events` closes.
pub async fn run(
    ifindex: u32,
    ifname: String,
    mac: [u8; 6],
    hostname: Option<String>,
    events: mpsc::Sender<DhcpEvent>,
    mut control: mpsc::Receiver<DhcpControl>,
) {
    let packet = loop {
        match PacketSocket::open(ifindex) {
            Ok(s) => break s,
            Err(e) => {
                log::error!("net.dhcp.socket_failed if={ifname} error={}", q(&e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(OPEN_RETRY) => {}
                    c = control.recv() => match c {
                        Some(DhcpControl::Release) => {
                            log::info!("net.dhcp.released if={ifname} addr=none");
                            let _ = events.send(DhcpEvent::Released { ifindex }).await;
                            return;
                        }
                        Some(_) => {}
                        None => return,
                    },
                }
            }
        }
    };
    let mut client = Client {
        ifindex,
        ifname,
        config: Config { mac, hostname },
        epoch: Instant::now(),
        packet,
        unicast: None,
        timer: None,
        current: None,
        events,
    };
    log::info!("net.dhcp.start if={} mac={}", client.ifname, format_mac(&mac));
    let (mut state, actions) = machine::start(&client.context());
    if !client.execute(&state, actions).await {
        return;
    }
    loop {
        let input = tokio::select! {
            _ = sleep_until(client.timer.and_then(|at| client.epoch.checked_add(at))) => Input::Timer,
            received = client.packet.recv() => match received {
                Ok(r) => match decode(&r.payload, &client.ifname, Some(r.from)) {
                    Some(m) => Input::Packet(m),
                    None => continue,
                },
                Err(e) => {
                    log::warn!("net.dhcp.recv_failed if={} error={}", client.ifname, q(&e.to_string()));
                    tokio::time::sleep(RECV_ERROR_PAUSE).await;
                    continue;
                }
            },
            received = recv_unicast(client.unicast.as_ref().map(|(_, s)| s)) => match received {
                Some(payload) => match decode(&payload, &client.ifname, None) {
                    Some(m) => Input::Packet(m),
                    None => continue,
                },
                None => {
                    client.unicast = None;
                    continue;
                }
            },
            c = control.recv() => match c {
                Some(DhcpControl::Release) => Input::Release,
                Some(DhcpControl::LinkDown) => Input::LinkDown,
                Some(DhcpControl::LinkUp) => Input::LinkUp,
                None => return,
            },
        };
        let from = state.name();
        let (next, actions) = machine::step(state, input, &client.context());
        state = next;
        if state.name() != from {
            log::debug!("net.dhcp.state if={} from={from} to={}", client.ifname, state.name());
        }
        if !client.execute(&state, actions).await {
            return;
        }
    }
}

struct Client {
    ifindex: u32,
    ifname: String,
    config: Config,
    /// Time zero of the machine's clock.
    epoch: Instant,
    packet: PacketSocket,
    /// The unicast socket and the leased address it is bound to.
    unicast: Option<(Ipv4Addr, UdpSocket)>,
    timer: Option<Duration>,
    /// The lease last reported, to tell what a renewal changed.
    current: Option<Lease>,
    events: mpsc::Sender<DhcpEvent>,
}

impl Client {
    fn context(&self) -> Context<'_> {
        Context { config: &self.config, now: self.epoch.elapsed(), random: crate::retry::insecure_u64() }
    }

    /// Carries out a step's actions; false when the client is done (released, or no one listens any more).
    async fn execute(&mut self, state: &State, actions: Vec<Action>) -> bool {
        let mut running = true;
        for action in actions {
            let event = match action {
                Action::Send { message, to } => {
                    self.send(&message, to).await;
                    continue;
                }
                Action::SetTimer { at, why } => {
                    self.timer = Some(at);
                    if let Timer::Retransmit { attempt: 1.. } = why {
                        let in_s = at.saturating_sub(self.epoch.elapsed()).as_secs_f64();
                        log::info!("net.dhcp.retry if={} state={} in_s={in_s:.1}", self.ifname, state.name());
                    }
                    continue;
                }
                Action::ClearTimer => {
                    self.timer = None;
                    continue;
                }
                Action::Bound(lease) => {
                    log::info!("net.dhcp.bound if={} {}", self.ifname, describe(&lease));
                    self.current = Some(lease.clone());
                    DhcpEvent::Bound { ifindex: self.ifindex, lease }
                }
                Action::Renewed(lease) => {
                    let changed = self.current.as_ref().map(|old| old.changes(&lease).join(",")).unwrap_or_default();
                    let changed = if changed.is_empty() { "none".to_string() } else { changed };
                    log::info!("net.dhcp.renewed if={} {} changed={changed}", self.ifname, describe(&lease));
                    self.current = Some(lease.clone());
                    DhcpEvent::Renewed { ifindex: self.ifindex, lease }
                }
                Action::Expired(lease) => {
                    log::info!("net.dhcp.expired if={} addr={}/{}", self.ifname, lease.address, lease.prefix_len);
                    self.current = None;
                    if self.unicast.as_ref().is_some_and(|(addr, _)| *addr == lease.address) {
                        self.unicast = None;
                    }
                    DhcpEvent::Expired { ifindex: self.ifindex, lease }
                }
                Action::Released => {
                    let addr = self.current.take().map_or("none".to_string(), |l| l.address.to_string());
                    log::info!("net.dhcp.released if={} addr={addr}", self.ifname);
                    self.unicast = None;
                    running = false;
                    DhcpEvent::Released { ifindex: self.ifindex }
                }
            };
            if self.events.send(event).await.is_err() {
                log::warn!("net.dhcp.stopped if={} reason=events_closed", self.ifname);
                return false;
            }
        }
        running
    }

    async fn send(&mut self, message: &Message, to: Dest) {
        let bytes = message.encode();
        let kind = message.message_type().map_or("?", |t| t.name());
        let result = match to {
            Dest::Broadcast => self.packet.send_broadcast(message.ciaddr, &bytes).await,
            Dest::Server(server) => match self.unicast_socket(message.ciaddr) {
                Ok(socket) => socket::send_unicast(socket, server, &bytes).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => log::debug!("net.dhcp.sent if={} type={kind} xid={:#010x} to={to:?}", self.ifname, message.xid),
            Err(e) => log::warn!("net.dhcp.send_failed if={} type={kind} error={}", self.ifname, q(&e.to_string())),
        }
    }

    /// The unicast socket for the leased address, opened (or reopened for a new address) when needed.
    fn unicast_socket(&mut self, addr: Ipv4Addr) -> Result<&UdpSocket, socket::SocketError> {
        match self.unicast.take() {
            Some((bound, s)) if bound == addr => Ok(&self.unicast.insert((bound, s)).1),
            // Any other socket is closed by now, so a new one may take port 68 again.
            _ => Ok(&self.unicast.insert((addr, socket::open_unicast(&self.ifname, addr)?)).1),
        }
    }
}

fn decode(payload: &[u8], ifname: &str, from: Option<std::net::Ipv4Addr>) -> Option<Message> {
    match Message::decode(payload) {
        Ok(m) => Some(m),
        Err(e) => {
            let from = from.map(|a| a.to_string()).unwrap_or_else(|| "unicast".into());
            log::debug!("net.dhcp.message_dropped if={ifname} from={from} error={}", q(&e.to_string()));
            None
        }
    }
}

/// The next datagram on the unicast socket; never, when there is none; `None` when it failed.
async fn recv_unicast(socket: Option<&UdpSocket>) -> Option<Vec<u8>> {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    let mut buf = vec![0u8; 4096];
    match socket.recv(&mut buf).await {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) => {
            log::warn!("net.dhcp.unicast_recv_failed error={}", q(&e.to_string()));
            None
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `addr=10.0.2.15/24 gw=10.0.2.2 lease_s=86400 server=10.0.2.2 dns=10.0.2.3 routes=0`
fn describe(lease: &Lease) -> String {
    let gw = lease.default_gateway().map_or("none".to_string(), |g| g.to_string());
    let dns = lease.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    format!(
        "addr={}/{} gw={gw} lease_s={} server={} dns={} routes={}",
        lease.address,
        lease.prefix_len,
        lease.lease.as_secs(),
        lease.server,
        if dns.is_empty() { "none" } else { &dns },
        lease.effective_routes().len()
    )
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
