//! An SNTPv4 client (RFC 4330; client mode of RFC 5905): one 48-byte request, one checked reply, the clock
//! offset θ and round-trip delay δ.
//!
//! Timestamps are NTP's 64-bit fixed point (seconds since 1900 in the high 32 bits, the fraction in the low 32),
//! which wraps every 2^32 s: era 1 begins 2036-02-07T06:28:16Z. All arithmetic between timestamps is a wrapping
//! difference read as a signed 64-bit number, which stays right across an era boundary as long as the clocks
//! involved are within 68 years of each other (RFC 4330 §3, RFC 5905 §6).
//!
//! Servers are IP addresses (`192.0.2.1`, `192.0.2.1:123`, `2001:db8::1`, `[2001:db8::1]:123`), used as they
//! are, or host names. A static musl PID 1 has no NSS: names are resolved by musl's own stub resolver through
//! `std::net::ToSocketAddrs` (via `tokio::net::lookup_host`), which reads `/etc/hosts` and the nameservers in
//! `/etc/resolv.conf` (a link to `/run/keel/resolv.conf`). Until networking writes that file, host names fail to
//! resolve (reported as `time.unreachable`) and only IP addresses work.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

pub const PORT: u16 = 123;
pub const PACKET_LEN: usize = 48;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const UNIX_TO_NTP: i128 = 2_208_988_800;
const NANOS: i128 = 1_000_000_000;
/// A reply whose root distance (root delay / 2 + root dispersion) is beyond this is not worth using.
const MAX_ROOT_DISTANCE: Duration = Duration::from_secs(16);
/// Addresses tried per host name.
const MAX_ADDRESSES: usize = 4;

/// An NTP timestamp: 32.32 fixed-point seconds within its era.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// From nanoseconds since the Unix epoch; the era is folded away.
    pub fn from_unix_nanos(nanos: i128) -> NtpTimestamp {
        let secs = (nanos.div_euclid(NANOS) + UNIX_TO_NTP).rem_euclid(1 << 32);
        let frac = ((nanos.rem_euclid(NANOS) << 32) + NANOS / 2) / NANOS;
        NtpTimestamp(((secs as u64) << 32) | frac as u64)
    }

    pub fn from_system_time(t: SystemTime) -> NtpTimestamp {
        NtpTimestamp::from_unix_nanos(unix_nanos(t))
    }

    /// Nanoseconds since the Unix epoch, taking the era that puts the result nearest `pivot` (also Unix nanos).
    #[cfg(test)]
    pub fn to_unix_nanos(self, pivot: i128) -> i128 {
        let pivot_fixed = nanos_to_fixed(pivot + UNIX_TO_NTP * NANOS);
        let delta = self.0.wrapping_sub(pivot_fixed as u64) as i64;
        fixed_to_nanos(pivot_fixed + i128::from(delta)) - UNIX_TO_NTP * NANOS
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `a − b` in 2^-32 s, right across era boundaries.
fn diff(a: NtpTimestamp, b: NtpTimestamp) -> i128 {
    i128::from(a.0.wrapping_sub(b.0) as i64)
}

/// 2^-32 s units to nanoseconds, rounded to nearest.
fn fixed_to_nanos(fixed: i128) -> i128 {
    (fixed * NANOS + (1 << 31)) >> 32
}

#[cfg(test)]
fn nanos_to_fixed(nanos: i128) -> i128 {
    ((nanos << 32) + NANOS / 2).div_euclid(NANOS)
}

/// θ and δ of one exchange, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How far the server's clock is ahead of ours.
    pub offset_ns: i64,
    /// Round trip, without the server's own processing time.
    pub delay_ns: i64,
}

/// θ = ((T2−T1)+(T3−T4))/2 and δ = (T4−T1)−(T3−T2), from our transmit (T1), the server's receive (T2) and
/// transmit (T3), and our receive (T4).
pub fn offset_delay(t1: NtpTimestamp, t2: NtpTimestamp, t3: NtpTimestamp, t4: NtpTimestamp) -> Sample {
    let offset = fixed_to_nanos(diff(t2, t1) + diff(t3, t4)) / 2;
    let delay = fixed_to_nanos(diff(t4, t1) - diff(t3, t2));
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Sample { offset_ns: clamp(offset), delay_ns: clamp(delay) }
}

#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    #[error("reply of {0} bytes is shorter than 48")]
    Short(usize),
    #[error("reply mode {0} is not 4 (server)")]
    Mode(u8),
    #[error("reply version {0} is not 3 or 4")]
    Version(u8),
    #[error("originate timestamp does not match our transmit timestamp")]
    Originate,
    #[error("kiss-o'-death {0}")]
    Kiss(String),
    #[error("server is unsynchronised (leap indicator 3)")]
    Unsynchronised,
    #[error("server stratum {0} is outside 1..=15")]
    Stratum(u8),
    #[error("zero receive or transmit timestamp")]
    ZeroTimestamp,
    #[error("root distance {0} ms is too large")]
    RootDistance(u64),
    #[error("negative round-trip delay {0} ns")]
    Delay(i64),
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

/// The 48-byte NTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    /// 16.16 fixed-point seconds.
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub reference_id: [u8; 4],
    pub reference: NtpTimestamp,
    pub originate: NtpTimestamp,
    pub receive: NtpTimestamp,
    pub transmit: NtpTimestamp,
}

impl Packet {
    /// A client request: LI 0, VN 4, mode 3, everything zero but the transmit timestamp.
    pub fn request(transmit: NtpTimestamp) -> Packet {
        Packet { version: 4, mode: 3, transmit, ..Packet::default() }
    }

    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = ((self.leap & 3) << 6) | ((self.version & 7) << 3) | (self.mode & 7);
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        for (i, ts) in [self.reference, self.originate, self.receive, self.transmit].iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&ts.0.to_be_bytes());
        }
        b
    }

    /// Parses the header; anything after 48 bytes (extension fields, a MAC) is ignored.
    pub fn decode(buf: &[u8]) -> Result<Packet, SntpError> {
        let b: &[u8; PACKET_LEN] =
            buf.get(..PACKET_LEN).and_then(|h| h.try_into().ok()).ok_or(SntpError::Short(buf.len()))?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let ts_at = |i: usize| NtpTimestamp((u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4)));
        Ok(Packet {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: ts_at(16),
            originate: ts_at(24),
            receive: ts_at(32),
            transmit: ts_at(40),
        })
    }

    /// The kiss code of a stratum-0 reply (`RATE`, `DENY`, `RSTR`, …), printable whatever the server sent.
    pub fn kiss_code(&self) -> String {
        let id = &self.reference_id;
        if id.iter().all(|c| c.is_ascii_alphanumeric()) {
            id.iter().map(|&c| char::from(c)).collect()
        } else {
            id.iter().map(|c| format!("{c:02x}")).collect()
        }
    }
}

/// Checks a reply to the request we sent with transmit timestamp `sent` (RFC 4330 §5). The originate check comes
/// first, so that nobody who has not seen our request can make us act on a kiss-o'-death.
pub fn check_reply(reply: &Packet, sent: NtpTimestamp) -> Result<(), SntpError> {
    if reply.mode != 4 {
        return Err(SntpError::Mode(reply.mode));
    }
    if !(3..=4).contains(&reply.version) {
        return Err(SntpError::Version(reply.version));
    }
    if reply.originate != sent {
        return Err(SntpError::Originate);
    }
    if reply.stratum == 0 {
        return Err(SntpError::Kiss(reply.kiss_code()));
    }
    if reply.leap == 3 {
        return Err(SntpError::Unsynchronised);
    }
    if reply.stratum > 15 {
        return Err(SntpError::Stratum(reply.stratum));
    }
    if reply.transmit.is_zero() || reply.receive.is_zero() {
        return Err(SntpError::ZeroTimestamp);
    }
    let root_ms = ((u64::from(reply.root_delay) / 2 + u64::from(reply.root_dispersion)) * 1000) >> 16;
    if root_ms > MAX_ROOT_DISTANCE.as_millis() as u64 {
        return Err(SntpError::RootDistance(root_ms));
    }
    Ok(())
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
            Err(e @ SntpError::Kiss(_)) => return Err(e),
            Err(e) => {
                log::debug!("time.reply_rejected addr={addr} error={}", crate::logging::q(&e.to_string()));
                rejected = Some(e);
                continue;
            }
        };
        let sample = offset_delay(t1, reply.receive, reply.transmit, t4);
        if sample.delay_ns < -DELAY_SLACK_NS {
            return Err(SntpError::Delay(sample.delay_ns));
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
            Err(e @ SntpError::Kiss(_)) => return Err(e),
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
