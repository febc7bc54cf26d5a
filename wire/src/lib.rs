//! keel-wire: the parsers that face the network, kept apart from PID 1 so they are small, pure (no I/O, no
//! allocation beyond their outputs, no panics) and fuzzed on their own (`fuzz/fuzz_targets/dhcp_decode.rs`,
//! `ipv4_udp_parse.rs`, `sntp_reply.rs`, `http_response.rs`).
//!
//! - [`dhcp::codec`]: BOOTP/DHCP messages to and from bytes; [`dhcp::options`]: the typed contents of options.
//! - [`ipv4_udp`]: IPv4 + UDP headers for the DHCP client's packet socket.
//! - [`sntp`]: SNTPv4 packets, reply checks, offset and delay.
//! - [`http`]: HTTP/1.1 URLs and responses for the config pull and OCI registry clients.

// Linked into PID 1: no panicking shortcuts outside tests (indexing is bounds-checked up front; the fuzz targets
// are what proves no input panics).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod dhcp;
pub mod http;
pub mod ipv4_udp;
pub mod sntp;
