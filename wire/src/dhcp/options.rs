//! The contents of the options we read, from raw option bytes to typed values. Every parser returns an
//! [`OptionError`] on malformed data and never panics.
//!
//! - Addresses and address lists (1, 3, 6, 28, 42, 50, 54), times (51, 58, 59), the MTU (26).
//! - Text (12, 15): printable ASCII without spaces, trailing NULs (which some servers send) dropped.
//! - Domain search (119, RFC 3397): RFC 1035 names, compression pointers counted from the start of the option's
//!   (concatenated) data. Pointers may only point backwards and a name is at most 255 bytes, so no input loops.
//! - Classless static routes (121, RFC 3442): width, the significant octets of the destination, the router.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("length {len}, expected {expected}")]
    BadLength { len: usize, expected: &'static str },
    #[error("text is not printable ASCII")]
    BadText,
    #[error("domain name truncated at offset {at}")]
    NameTruncated { at: usize },
    #[error("compression pointer at offset {at} does not point backwards")]
    BadPointer { at: usize },
    #[error("label type {byte:#04x} at offset {at} is not a length or a pointer")]
    BadLabelType { byte: u8, at: usize },
    #[error("domain name longer than 255 bytes")]
    NameTooLong,
    #[error("label holds a byte that is not printable ASCII")]
    BadLabel,
    #[error("route prefix width {width} is over 32")]
    BadPrefixWidth { width: u8 },
    #[error("route truncated at offset {at}")]
    RouteTruncated { at: usize },
}

fn bad_length(len: usize, expected: &'static str) -> OptionError {
    OptionError::BadLength { len, expected }
}

pub fn ipv4(data: &[u8]) -> Result<Ipv4Addr, OptionError> {
    let octets: [u8; 4] = data.try_into().map_err(|_| bad_length(data.len(), "4"))?;
    Ok(Ipv4Addr::from(octets))
}

/// One or more addresses.
pub fn ipv4_list(data: &[u8]) -> Result<Vec<Ipv4Addr>, OptionError> {
    if data.is_empty() || !data.len().is_multiple_of(4) {
        return Err(bad_length(data.len(), "a non-zero multiple of 4"));
    }
    Ok(data.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect())
}

pub fn u32_be(data: &[u8]) -> Result<u32, OptionError> {
    let bytes: [u8; 4] = data.try_into().map_err(|_| bad_length(data.len(), "4"))?;
    Ok(u32::from_be_bytes(bytes))
}

pub fn u16_be(data: &[u8]) -> Result<u16, OptionError> {
    let bytes: [u8; 2] = data.try_into().map_err(|_| bad_length(data.len(), "2"))?;
    Ok(u16::from_be_bytes(bytes))
}

/// A host or domain name as text: printable ASCII, no spaces (it ends up in log lines and `sethostname`).
pub fn text(data: &[u8]) -> Result<String, OptionError> {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let data = &data[..end];
    if data.is_empty() {
        return Err(bad_length(0, "at least 1 character"));
    }
    if !data.iter().all(u8::is_ascii_graphic) {
        return Err(OptionError::BadText);
    }
    Ok(data.iter().map(|&b| char::from(b)).collect())
}

const MAX_NAME_LEN: usize = 255;

/// Option 119: a list of RFC 1035 names, possibly compressed. The root name is skipped (it searches nothing).
pub fn domain_search(data: &[u8]) -> Result<Vec<String>, OptionError> {
    let mut names = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let (name, next) = read_name(data, at)?;
        if !name.is_empty() {
            names.push(name);
        }
        at = next;
    }
    Ok(names)
}

/// Reads the name starting at `start`; returns it and the offset just after it (after its first pointer, if any).
fn read_name(data: &[u8], start: usize) -> Result<(String, usize), OptionError> {
    let mut name = String::new();
    // Wire length so far: each label's length byte and bytes, plus the final zero byte.
    let mut wire_len = 1;
    let mut at = start;
    let mut resume = None;
    loop {
        let len = *data.get(at).ok_or(OptionError::NameTruncated { at })?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, resume.unwrap_or(at + 1)));
            }
            0x00 => {
                let len = len as usize;
                let label = data.get(at + 1..at + 1 + len).ok_or(OptionError::NameTruncated { at })?;
                wire_len += 1 + len;
                if wire_len > MAX_NAME_LEN {
                    return Err(OptionError::NameTooLong);
                }
                if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
                    return Err(OptionError::BadLabel);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|&b| char::from(b)));
                at += 1 + len;
            }
            0xc0 => {
                let low = *data.get(at + 1).ok_or(OptionError::NameTruncated { at })?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                // Backwards only: chains of pointers strictly decrease, and labels grow the name toward its limit.
                if target >= at {
                    return Err(OptionError::BadPointer { at });
                }
                resume.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(OptionError::BadLabelType { byte: len, at }),
        }
    }
}

/// A route from option 121: destination, prefix length, router (`0.0.0.0` means on-link).
pub type Route = (Ipv4Addr, u8, Ipv4Addr);

/// Option 121 (RFC 3442): `width, ceil(width/8) destination octets, router` repeated. Host bits of the
/// destination beyond the width are cleared (the kernel refuses routes that have them).
pub fn classless_routes(data: &[u8]) -> Result<Vec<Route>, OptionError> {
    let mut routes = Vec::new();
    let mut at = 0;
    while let Some(&width) = data.get(at) {
        if width > 32 {
            return Err(OptionError::BadPrefixWidth { width });
        }
        let significant = usize::from(width).div_ceil(8);
        let dest = data.get(at + 1..at + 1 + significant).ok_or(OptionError::RouteTruncated { at })?;
        let router = data.get(at + 1 + significant..at + 5 + significant).ok_or(OptionError::RouteTruncated { at })?;
        let mut octets = [0u8; 4];
        octets[..significant].copy_from_slice(dest);
        let mask = u32::MAX.checked_shl(32 - u32::from(width)).unwrap_or(0);
        let dest = Ipv4Addr::from(u32::from_be_bytes(octets) & mask);
        routes.push((dest, width, Ipv4Addr::new(router[0], router[1], router[2], router[3])));
        at += 5 + significant;
    }
    Ok(routes)
}

/// The prefix length of a contiguous netmask, or `None` for a non-contiguous one.
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (u32::MAX.checked_shl(32 - len).unwrap_or(0) == bits).then_some(len as u8)
}

/// Encoders for what a server sends, for tests that build replies.
/// Encoders of the option contents the parsers read: for test servers and the tests (the client never sends these).
pub mod encode {
    use super::Route;

    /// Option 119 without compression.
    pub fn domain_search(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for name in names {
            for label in name.split('.').filter(|l| !l.is_empty()) {
                out.push(label.len() as u8);
                out.extend_from_slice(label.as_bytes());
            }
            out.push(0);
        }
        out
    }

    pub fn classless_routes(routes: &[Route]) -> Vec<u8> {
        let mut out = Vec::new();
        for (dest, width, router) in routes {
            out.push(*width);
            out.extend_from_slice(&dest.octets()[..usize::from(*width).div_ceil(8)]);
            out.extend_from_slice(&router.octets());
        }
        out
    }
}
