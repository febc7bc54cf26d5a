//! Connects a DHCP client to the network controller: the client's lease events become controller events, and
//! the controller's commands (release at shutdown, stop when the link no longer wants DHCP) reach the client.

use super::controller::{DhcpCommand, DhcpStarter, NetEvent};
use super::desired::LeaseInfo;
use super::dhcp::{self, DhcpControl, DhcpEvent, Lease};
use tokio::sync::{mpsc, oneshot};

fn info(ifname: &str, lease: &Lease) -> LeaseInfo {
    LeaseInfo {
        ifname: ifname.to_string(),
        address: lease.address,
        prefix: lease.prefix_len,
        routers: lease.routers.clone(),
        routes: lease.effective_routes(),
        dns: lease.dns.clone(),
        search: if lease.search.is_empty() { lease.domain.iter().cloned().collect() } else { lease.search.clone() },
        hostname: lease.hostname.clone(),
        mtu: lease.mtu,
        ntp: lease.ntp.clone(),
    }
}

/// `hostname` is sent to the server (option 12).
pub fn starter(hostname: Option<String>) -> DhcpStarter {
    Box::new(move |ifindex, ifname, mac, inbox| {
        let (commands_tx, mut commands) = mpsc::channel::<DhcpCommand>(4);
        let (events_tx, mut events) = mpsc::channel::<DhcpEvent>(8);
        let (control, control_rx) = mpsc::channel::<DhcpControl>(4);
        tokio::spawn(dhcp::run(ifindex, ifname.clone(), mac, hostname.clone(), events_tx, control_rx));
        tokio::spawn(async move {
            let mut control = Some(control);
            let mut release_ack: Option<oneshot::Sender<()>> = None;
            loop {
                tokio::select! {
                    ev = events.recv() => {
                        let (lease, done) = match ev {
                            Some(DhcpEvent::Bound { lease, .. }) | Some(DhcpEvent::Renewed { lease, .. }) => {
                                (Some(info(&ifname, &lease)), false)
                            }
                            Some(DhcpEvent::Expired { .. }) => (None, false),
                            Some(DhcpEvent::Released { .. }) | None => (None, true),
                        };
                        let _ = inbox.send(NetEvent::Lease { ifindex, lease }).await;
                        if done {
                            if let Some(ack) = release_ack.take() {
                                let _ = ack.send(());
                            }
                            return;
                        }
                    }
                    cmd = commands.recv() => match (cmd, control.as_ref()) {
                        (Some(DhcpCommand::Release(ack)), Some(c)) => {
                            release_ack = Some(ack);
                            let _ = c.send(DhcpControl::Release).await;
                        }
                        (Some(DhcpCommand::Carrier(up)), Some(c)) => {
                            let _ = c.send(if up { DhcpControl::LinkUp } else { DhcpControl::LinkDown }).await;
                        }
                        (Some(DhcpCommand::Carrier(_)), None) => {}
                        // Stop: closing the control channel ends the client without a release.
                        (Some(DhcpCommand::Stop), _) | (None, _) => control = None,
                        (Some(DhcpCommand::Release(ack)), None) => {
                            let _ = ack.send(());
                        }
                    },
                }
            }
        });
        commands_tx
    })
}
