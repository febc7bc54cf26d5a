//! DHCPv4 on the wire (RFC 2131, RFC 2132, RFC 3442, RFC 3397).

pub mod codec;
pub mod options;

#[cfg(test)]
mod options_tests;
