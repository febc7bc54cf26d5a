//! Pure tests of the SNTP wire format and arithmetic; the loopback exchanges are in the init's `time/tests.rs`.

use super::*;

const S: i128 = 1_000_000_000;
/// 2036-02-07T06:28:16Z, the first second of NTP era 1.
const ERA1_UNIX: i128 = 2_085_978_496;

fn at(unix_nanos: i128) -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(unix_nanos)
}

fn assert_near(actual: i64, expected: i64, slack: i64) {
    assert!((actual - expected).abs() <= slack, "{actual} is not within {slack} of {expected}");
}

#[test]
fn timestamps_from_unix_time() {
    assert_eq!(at(0), NtpTimestamp(2_208_988_800 << 32));
    assert_eq!(at(S / 2).0 & 0xffff_ffff, 1 << 31);
    assert_eq!(at(S / 4).0 & 0xffff_ffff, 1 << 30);
    // The last second of era 0, then era 1 starting again at zero.
    assert_eq!(at((ERA1_UNIX - 1) * S), NtpTimestamp(0xffff_ffff << 32));
    assert_eq!(at(ERA1_UNIX * S), NtpTimestamp(0));
    assert_eq!(at(ERA1_UNIX * S + S / 2), NtpTimestamp(1 << 31));
    // Before 1970 (a clock that has never been set is at 1970, but arithmetic must not care).
    assert_eq!(at(-2_208_988_800 * S), NtpTimestamp(0));
    assert_eq!(NtpTimestamp::from_system_time(UNIX_EPOCH), at(0));
}

#[test]
fn timestamps_resolve_to_the_era_nearest_the_pivot() {
    let now_2024 = 1_704_067_200 * S;
    for unix in [0, 1_704_067_200 * S + 123_456_789, (ERA1_UNIX - 1) * S, ERA1_UNIX * S, (ERA1_UNIX + 86_400) * S] {
        let back = at(unix).to_unix_nanos(now_2024);
        assert!((back - unix).abs() <= 1, "{unix} came back as {back}");
    }
    // Zero is 1900 seen from 1930, and 2036 seen from 2030 or 2100.
    assert_eq!(NtpTimestamp(0).to_unix_nanos(-1_262_304_000 * S), -2_208_988_800 * S);
    assert_eq!(NtpTimestamp(0).to_unix_nanos(1_893_456_000 * S), ERA1_UNIX * S);
    assert_eq!(NtpTimestamp(0).to_unix_nanos(4_102_444_800 * S), ERA1_UNIX * S);
}

#[test]
fn offset_and_delay_worked_example() {
    // We send at 1000.000, the server (0.5 s ahead, 0.1 s away) receives at 1000.600 by its clock and answers
    // at 1000.610; we receive at 1000.210. θ = (0.6 + 0.4) / 2 = 0.5 s; δ = 0.21 − 0.01 = 0.2 s.
    let base = 1_700_000_000 * S;
    let s = offset_delay(at(base), at(base + 600 * S / 1000), at(base + 610 * S / 1000), at(base + 210 * S / 1000));
    assert_near(s.offset_ns, 500_000_000, 2);
    assert_near(s.delay_ns, 200_000_000, 2);
}

#[test]
fn offset_when_the_server_is_behind() {
    // Server 3 s behind, 20 ms each way, 1 ms to answer: θ = −3 s, δ = 40 ms.
    let t1 = 1_700_000_000 * S;
    let t2 = t1 + 20_000_000 - 3 * S;
    let t3 = t2 + 1_000_000;
    let t4 = t1 + 41_000_000;
    let s = offset_delay(at(t1), at(t2), at(t3), at(t4));
    assert_near(s.offset_ns, -3_000_000_000, 2);
    assert_near(s.delay_ns, 40_000_000, 2);
}

#[test]
fn offset_across_the_2036_era_rollover() {
    // We are half a second before the rollover; the server, 1 s ahead, is already in era 1.
    let t1 = ERA1_UNIX * S - S / 2;
    let (t2, t3, t4) = (t1 + S + 100_000_000, t1 + S + 100_000_000, t1 + 200_000_000);
    assert!(at(t2).0 < at(t1).0, "the server's timestamps have wrapped");
    let s = offset_delay(at(t1), at(t2), at(t3), at(t4));
    assert_near(s.offset_ns, 1_000_000_000, 2);
    assert_near(s.delay_ns, 200_000_000, 2);
    // And the other way: our clock has wrapped, the server's has not.
    let s = offset_delay(at(ERA1_UNIX * S + S), at(ERA1_UNIX * S - S), at(ERA1_UNIX * S - S), at(ERA1_UNIX * S + S));
    assert_near(s.offset_ns, -2_000_000_000, 2);
    assert_near(s.delay_ns, 0, 2);
}

#[test]
fn request_encoding() {
    let t = NtpTimestamp(0x0123_4567_89ab_cdef);
    let b = Packet::request(t).encode();
    assert_eq!(b[0], 0x23, "LI 0, VN 4, mode 3");
    assert!(b[1..40].iter().all(|&x| x == 0));
    assert_eq!(b[40..48], [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
}

fn reply_to(sent: NtpTimestamp) -> Packet {
    Packet {
        leap: 0,
        version: 4,
        mode: 4,
        stratum: 2,
        poll: 6,
        precision: -20,
        root_delay: 0x0000_0800,
        root_dispersion: 0x0000_0400,
        reference_id: [192, 0, 2, 1],
        reference: NtpTimestamp(0xe000_0000_0000_0000),
        originate: sent,
        receive: NtpTimestamp(0xe000_0001_8000_0000),
        transmit: NtpTimestamp(0xe000_0001_8001_0000),
    }
}

#[test]
fn replies_round_trip_through_the_wire_format() {
    let p = reply_to(NtpTimestamp(42));
    let b = p.encode();
    assert_eq!(b[0], 0x24, "LI 0, VN 4, mode 4");
    assert_eq!((b[2], b[3]), (6, 0xec));
    assert_eq!(Packet::decode(&b).unwrap(), p);
    let mut long = b.to_vec();
    long.extend_from_slice(&[0xaa; 20]); // a MAC after the header is ignored
    assert_eq!(Packet::decode(&long).unwrap(), p);
    assert!(matches!(Packet::decode(&b[..47]), Err(ReplyError::Short(47))));
    assert!(matches!(Packet::decode(&[]), Err(ReplyError::Short(0))));
}

#[test]
fn accepts_a_good_reply() {
    let sent = NtpTimestamp(0xe000_0001_0000_0000);
    assert!(check_reply(&reply_to(sent), sent).is_ok());
    assert!(check_reply(&Packet { version: 3, ..reply_to(sent) }, sent).is_ok());
    assert!(check_reply(&Packet { leap: 1, ..reply_to(sent) }, sent).is_ok(), "a pending leap second is fine");
    assert!(check_reply(&Packet { stratum: 15, ..reply_to(sent) }, sent).is_ok());
}

#[test]
fn kiss_o_death() {
    let sent = NtpTimestamp(7);
    let kiss = Packet { stratum: 0, leap: 3, reference_id: *b"RATE", ..reply_to(sent) };
    assert!(matches!(check_reply(&kiss, sent), Err(ReplyError::Kiss(code)) if code == "RATE"));
    let deny = Packet { reference_id: *b"DENY", ..kiss };
    assert!(matches!(check_reply(&deny, sent), Err(ReplyError::Kiss(code)) if code == "DENY"));
    // A kiss for someone else's request is not acted on.
    assert!(matches!(check_reply(&kiss, NtpTimestamp(8)), Err(ReplyError::Originate)));
    // A code that is not text is shown in hex, never printed raw into a log line.
    assert_eq!(Packet { reference_id: [b'A', b' ', 0, 0xff], ..kiss }.kiss_code(), "412000ff");
}

#[test]
fn rejects_bad_replies() {
    let sent = NtpTimestamp(0xe000_0001_0000_0000);
    let good = reply_to(sent);
    let check = |p: Packet| check_reply(&p, sent).unwrap_err();
    assert!(matches!(check(Packet { mode: 3, ..good }), ReplyError::Mode(3)));
    assert!(matches!(check(Packet { mode: 5, ..good }), ReplyError::Mode(5)));
    assert!(matches!(check(Packet { version: 2, ..good }), ReplyError::Version(2)));
    assert!(matches!(check(Packet { originate: NtpTimestamp(1), ..good }), ReplyError::Originate));
    assert!(matches!(check(Packet { leap: 3, ..good }), ReplyError::Unsynchronised));
    assert!(matches!(check(Packet { stratum: 16, ..good }), ReplyError::Stratum(16)));
    assert!(matches!(check(Packet { transmit: NtpTimestamp(0), ..good }), ReplyError::ZeroTimestamp));
    assert!(matches!(check(Packet { receive: NtpTimestamp(0), ..good }), ReplyError::ZeroTimestamp));
    assert!(matches!(
        check(Packet { root_delay: 2 << 16, root_dispersion: 16 << 16, ..good }),
        ReplyError::RootDistance(17_000)
    ));
}
