//! The wire format: messages built byte by byte as a server sends them, round trips, and malformed input.

use super::codec::{code, DecodeError, Message, MessageType, BOOTREPLY, BOOTREQUEST};
use super::lease::{Lease, LeaseError};
use super::machine::{self, Config, Context};
use std::net::Ipv4Addr;
use std::time::Duration;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A DHCPACK as dnsmasq sends it, written out byte by byte.
fn captured_ack() -> Vec<u8> {
    let mut p = vec![
        0x02, 0x01, 0x06, 0x00, // op BOOTREPLY, htype Ethernet, hlen 6, hops 0
        0xde, 0xad, 0xbe, 0xef, // xid
        0x00, 0x00, 0x00, 0x00, // secs, flags
        0, 0, 0, 0, // ciaddr
        10, 99, 0, 55, // yiaddr
        10, 99, 0, 1, // siaddr
        0, 0, 0, 0, // giaddr
    ];
    p.extend_from_slice(&MAC);
    p.resize(236, 0); // rest of chaddr, sname, file
    p.extend_from_slice(&[99, 130, 83, 99]);
    #[rustfmt::skip]
    p.extend_from_slice(&[
        53, 1, 5,                           // DHCPACK
        54, 4, 10, 99, 0, 1,                // server id
        51, 4, 0x00, 0x00, 0x00, 0x78,      // lease 120 s
        58, 4, 0x00, 0x00, 0x00, 0x0a,      // T1 10 s
        59, 4, 0x00, 0x00, 0x00, 0x0f,      // T2 15 s
        1, 4, 255, 255, 255, 0,             // mask
        28, 4, 10, 99, 0, 255,              // broadcast
        3, 4, 10, 99, 0, 1,                 // router
        6, 8, 10, 99, 0, 1, 1, 1, 1, 1,     // DNS, two servers
        15, 4, b'k', b'e', b'e', b'l',      // domain "keel"
        12, 5, b'n', b'o', b'd', b'e', 0,   // host name "node", with a NUL some servers add
        26, 2, 0x05, 0xdc,                  // MTU 1500
        42, 4, 10, 99, 0, 123,              // NTP
        121, 13, 24, 192, 168, 50, 10, 99, 0, 1, 0, 10, 99, 0, 1, // 192.168.50.0/24 and default, via 10.99.0.1
        // option 119, split in two (RFC 3396): "eng.keel.test", then "ops" pointing back at "keel.test" (offset 4)
        119, 10, 3, b'e', b'n', b'g', 4, b'k', b'e', b'e', b'l', 4,
        119, 11, b't', b'e', b's', b't', 0, 3, b'o', b'p', b's', 0xc0, 4,
        255,
    ]);
    p.resize(p.len() + 7, 0); // padding after END
    p
}

#[test]
fn decodes_a_captured_ack() {
    let m = Message::decode(&captured_ack()).expect("decodes");
    assert_eq!((m.op, m.htype, m.hlen, m.xid), (BOOTREPLY, 1, 6, 0xdead_beef));
    assert_eq!(m.yiaddr, Ipv4Addr::new(10, 99, 0, 55));
    assert_eq!(m.siaddr, Ipv4Addr::new(10, 99, 0, 1));
    assert!(m.is_for(&MAC));
    assert!(!m.is_for(&[0; 6]));
    assert_eq!(m.message_type(), Some(MessageType::Ack));

    let lease = Lease::from_ack(&m).expect("a lease");
    assert_eq!(lease.address, Ipv4Addr::new(10, 99, 0, 55));
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.routers, vec![Ipv4Addr::new(10, 99, 0, 1)]);
    assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(1, 1, 1, 1)]);
    assert_eq!(lease.search, vec!["eng.keel.test".to_string(), "ops.keel.test".to_string()]);
    assert_eq!(lease.domain.as_deref(), Some("keel"));
    assert_eq!(lease.hostname.as_deref(), Some("node"));
    assert_eq!(lease.mtu, Some(1500));
    assert_eq!(lease.ntp, vec![Ipv4Addr::new(10, 99, 0, 123)]);
    let gw = Ipv4Addr::new(10, 99, 0, 1);
    let routes = vec![(Ipv4Addr::new(192, 168, 50, 0), 24, gw), (Ipv4Addr::UNSPECIFIED, 0, gw)];
    assert_eq!(lease.routes, routes);
    assert_eq!(lease.server, gw);
    assert_eq!((lease.lease, lease.t1, lease.t2), (secs(120), secs(10), secs(15)));
    // RFC 3442: with option 121 present, option 3 is not routed with.
    assert_eq!(lease.effective_routes(), routes);
    assert_eq!(lease.default_gateway(), Some(gw));
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn routers_route_only_without_option_121() {
    let mut m = Message::decode(&captured_ack()).expect("decodes");
    m.options.set(code::CLASSLESS_ROUTES, vec![24, 192, 168, 50, 10, 99, 0, 2]);
    let lease = Lease::from_ack(&m).expect("a lease");
    // Option 121 without a default route: no default route at all, even though option 3 names a router.
    assert_eq!(lease.effective_routes(), vec![(Ipv4Addr::new(192, 168, 50, 0), 24, Ipv4Addr::new(10, 99, 0, 2))]);
    assert_eq!(lease.default_gateway(), None);

    let mut m = Message::decode(&captured_ack()).expect("decodes");
    m.options.set(code::CLASSLESS_ROUTES, Vec::new()); // present but empty: nothing to route with
    m.options.set(code::SUBNET_MASK, vec![255, 255, 0, 0]);
    let mut no_121 = m.clone();
    no_121.options = super::codec::Options::default();
    for (c, v) in m.options.iter().filter(|(c, _)| *c != code::CLASSLESS_ROUTES) {
        no_121.options.set(c, v.to_vec());
    }
    let lease = Lease::from_ack(&no_121).expect("a lease");
    assert_eq!(lease.prefix_len, 16);
    assert_eq!(lease.effective_routes(), vec![(Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(10, 99, 0, 1))]);
}

#[test]
fn refuses_acks_without_what_a_lease_needs() {
    let base = Message::decode(&captured_ack()).expect("decodes");
    let without = |c: u8| {
        let mut m = base.clone();
        m.options = super::codec::Options::default();
        for (code, v) in base.options.iter().filter(|(code, _)| *code != c) {
            m.options.set(code, v.to_vec());
        }
        Lease::from_ack(&m)
    };
    assert_eq!(without(code::SERVER_ID), Err(LeaseError::NoServerId));
    assert_eq!(without(code::LEASE_TIME), Err(LeaseError::NoLeaseTime));
    // No subnet mask: the classful prefix of 10/8.
    assert_eq!(without(code::SUBNET_MASK).map(|l| l.prefix_len), Ok(8));

    let with = |c: u8, v: &[u8]| {
        let mut m = base.clone();
        m.options.set(c, v.to_vec());
        Lease::from_ack(&m)
    };
    assert_eq!(with(code::LEASE_TIME, &[0, 0, 0, 0]), Err(LeaseError::ZeroLeaseTime));
    assert!(matches!(with(code::LEASE_TIME, &[0, 0, 1]), Err(LeaseError::BadOption { code: 51, .. })));
    assert!(matches!(with(code::SUBNET_MASK, &[255, 0, 255, 0]), Err(LeaseError::BadSubnetMask { .. })));
    assert!(matches!(with(code::SERVER_ID, &[10, 99]), Err(LeaseError::BadOption { code: 54, .. })));
    let mut zero = base.clone();
    zero.yiaddr = Ipv4Addr::UNSPECIFIED;
    assert_eq!(Lease::from_ack(&zero), Err(LeaseError::NoAddress));

    // A malformed optional option is dropped; the lease stands.
    let lease = with(code::DNS, &[10, 99, 0]).expect("still a lease");
    assert!(lease.dns.is_empty());
    assert_eq!(with(code::MTU, &[0, 40]).expect("lease").mtu, None, "MTU below 68");
    assert_eq!(with(code::HOSTNAME, b"two words").expect("lease").hostname, None);
    assert!(with(code::DOMAIN_SEARCH, &[3, b'a']).expect("lease").search.is_empty());
    assert!(with(code::CLASSLESS_ROUTES, &[33, 0, 0, 0, 0, 0]).expect("lease").routes.is_empty());
    // Bad T1/T2 fall back to the defaults.
    let lease = with(code::RENEWAL_TIME, &[0, 0, 1, 0]).expect("lease");
    assert_eq!((lease.t1, lease.t2), (secs(15) * 4 / 7, secs(15)), "T1 past T2: below T2 in the default ratio");
}

/// What the machine sends, byte by byte.
#[test]
fn encodes_a_discover() {
    let config = Config { mac: MAC, hostname: Some("keel-1".into()) };
    let ctx = Context { config: &config, now: Duration::ZERO, random: 0x1234_5678 };
    let (_, actions) = machine::start(&ctx);
    let Some(machine::Action::Send { message, .. }) = actions.first() else { panic!("sends first: {actions:?}") };
    let bytes = message.encode();
    assert_eq!(bytes.len(), 300, "padded to the BOOTP minimum");
    assert_eq!(&bytes[..12], &[1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]);
    assert_eq!(&bytes[12..28], &[0; 16], "no addresses");
    assert_eq!(&bytes[28..34], &MAC);
    assert!(bytes[34..236].iter().all(|b| *b == 0));
    assert_eq!(&bytes[236..240], &[99, 130, 83, 99]);
    #[rustfmt::skip]
    let options: &[u8] = &[
        53, 1, 1,
        61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
        57, 2, 0x05, 0xdc,
        55, 14, 1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121,
        12, 6, b'k', b'e', b'e', b'l', b'-', b'1',
        255,
    ];
    assert_eq!(&bytes[240..240 + options.len()], options);
    assert!(bytes[240 + options.len()..].iter().all(|b| *b == 0), "padded with PAD");
}

#[test]
fn round_trips_every_option() {
    let mut m = Message::request(0x0102_0304, MAC);
    m.op = BOOTREQUEST;
    m.secs = 7;
    m.flags = super::codec::FLAG_BROADCAST;
    m.ciaddr = Ipv4Addr::new(10, 0, 0, 9);
    m.giaddr = Ipv4Addr::new(10, 0, 0, 254);
    m.hops = 1;
    let values: Vec<(u8, Vec<u8>)> = vec![
        (code::MESSAGE_TYPE, vec![3]),
        (code::CLIENT_ID, vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        (code::REQUESTED_IP, vec![10, 0, 0, 9]),
        (code::SERVER_ID, vec![10, 0, 0, 1]),
        (code::PARAMETER_REQUEST, machine::PARAMETERS.to_vec()),
        (code::MAX_MESSAGE_SIZE, vec![5, 220]),
        (code::HOSTNAME, b"node".to_vec()),
        (code::SUBNET_MASK, vec![255, 255, 255, 0]),
        (code::ROUTERS, vec![10, 0, 0, 1, 10, 0, 0, 2]),
        (code::DNS, vec![9, 9, 9, 9]),
        (code::DOMAIN_NAME, b"example.org".to_vec()),
        (code::MTU, vec![5, 220]),
        (code::NTP, vec![10, 0, 0, 123]),
        (code::LEASE_TIME, vec![0, 1, 81, 128]),
        (code::RENEWAL_TIME, vec![0, 0, 168, 192]),
        (code::REBINDING_TIME, vec![0, 1, 39, 80]),
        (code::DOMAIN_SEARCH, super::options::encode::domain_search(&["a.example", "b.example"])),
        (code::CLASSLESS_ROUTES, vec![0, 10, 0, 0, 1]),
        (code::MESSAGE, Vec::new()),
        // Longer than 255: sent as several options, joined again on decode (RFC 3396).
        (224, (0..=255u8).cycle().take(600).collect()),
    ];
    for (c, v) in &values {
        m.options.set(*c, v.clone());
    }
    let bytes = m.encode();
    assert!(bytes.len() > 600);
    let back = Message::decode(&bytes).expect("decodes");
    assert_eq!(back, m);
    assert_eq!(back.options.len(), values.len());
    assert_eq!(back.options.get(224).map(<[u8]>::len), Some(600));
}

#[test]
fn overload_and_pad_are_skipped() {
    let mut bytes = captured_ack();
    let end = bytes.iter().rposition(|b| *b == 255).expect("END");
    bytes.splice(end..end, [0, 0, 52, 1, 3, 0]); // PADs, overload "both", PAD
    let m = Message::decode(&bytes).expect("decodes");
    assert_eq!(m.options.get(code::OVERLOAD), None);
    assert!(Lease::from_ack(&m).is_ok());
    // No END at all: the options simply run to the end of the message.
    let cut = &bytes[..end + 6];
    assert_eq!(Message::decode(cut).expect("decodes").options, m.options);
}

#[test]
fn malformed_messages_are_errors() {
    let good = captured_ack();
    for len in 0..236 {
        assert_eq!(Message::decode(&good[..len]), Err(DecodeError::Truncated { len }));
    }
    for len in 236..240 {
        assert_eq!(Message::decode(&good[..len]), Err(DecodeError::NoMagicCookie));
    }
    let mut bad = good.clone();
    bad[236] = 98;
    assert_eq!(Message::decode(&bad), Err(DecodeError::NoMagicCookie));
    let mut bad = good.clone();
    bad[2] = 17;
    assert_eq!(Message::decode(&bad), Err(DecodeError::BadHlen { hlen: 17 }));
    // An option whose length runs past the end, and one cut after its code.
    let mut bad = good[..240].to_vec();
    bad.extend_from_slice(&[53, 1, 5, 6, 8, 10, 0, 0]);
    assert_eq!(Message::decode(&bad), Err(DecodeError::OptionOverrun { code: 6, at: 3 }));
    let mut bad = good[..240].to_vec();
    bad.push(54);
    assert_eq!(Message::decode(&bad), Err(DecodeError::OptionOverrun { code: 54, at: 0 }));
    // Every cut of a good message after its header fails or decodes, never panics.
    for len in 240..good.len() {
        if let Ok(m) = Message::decode(&good[..len]) {
            let _ = Lease::from_ack(&m);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let good = captured_ack();
    let mut decoded = 0;
    for round in 0..6000 {
        let buf: Vec<u8> = match round % 3 {
            // Noise.
            0 => (0..next() % 400).map(|_| next() as u8).collect(),
            // Noise behind a valid header and cookie: the option walker sees it.
            1 => good[..240].iter().copied().chain((0..next() % 300).map(|_| next() as u8)).collect(),
            // A real ACK with a few bytes of its options changed: the option parsers and the lease see it.
            _ => {
                let mut b = good.clone();
                for _ in 0..1 + next() % 4 {
                    let at = 240 + (next() as usize) % (b.len() - 240);
                    b[at] = next() as u8;
                }
                b
            }
        };
        if let Ok(m) = Message::decode(&buf) {
            decoded += 1;
            let _ = Lease::from_ack(&m);
            let _ = m.encode();
        }
    }
    assert!(decoded > 500, "the noise reached the option parsers ({decoded} decoded)");
}
