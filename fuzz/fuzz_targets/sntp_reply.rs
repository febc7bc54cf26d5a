//! SNTP replies from the network (keel-wire's `Packet::decode` and `check_reply`, as the node's time sync runs
//! them on whatever a server, or a spoofer, sends): never panics; an accepted reply encodes back to its own
//! header; offset and delay never overflow.
#![no_main]

use keel_wire::sntp::{check_reply, offset_delay, NtpTimestamp, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else { return };
    assert_eq!(Packet::decode(&p.encode()).ok(), Some(p), "decode → encode → decode changed the packet");
    let _ = p.kiss_code();
    // Any originate: as if this were the answer to our request (the strongest case for a spoofer).
    if check_reply(&p, p.originate).is_ok() {
        let t4 = NtpTimestamp(p.transmit.0.wrapping_add(1 << 30));
        let _ = offset_delay(p.originate, p.receive, p.transmit, t4);
    }
});
