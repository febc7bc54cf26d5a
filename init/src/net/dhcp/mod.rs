//! The DHCPv4 client (RFC 2131, RFC 2132, RFC 3442, RFC 3397), split by concern:
//!
//! - [`codec`]: BOOTP/DHCP messages to and from bytes; [`options`]: the typed contents of the options we read
//!   (both in the pure, fuzzed `keel-wire` crate, re-exported here).
//! - [`lease`]: what an ACK grants, with T1/T2 defaults and the RFC 3442 routing rule.
//! - [`machine`]: the client state machine, a pure function of (state, input) → (state, actions); [`state`]: its
//!   states, inputs and actions.
//! - [`ip`]: IPv4 + UDP headers for the packet socket (`keel_wire::ipv4_udp`); [`socket`]: the sockets themselves.
//! - [`client`]: drives the machine with real sockets and tokio timers and reports leases; it never configures the
//!   interface itself (the network controller does, over netlink).

pub mod client;
pub mod lease;
pub mod machine;
pub mod socket;
pub use keel_wire::dhcp::{codec, options};
pub use keel_wire::ipv4_udp as ip;
pub mod state;

// The network controller's entry points.
#[allow(unused_imports)]
pub use client::{run, DhcpControl, DhcpEvent};
#[allow(unused_imports)]
pub use lease::Lease;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod machine_tests;
#[cfg(test)]
mod netns_tests;
