//! Networking: the DHCPv4 client (the network controller that applies its leases over netlink lives beside it).

pub mod dhcp;
