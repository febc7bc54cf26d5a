//! SNTPv4 packets (RFC 4330; client mode of RFC 5905): the 48-byte header to and from bytes, the checks a reply
//! must pass, and the clock offset θ and round-trip delay δ of one exchange. Pure: the sockets are the node's
//! (`init/src/time/sntp.rs`).
//!
//! Timestamps are NTP's 64-bit fixed point (seconds since 1900 in the high 32 bits, the fraction in the low 32),
//! which wraps every 2^32 s: era 1 begins 2036-02-07T06:28:16Z. All arithmetic between timestamps is a wrapping
//! difference read as a signed 64-bit number, which stays right across an era boundary as long as the clocks
//! involved are within 68 years of each other (RFC 4330 §3, RFC 5905 §6).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const PORT: u16 = 123;
pub const PACKET_LEN: usize = 48;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const UNIX_TO_NTP: i128 = 2_208_988_800;
const NANOS: i128 = 1_000_000_000;
/// A reply whose root distance (root delay / 2 + root dispersion) is beyond this is not worth using.
const MAX_ROOT_DISTANCE: Duration = Duration::from_secs(16);

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

/// Why a reply is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
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
    pub fn decode(buf: &[u8]) -> Result<Packet, ReplyError> {
        let b: &[u8; PACKET_LEN] =
            buf.get(..PACKET_LEN).and_then(|h| h.try_into().ok()).ok_or(ReplyError::Short(buf.len()))?;
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
pub fn check_reply(reply: &Packet, sent: NtpTimestamp) -> Result<(), ReplyError> {
    if reply.mode != 4 {
        return Err(ReplyError::Mode(reply.mode));
    }
    if !(3..=4).contains(&reply.version) {
        return Err(ReplyError::Version(reply.version));
    }
    if reply.originate != sent {
        return Err(ReplyError::Originate);
    }
    if reply.stratum == 0 {
        return Err(ReplyError::Kiss(reply.kiss_code()));
    }
    if reply.leap == 3 {
        return Err(ReplyError::Unsynchronised);
    }
    if reply.stratum > 15 {
        return Err(ReplyError::Stratum(reply.stratum));
    }
    if reply.transmit.is_zero() || reply.receive.is_zero() {
        return Err(ReplyError::ZeroTimestamp);
    }
    let root_ms = ((u64::from(reply.root_delay) / 2 + u64::from(reply.root_dispersion)) * 1000) >> 16;
    if root_ms > MAX_ROOT_DISTANCE.as_millis() as u64 {
        return Err(ReplyError::RootDistance(root_ms));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
