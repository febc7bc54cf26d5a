//! An SNTPv4 client (RFC 4330; client mode of RFC 5905): one 48-byte request, one checked reply, the clock
//! offset θ and round-trip delay δ. The packet format, the reply checks and the arithmetic are the pure, fuzzed
//! `keel_wire::sntp`; this module owns the servers, the sockets and the waits.
//!
//! Servers are IP addresses (`192.0.2.1`, `192.0.2.1:123`, `2001:db8::1`, `[2001:db8::1]:123`), used as they
//! are, or host names. A static musl PID 1 has no NSS: names are resolved by musl's own stub resolver through
//! `std::net::ToSocketAddrs` (via `tokio::net::lookup_host`), which reads `/etc/hosts` and the nameservers in
//! `/etc/resolv.conf` (a link to `/run/keel/resolv.conf`). Until networking writes that file, host names fail to
//! resolve (reported as `time.unreachable`) and only IP addresses work.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;

pub use keel_wire::sntp::{check_reply, offset_delay, NtpTimestamp, Packet, ReplyError, Sample, PORT};

/// Addresses tried per host name.
const MAX_ADDRESSES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("invalid server {0:?}")]
    BadServer(String),
    #[error("resolve {host}: {error}")]
    Resolve { host: String, error: String },
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("no reply within {0} ms")]
    Timeout(u128),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Where to send requests for one configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

/// Parses a configured server: an IP address with or without a port, or a host name with or without a port.
pub fn parse_server(text: &str) -> Result<Target, SntpError> {
    let s = text.trim();
    let bad = || SntpError::BadServer(text.to_string());
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Target::Addr(addr));
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Target::Addr(SocketAddr::new(ip, PORT)));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
        None => (s, PORT),
    };
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) || port == 0 {
        return Err(bad());
    }
    Ok(Target::Name { host: host.to_string(), port })
}

/// The addresses of a target; names through the system (musl) resolver, bounded by `timeout`.
pub async fn resolve(target: &Target, timeout: Duration) -> Result<Vec<SocketAddr>, SntpError> {
    let (host, port) = match target {
        Target::Addr(addr) => return Ok(vec![*addr]),
        Target::Name { host, port } => (host.as_str(), *port),
    };
    let err = |error: String| SntpError::Resolve { host: host.to_string(), error };
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.take(MAX_ADDRESSES).collect(),
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(_) => return Err(err(format!("no answer within {} ms", timeout.as_millis()))),
    };
    if addrs.is_empty() {
        return Err(SntpError::NoAddress(host.to_string()));
    }
    Ok(addrs)
}

/// One good answer from one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The server as configured.
    pub server: String,
    pub addr: SocketAddr,
    pub stratum: u8,
    pub offset_ns: i64,
    pub delay_ns: i64,
}

/// Delays this far below zero are rounding; beyond it the server's timestamps are nonsense.
const DELAY_SLACK_NS: i64 = 1_000_000;

/// One request to `addr`; `now` reads the clock being disciplined (T1, T4). Replies that fail the checks are
/// ignored while the deadline lasts (they may be stale or spoofed); at the deadline the last rejection is returned.
pub async fn query_addr(
    addr: SocketAddr,
    timeout: Duration,
    now: &impl Fn() -> SystemTime,
) -> Result<(Sample, u8), SntpError> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone else, and an ICMP port-unreachable fails the receive.
    socket.connect(addr).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let t1 = NtpTimestamp::from_system_time(now());
    socket.send(&Packet::request(t1).encode()).await?;
    let mut buf = [0u8; 512];
    let mut rejected = None;
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(received) => received?,
            Err(_) => return Err(rejected.unwrap_or(SntpError::Timeout(timeout.as_millis()))),
        };
        let t4 = NtpTimestamp::from_system_time(now());
        let reply = match Packet::decode(&buf[..n]).and_then(|p| check_reply(&p, t1).map(|()| p)) {
            Ok(reply) => reply,
            Err(e @ ReplyError::Kiss(_)) => return Err(e.into()),
            Err(e) => {
                log::debug!("time.reply_rejected addr={addr} error={}", crate::logging::q(&e.to_string()));
                rejected = Some(SntpError::Reply(e));
                continue;
            }
        };
        let sample = offset_delay(t1, reply.receive, reply.transmit, t4);
        if sample.delay_ns < -DELAY_SLACK_NS {
            return Err(ReplyError::Delay(sample.delay_ns).into());
        }
        return Ok((Sample { delay_ns: sample.delay_ns.max(0), ..sample }, reply.stratum));
    }
}

/// Queries one configured server: its address, or each address its name resolves to until one answers.
pub async fn query_server(
    server: &str,
    timeout: Duration,
    now: &impl Fn() -> SystemTime,
) -> Result<Measurement, SntpError> {
    let addrs = resolve(&parse_server(server)?, timeout).await?;
    let mut last = SntpError::NoAddress(server.to_string());
    for addr in addrs {
        match query_addr(addr, timeout, now).await {
            Ok((sample, stratum)) => {
                let Sample { offset_ns, delay_ns } = sample;
                return Ok(Measurement { server: server.to_string(), addr, stratum, offset_ns, delay_ns });
            }
            Err(e @ SntpError::Reply(ReplyError::Kiss(_))) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Queries every server in turn (not at once, so the exchanges do not delay one another).
pub async fn query_all(
    servers: &[String],
    timeout: Duration,
    now: &impl Fn() -> SystemTime,
) -> Vec<(String, Result<Measurement, SntpError>)> {
    let mut results = Vec::with_capacity(servers.len());
    for server in servers {
        results.push((server.clone(), query_server(server, timeout, now).await));
    }
    results
}

/// The answer with the lowest round-trip delay: the one whose offset is least blurred by the path.
pub fn best(results: &[(String, Result<Measurement, SntpError>)]) -> Option<&Measurement> {
    results.iter().filter_map(|(_, r)| r.as_ref().ok()).min_by_key(|m| m.delay_ns)
}

#[cfg(test)]
mod tests;
