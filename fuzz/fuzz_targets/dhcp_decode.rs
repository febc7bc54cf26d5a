//! DHCP messages from the network (keel-wire's codec and option parsers, as the node's DHCP client runs them on
//! whatever a server, or anyone on the link, sends): decoding never panics, and a decoded message survives
//! encode → decode unchanged.
#![no_main]

use keel_wire::dhcp::codec::{code, Message};
use keel_wire::dhcp::options;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else { return };
    let _ = m.message_type();
    let o = &m.options;
    for c in [code::SERVER_ID, code::REQUESTED_IP, code::SUBNET_MASK] {
        let _ = o.get(c).map(options::ipv4);
    }
    for c in [code::ROUTERS, code::DNS, code::NTP] {
        let _ = o.get(c).map(options::ipv4_list);
    }
    for c in [code::LEASE_TIME, code::RENEWAL_TIME, code::REBINDING_TIME] {
        let _ = o.get(c).map(options::u32_be);
    }
    let _ = o.get(code::MTU).map(options::u16_be);
    for c in [code::HOSTNAME, code::DOMAIN_NAME] {
        let _ = o.get(c).map(options::text);
    }
    let _ = o.get(code::DOMAIN_SEARCH).map(options::domain_search);
    let _ = o.get(code::CLASSLESS_ROUTES).map(options::classless_routes);
    let again = Message::decode(&m.encode()).expect("an encoded message decodes");
    assert_eq!(again, m, "decode → encode → decode changed the message");
});
