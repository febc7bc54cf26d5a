//! Connects DHCP clients to the network controller. (Interim: the DHCPv4 client is being merged; until then a
//! link that wants DHCP is reported and left without a lease.)

use super::controller::{DhcpCommand, DhcpStarter};
use tokio::sync::mpsc;

pub fn starter() -> DhcpStarter {
    Box::new(|ifindex, name, _mac, _events| {
        log::warn!("net.dhcp.unavailable if={name} ifindex={ifindex}");
        let (tx, _rx) = mpsc::channel::<DhcpCommand>(1);
        tx
    })
}
