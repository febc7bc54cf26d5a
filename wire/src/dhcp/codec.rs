//! BOOTP/DHCP messages on the wire (RFC 2131 §2, RFC 2132): the fixed 236-byte header, the magic cookie, then
//! options as code/length/value.
//!
//! Decoding never panics: every malformed input is a [`DecodeError`]. Options that appear more than once are
//! concatenated in order (RFC 3396 long options); when encoding, a value longer than 255 bytes is split the same
//! way. Option 52 (overload: more options in `sname`/`file`) is ignored, as are `sname` and `file` themselves: we
//! send them zeroed and never read them.

use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// `htype` for Ethernet (and every link Linux gives a 6-byte MAC).
pub const HTYPE_ETHERNET: u8 = 1;
/// The `flags` bit asking servers to broadcast their reply (never set: the packet socket receives unicast).
/// The BOOTP broadcast flag (we never set it; servers and tests do).
pub const FLAG_BROADCAST: u16 = 0x8000;

const HEADER_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message size; some relays drop anything shorter, so requests are padded to it.
const MIN_MESSAGE_LEN: usize = 300;

/// Option codes (RFC 2132 and later).
pub mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTERS: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const MTU: u8 = 26;
    pub const NTP: u8 = 42;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// Option 53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "discover",
            MessageType::Offer => "offer",
            MessageType::Request => "request",
            MessageType::Decline => "decline",
            MessageType::Ack => "ack",
            MessageType::Nak => "nak",
            MessageType::Release => "release",
            MessageType::Inform => "inform",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message too short: {len} bytes, a BOOTP header needs {HEADER_LEN}")]
    Truncated { len: usize },
    #[error("hardware address length {hlen} is over 16")]
    BadHlen { hlen: u8 },
    #[error("no DHCP magic cookie")]
    NoMagicCookie,
    #[error("option {code} at offset {at} runs past the end of the message")]
    OptionOverrun { code: u8, at: usize },
}

/// The options of a message, in order of first appearance, one entry per code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(u8, Vec<u8>)>,
}

impl Options {
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    /// Sets an option, replacing any earlier value for the same code.
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        match self.entries.iter_mut().find(|(c, _)| *c == code) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((code, value)),
        }
    }

    /// Appends to an option's value (how repeated options combine, RFC 3396).
    fn append(&mut self, code: u8, value: &[u8]) {
        match self.entries.iter_mut().find(|(c, _)| *c == code) {
            Some(entry) => entry.1.extend_from_slice(value),
            None => self.entries.push((code, value.to_vec())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    /// How many distinct option codes the message carries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One BOOTP/DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    pub options: Options,
}

impl Message {
    /// A BOOTREQUEST from an Ethernet client, with no options yet.
    pub fn request(xid: u32, mac: [u8; 6]) -> Message {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        Message {
            op: BOOTREQUEST,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: Options::default(),
        }
    }

    /// Option 53, when present and known.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.options.get(code::MESSAGE_TYPE) {
            Some([t]) => MessageType::from_u8(*t),
            _ => None,
        }
    }

    /// Is this message addressed to the Ethernet client with this MAC?
    pub fn is_for(&self, mac: &[u8; 6]) -> bool {
        self.htype == HTYPE_ETHERNET && self.hlen == 6 && self.chaddr[..6] == mac[..]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_MESSAGE_LEN);
        out.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for addr in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&addr.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.resize(HEADER_LEN, 0); // sname (64) and file (128), unused
        out.extend_from_slice(&MAGIC_COOKIE);
        for (code, value) in self.options.iter() {
            if code == code::PAD || code == code::END {
                continue;
            }
            if value.is_empty() {
                out.extend_from_slice(&[code, 0]);
            }
            for chunk in value.chunks(255) {
                out.push(code);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(code::END);
        if out.len() < MIN_MESSAGE_LEN {
            out.resize(MIN_MESSAGE_LEN, code::PAD);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let header = bytes.get(..HEADER_LEN).ok_or(DecodeError::Truncated { len: bytes.len() })?;
        let hlen = header[2];
        if hlen > 16 {
            return Err(DecodeError::BadHlen { hlen });
        }
        let u32_at = |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&header[28..44]);
        if bytes.get(HEADER_LEN..HEADER_LEN + 4) != Some(&MAGIC_COOKIE[..]) {
            return Err(DecodeError::NoMagicCookie);
        }
        Ok(Message {
            op: header[0],
            htype: header[1],
            hlen,
            hops: header[3],
            xid: u32_at(4),
            secs: u16::from_be_bytes([header[8], header[9]]),
            flags: u16::from_be_bytes([header[10], header[11]]),
            ciaddr: Ipv4Addr::from(u32_at(12)),
            yiaddr: Ipv4Addr::from(u32_at(16)),
            siaddr: Ipv4Addr::from(u32_at(20)),
            giaddr: Ipv4Addr::from(u32_at(24)),
            chaddr,
            options: decode_options(&bytes[HEADER_LEN + 4..])?,
        })
    }
}

/// The options field: code/length/value until END or the end of the data (a missing END is tolerated, as most
/// clients do); PAD bytes are skipped.
fn decode_options(data: &[u8]) -> Result<Options, DecodeError> {
    let mut options = Options::default();
    let mut at = 0;
    while let Some(&code) = data.get(at) {
        match code {
            code::PAD => at += 1,
            code::END => break,
            _ => {
                let len = *data.get(at + 1).ok_or(DecodeError::OptionOverrun { code, at })? as usize;
                let value = data.get(at + 2..at + 2 + len).ok_or(DecodeError::OptionOverrun { code, at })?;
                if code != code::OVERLOAD {
                    options.append(code, value);
                }
                at += 2 + len;
            }
        }
    }
    Ok(options)
}
