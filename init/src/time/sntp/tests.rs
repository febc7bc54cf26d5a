//! Server addresses and the choice among replies; the wire format's tests are in keel-wire.

use super::*;

#[test]
fn parses_server_addresses_and_names() {
    let addr = |s: &str| Target::Addr(s.parse().unwrap());
    let name = |h: &str, port| Target::Name { host: h.to_string(), port };
    assert_eq!(parse_server("192.0.2.1").unwrap(), addr("192.0.2.1:123"));
    assert_eq!(parse_server(" 192.0.2.1:1123 ").unwrap(), addr("192.0.2.1:1123"));
    assert_eq!(parse_server("2001:db8::1").unwrap(), addr("[2001:db8::1]:123"));
    assert_eq!(parse_server("[2001:db8::1]").unwrap(), addr("[2001:db8::1]:123"));
    assert_eq!(parse_server("[2001:db8::1]:4123").unwrap(), addr("[2001:db8::1]:4123"));
    assert_eq!(parse_server("pool.ntp.org").unwrap(), name("pool.ntp.org", 123));
    assert_eq!(parse_server("time-1.example.:10123").unwrap(), name("time-1.example.", 10123));
    for bad in ["", "  ", "host:", "host:0", "host:99999", "a b", "a..b", "-:-", "[::1", "ntp.example/x"] {
        assert!(matches!(parse_server(bad), Err(SntpError::BadServer(_))), "{bad:?} was accepted");
    }
}

#[test]
fn best_reply_has_the_lowest_delay() {
    let m = |server: &str, delay_ns| Measurement {
        server: server.to_string(),
        addr: "192.0.2.1:123".parse().unwrap(),
        stratum: 2,
        offset_ns: 0,
        delay_ns,
    };
    let results = vec![
        ("a".to_string(), Ok(m("a", 30_000_000))),
        ("b".to_string(), Err(SntpError::Timeout(2000))),
        ("c".to_string(), Ok(m("c", 5_000_000))),
        ("d".to_string(), Ok(m("d", 9_000_000))),
    ];
    assert_eq!(best(&results).map(|m| m.server.as_str()), Some("c"));
    assert!(best(&results[1..2]).is_none());
}
