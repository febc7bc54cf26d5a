//! IPv4/UDP frames from the DHCP client's packet socket (keel-wire's `parse_udp`): whatever arrives on the link,
//! parsing never panics, and a datagram it accepts rebuilds to a frame it accepts again with the same payload.
#![no_main]

use keel_wire::ipv4_udp::{build_udp, parse_udp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else { return };
    let Ok(udp) = parse_udp(packet, 68, flags & 1 == 1) else { return };
    let Some(rebuilt) = build_udp(udp.src, udp.dst, udp.src_port, 68, udp.payload) else { return };
    let back = parse_udp(&rebuilt, 68, true).expect("a frame build_udp made parses");
    assert_eq!(back.payload, udp.payload);
});
