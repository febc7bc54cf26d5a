//! IPv4 and UDP headers for the packet socket, which carries whole IP packets: before the interface has an
//! address, the kernel's UDP stack can neither send from 0.0.0.0 to the link nor hand us replies to an address
//! it does not have.
//!
//! [`parse_udp`] checks what a packet socket may hand us: IPv4, a valid header checksum, not a fragment, UDP to
//! the port we want, lengths that fit, and the UDP checksum when it is set and the kernel says it is complete.

use std::net::Ipv4Addr;

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const PROTO_UDP: u8 = 17;
const TTL: u8 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{len} bytes is too short for {what}")]
    Truncated { what: &'static str, len: usize },
    #[error("not IPv4 (version {version})")]
    NotIpv4 { version: u8 },
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    #[error("IPv4 fragment")]
    Fragment,
    #[error("not UDP (protocol {protocol})")]
    NotUdp { protocol: u8 },
    #[error("UDP to port {port}")]
    WrongPort { port: u16 },
    #[error("bad UDP checksum")]
    BadUdpChecksum,
}

/// A UDP datagram from a packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub payload: &'a [u8],
}

/// The Internet checksum (RFC 1071) of the concatenated parts, folded and complemented.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut carry: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match carry.take() {
                Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                None => carry = Some(byte),
            }
        }
    }
    if let Some(high) = carry {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO_UDP;
    p[10..].copy_from_slice(&udp_len.to_be_bytes());
    p
}

/// An IPv4 packet (don't-fragment set) holding one UDP datagram, both checksums filled in. `None` only when the
/// payload could not fit in one IPv4 packet.
pub fn build_udp(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len()).ok()?;
    let total_len = u16::try_from(IPV4_HEADER_LEN + usize::from(udp_len)).ok()?;
    let mut packet = Vec::with_capacity(usize::from(total_len));
    packet.extend_from_slice(&[0x45, 0]); // version 4, 5-word header; TOS 0
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, DF, offset 0
    packet.extend_from_slice(&[TTL, PROTO_UDP, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let ip_sum = checksum(&[&packet]);
    packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // A computed 0 is sent as 0xffff: 0 means "no checksum" (RFC 768).
    let udp_sum = match checksum(&[&pseudo_header(src, dst, udp_len), &udp]) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    packet.extend_from_slice(&udp);
    Some(packet)
}

/// The UDP datagram to `port` in this IPv4 packet. `udp_checksum_ready` is false when the kernel says the
/// checksum was left for hardware that never filled it in (a packet from this host, e.g. over a veth).
pub fn parse_udp(packet: &[u8], port: u16, udp_checksum_ready: bool) -> Result<Udp<'_>, PacketError> {
    let truncated = |what| PacketError::Truncated { what, len: packet.len() };
    let first = *packet.first().ok_or(truncated("an IPv4 header"))?;
    if first >> 4 != 4 {
        return Err(PacketError::NotIpv4 { version: first >> 4 });
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(truncated("an IPv4 header"));
    }
    let header = packet.get(..header_len).ok_or(truncated("an IPv4 header"))?;
    if checksum(&[header]) != 0 {
        return Err(PacketError::BadIpChecksum);
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    // Link-layer padding may follow the packet; a packet longer than what arrived is cut short.
    let packet = packet.get(..total_len).filter(|_| total_len >= header_len).ok_or(truncated("its total length"))?;
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return Err(PacketError::Fragment); // more-fragments set, or a non-zero offset
    }
    if header[9] != PROTO_UDP {
        return Err(PacketError::NotUdp { protocol: header[9] });
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let udp = &packet[header_len..];
    let udp_header = udp.get(..UDP_HEADER_LEN).ok_or(truncated("a UDP header"))?;
    let dst_port = u16::from_be_bytes([udp_header[2], udp_header[3]]);
    if dst_port != port {
        return Err(PacketError::WrongPort { port: dst_port });
    }
    let udp_len = u16::from_be_bytes([udp_header[4], udp_header[5]]);
    let datagram = udp
        .get(..usize::from(udp_len))
        .filter(|_| usize::from(udp_len) >= UDP_HEADER_LEN)
        .ok_or(truncated("its UDP length"))?;
    let sent_sum = u16::from_be_bytes([udp_header[6], udp_header[7]]);
    if sent_sum != 0 && udp_checksum_ready && checksum(&[&pseudo_header(src, dst, udp_len), datagram]) != 0 {
        return Err(PacketError::BadUdpChecksum);
    }
    Ok(Udp {
        src,
        dst,
        src_port: u16::from_be_bytes([udp_header[0], udp_header[1]]),
        payload: &datagram[UDP_HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::BROADCAST;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, so the checksum is its complement.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
        // Odd lengths pad with a zero byte, also across parts.
        assert_eq!(checksum(&[&[0x01], &[0x02, 0x03]]), checksum(&[&[0x01, 0x02, 0x03, 0x00]]));
    }

    #[test]
    fn builds_and_parses_a_datagram() {
        let payload = b"hello dhcp".to_vec();
        let packet = build_udp(SRC, DST, 67, 68, &payload).expect("fits");
        assert_eq!(packet.len(), 20 + 8 + payload.len());
        assert_eq!(checksum(&[&packet[..20]]), 0, "header checksum verifies");
        let udp = parse_udp(&packet, 68, true).expect("parses");
        assert_eq!(udp, Udp { src: SRC, dst: DST, src_port: 67, payload: &payload });
        // Ethernet padding after the packet is ignored.
        let mut padded = packet.clone();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(parse_udp(&padded, 68, true).expect("parses").payload, &payload[..]);
    }

    #[test]
    fn refuses_what_is_not_ours() {
        let packet = build_udp(SRC, DST, 67, 68, b"x").expect("fits");
        assert_eq!(parse_udp(&packet, 67, true), Err(PacketError::WrongPort { port: 68 }));

        let mut bad_ip = packet.clone();
        bad_ip[8] = 1; // TTL changed, header checksum not updated
        assert_eq!(parse_udp(&bad_ip, 68, true), Err(PacketError::BadIpChecksum));

        let mut bad_udp = packet.clone();
        *bad_udp.last_mut().expect("non-empty") ^= 0xff;
        assert_eq!(parse_udp(&bad_udp, 68, true), Err(PacketError::BadUdpChecksum));
        // A checksum the kernel left for offload is not checked.
        assert!(parse_udp(&bad_udp, 68, false).is_ok());
        // Nor is an absent one (0).
        bad_udp[26..28].copy_from_slice(&[0, 0]);
        assert!(parse_udp(&bad_udp, 68, true).is_ok());

        let mut fragment = build_udp(SRC, DST, 67, 68, b"x").expect("fits");
        fragment[6] = 0x20; // more fragments
        let sum = checksum(&[&{
            let mut h = fragment[..20].to_vec();
            h[10..12].copy_from_slice(&[0, 0]);
            h
        }]);
        fragment[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_udp(&fragment, 68, true), Err(PacketError::Fragment));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let packet = build_udp(SRC, DST, 67, 68, &[7u8; 40]).expect("fits");
        for len in 0..packet.len() {
            assert!(parse_udp(&packet[..len], 68, true).is_err(), "truncated to {len}");
        }
        assert!(matches!(parse_udp(&[0x65; 40], 68, true), Err(PacketError::NotIpv4 { version: 6 })));
        assert!(parse_udp(&[0x41; 40], 68, true).is_err(), "header length 4 words");
        // Random bytes: never a panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut buf = vec![0u8; (seed % 80) as usize];
            for b in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            if let Some(b) = buf.first_mut() {
                *b = 0x45;
            }
            let _ = parse_udp(&buf, 68, true);
        }
    }
}
