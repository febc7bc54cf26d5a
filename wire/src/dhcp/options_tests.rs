//! Option contents: RFC 3397 domain search and RFC 3442 classless routes, with their edge cases.

use super::options::{self, encode, OptionError};
use std::net::Ipv4Addr;

fn labels(name: &str) -> Vec<u8> {
    encode::domain_search(&[name])
}

#[test]
fn domain_search_rfc3397_example() {
    // RFC 3397 §3: "eng.apple.com." then "marketing.apple.com." pointing back at "apple.com." (offset 4).
    let mut data = labels("eng.apple.com");
    data.extend_from_slice(&[9]);
    data.extend_from_slice(b"marketing");
    data.extend_from_slice(&[0xc0, 0x04]);
    assert_eq!(options::domain_search(&data), Ok(vec!["eng.apple.com".to_string(), "marketing.apple.com".into()]));
}

#[test]
fn domain_search_plain_and_chained_pointers() {
    let data = encode::domain_search(&["a.example", "b.example.org"]);
    assert_eq!(options::domain_search(&data), Ok(vec!["a.example".to_string(), "b.example.org".into()]));
    // A pointer to a name that itself ends in a pointer.
    let mut data = labels("example.org"); // 0: 7 example 3 org 0  (13 bytes)
    data.extend_from_slice(&[3, b'w', b'w', b'w', 0xc0, 0x00]); // 13: www -> example.org
    data.extend_from_slice(&[3, b'f', b't', b'p', 0xc0, 13]); // 19: ftp -> www.example.org
    data.extend_from_slice(&[0xc0, 19]); // 25: just a pointer
    assert_eq!(
        options::domain_search(&data),
        Ok(vec![
            "example.org".into(),
            "www.example.org".into(),
            "ftp.www.example.org".into(),
            "ftp.www.example.org".into()
        ])
    );
    // The root name is skipped; no data is no names.
    assert_eq!(options::domain_search(&[0, 0]), Ok(vec![]));
    assert_eq!(options::domain_search(&[]), Ok(vec![]));
    // Upper case is kept as sent.
    assert_eq!(options::domain_search(&labels("Example.ORG")), Ok(vec!["Example.ORG".to_string()]));
}

#[test]
fn domain_search_malformed() {
    // A pointer to itself, and one forwards.
    assert_eq!(options::domain_search(&[0xc0, 0x00]), Err(OptionError::BadPointer { at: 0 }));
    let mut fwd = vec![0xc0, 0x02];
    fwd.extend(labels("a"));
    assert_eq!(options::domain_search(&fwd), Err(OptionError::BadPointer { at: 0 }));
    // A loop that only ever points backwards: "a" then a pointer back to "a" forever. The length limit ends it.
    assert_eq!(options::domain_search(&[1, b'a', 0xc0, 0x00]), Err(OptionError::NameTooLong));
    // Truncations: in a label, before the end byte, in a pointer.
    assert_eq!(options::domain_search(&[3, b'a', b'b']), Err(OptionError::NameTruncated { at: 0 }));
    assert_eq!(options::domain_search(&[1, b'a']), Err(OptionError::NameTruncated { at: 2 }));
    assert_eq!(options::domain_search(&[1, b'a', 0, 0xc0]), Err(OptionError::NameTruncated { at: 3 }));
    // The reserved label types 0x40 and 0x80.
    assert_eq!(options::domain_search(&[0x41, b'a', 0]), Err(OptionError::BadLabelType { byte: 0x41, at: 0 }));
    assert_eq!(options::domain_search(&[0x80, 0]), Err(OptionError::BadLabelType { byte: 0x80, at: 0 }));
    // Bytes that do not belong in a name: a dot inside a label, a space, a control character.
    assert_eq!(options::domain_search(&[3, b'a', b'.', b'b', 0]), Err(OptionError::BadLabel));
    assert_eq!(options::domain_search(&[3, b'a', b' ', b'b', 0]), Err(OptionError::BadLabel));
    assert_eq!(options::domain_search(&[1, 0x07, 0]), Err(OptionError::BadLabel));
    // Longer than 255 bytes on the wire: five labels of 63 (plain), or grown through pointers.
    let long: Vec<String> = (0..5).map(|_| "x".repeat(63)).collect();
    assert_eq!(options::domain_search(&labels(&long.join("."))), Err(OptionError::NameTooLong));
    let mut grown = labels(&long[..3].join(".")); // 193 bytes on the wire, fine alone
    assert_eq!(options::domain_search(&grown).map(|n| n.len()), Ok(1));
    grown.push(63);
    grown.extend_from_slice(&[b'y'; 63]);
    grown.extend_from_slice(&[0xc0, 0x00]); // 257 bytes once expanded
    assert_eq!(options::domain_search(&grown), Err(OptionError::NameTooLong));
    // Exactly 255 is allowed: 3 × 63 + 61 and the length bytes and the root.
    let edge = format!("{}.{}", long[..3].join("."), "z".repeat(61));
    assert_eq!(labels(&edge).len(), 255);
    assert_eq!(options::domain_search(&labels(&edge)), Ok(vec![edge]));
}

#[test]
fn classless_routes_rfc3442_encodings() {
    let r = Ipv4Addr::new(10, 0, 0, 1);
    // The examples of RFC 3442 §1: each width takes only its significant octets.
    let cases: &[(&[u8], (Ipv4Addr, u8))] = &[
        (&[0], (Ipv4Addr::new(0, 0, 0, 0), 0)),
        (&[8, 10], (Ipv4Addr::new(10, 0, 0, 0), 8)),
        (&[16, 10, 17], (Ipv4Addr::new(10, 17, 0, 0), 16)),
        (&[24, 10, 27, 129], (Ipv4Addr::new(10, 27, 129, 0), 24)),
        (&[25, 10, 229, 0, 128], (Ipv4Addr::new(10, 229, 0, 128), 25)),
        (&[32, 10, 198, 122, 47], (Ipv4Addr::new(10, 198, 122, 47), 32)),
    ];
    let mut all = Vec::new();
    let mut expected = Vec::new();
    for (bytes, (dest, width)) in cases {
        let mut one = bytes.to_vec();
        one.extend_from_slice(&r.octets());
        assert_eq!(options::classless_routes(&one), Ok(vec![(*dest, *width, r)]), "{bytes:?}");
        all.extend_from_slice(&one);
        expected.push((*dest, *width, r));
    }
    assert_eq!(options::classless_routes(&all), Ok(expected.clone()));
    assert_eq!(encode::classless_routes(&expected), all);
    // An on-link route (router 0.0.0.0), and no routes at all.
    assert_eq!(
        options::classless_routes(&[24, 192, 168, 1, 0, 0, 0, 0]),
        Ok(vec![(Ipv4Addr::new(192, 168, 1, 0), 24, Ipv4Addr::UNSPECIFIED)])
    );
    assert_eq!(options::classless_routes(&[]), Ok(vec![]));
}

#[test]
fn classless_routes_edge_cases() {
    // Host bits beyond the width are cleared: 10.255/9 is 10.128.0.0/9.
    assert_eq!(
        options::classless_routes(&[9, 10, 255, 1, 2, 3, 4]),
        Ok(vec![(Ipv4Addr::new(10, 128, 0, 0), 9, Ipv4Addr::new(1, 2, 3, 4))])
    );
    assert_eq!(
        options::classless_routes(&[33, 1, 2, 3, 4, 5, 1, 2, 3, 4]),
        Err(OptionError::BadPrefixWidth { width: 33 })
    );
    assert_eq!(options::classless_routes(&[255]), Err(OptionError::BadPrefixWidth { width: 255 }));
    // Truncated destination, truncated router, a second route cut short.
    assert_eq!(options::classless_routes(&[24, 10, 0]), Err(OptionError::RouteTruncated { at: 0 }));
    assert_eq!(options::classless_routes(&[8, 10, 1, 2, 3]), Err(OptionError::RouteTruncated { at: 0 }));
    assert_eq!(options::classless_routes(&[0, 1, 2, 3, 4, 8]), Err(OptionError::RouteTruncated { at: 5 }));
}

#[test]
fn scalar_options() {
    assert_eq!(options::ipv4(&[1, 2, 3, 4]), Ok(Ipv4Addr::new(1, 2, 3, 4)));
    assert!(options::ipv4(&[1, 2, 3]).is_err());
    assert!(options::ipv4(&[1, 2, 3, 4, 5]).is_err());
    assert_eq!(options::ipv4_list(&[1, 2, 3, 4, 5, 6, 7, 8]).map(|l| l.len()), Ok(2));
    assert!(options::ipv4_list(&[]).is_err());
    assert!(options::ipv4_list(&[1, 2, 3, 4, 5]).is_err());
    assert_eq!(options::u32_be(&[0, 1, 81, 128]), Ok(86400));
    assert!(options::u32_be(&[0, 1]).is_err());
    assert_eq!(options::u16_be(&[5, 220]), Ok(1500));
    assert!(options::u16_be(&[5]).is_err());

    assert_eq!(options::text(b"node-1\0\0"), Ok("node-1".to_string()));
    assert_eq!(options::text(b"\0"), Err(OptionError::BadLength { len: 0, expected: "at least 1 character" }));
    assert_eq!(options::text(b"a b"), Err(OptionError::BadText));
    assert_eq!(options::text(b"a\nb"), Err(OptionError::BadText));
    assert_eq!(options::text("café".as_bytes()), Err(OptionError::BadText));

    let p = |a, b, c, d| options::prefix_len(Ipv4Addr::new(a, b, c, d));
    assert_eq!(p(255, 255, 255, 0), Some(24));
    assert_eq!(p(255, 255, 255, 255), Some(32));
    assert_eq!(p(0, 0, 0, 0), Some(0));
    assert_eq!(p(255, 255, 128, 0), Some(17));
    assert_eq!(p(255, 0, 255, 0), None);
    assert_eq!(p(0, 0, 0, 255), None);
}
