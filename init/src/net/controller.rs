//! The network controller: the only owner of the kernel's network state, one kind on the one runner
//! (`controller::runner`). It passes on every new desired state (the boot network, then each config), on every
//! rtnetlink notification (drift is repaired as soon as the kernel reports it), on DHCP lease changes, after
//! failures with backoff, and every minute as a safety net. The plan is pure (`plan_node`); a converged host
//! costs one dump and zero writes.

use super::desired::LeaseInfo;
use super::model::Desired;
use super::netlink;
use super::observed::Observed;
use super::plan::Pending;
use super::plan_node::{self, HostName, NetObserved, NetOp};
use crate::clock;
use crate::controller::{self, runner, ControllerStatus, DesiredTx, ItemState, Plan, Target, Wake};
use crate::registry::Kind;
use rtnetlink::{Handle, MulticastGroup};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The longest one netlink dump or request may take.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

pub enum NetEvent {
    /// Something changed in the kernel's links, addresses or routes.
    Kernel,
    /// A DHCP client bound or renewed (`Some`) or lost (`None`) its lease.
    Lease { ifindex: u32, lease: Option<LeaseInfo> },
    /// Clean shutdown: release leases, then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// Commands to a running DHCP client.
pub enum DhcpCommand {
    Release(oneshot::Sender<()>),
    /// The link lost (false) or regained (true) carrier: the client verifies its lease when it comes back.
    Carrier(bool),
    Stop,
}

/// Starts a DHCP client on (ifindex, name, mac) that reports into the controller's inbox.
pub type DhcpStarter = Box<dyn Fn(u32, String, [u8; 6], mpsc::Sender<NetEvent>) -> mpsc::Sender<DhcpCommand> + Send>;

/// The network's typed detail (links, addresses, routes, leases), published after each pass beside the
/// [`ControllerStatus`] every kind publishes.
#[derive(Debug, Clone, Default)]
pub struct NetStatus {
    /// Once true, stays true: the network came up (every link as desired, a lease on every running client).
    pub ready: bool,
    pub observed: Observed,
    pub leases: BTreeMap<u32, LeaseInfo>,
    pub pending: Vec<Pending>,
    /// Operations that failed in the last pass, with the kernel's answer.
    pub failed: Vec<(String, String)>,
    pub nameservers: Vec<String>,
    pub hostname: String,
    pub ntp: Vec<String>,
    pub reconciles: u64,
    pub writes: u64,
    /// The config generation the last pass worked from (None: the boot network, before any config).
    pub generation: Option<u64>,
}

/// Where the rest of the init reaches the network controller.
#[derive(Clone)]
pub struct NetHandle {
    pub desired: DesiredTx<Desired>,
    pub events: mpsc::Sender<NetEvent>,
    pub status: watch::Receiver<NetStatus>,
    pub controller: watch::Receiver<ControllerStatus>,
}

pub struct Options {
    pub default_hostname: String,
    pub resolv_path: PathBuf,
    /// Off in tests that run in a network namespace but share the host's UTS namespace.
    pub manage_hostname: bool,
    /// When init started, for the `net.ready` line.
    pub exec_at: Duration,
}

pub struct Network {
    handle: Handle,
    /// The controller's own inbox, handed to the DHCP clients it starts.
    events: mpsc::Sender<NetEvent>,
    leases: BTreeMap<u32, LeaseInfo>,
    /// Running DHCP clients, with the carrier they last heard of.
    dhcp: BTreeMap<u32, (mpsc::Sender<DhcpCommand>, bool)>,
    start_dhcp: DhcpStarter,
    status: watch::Sender<NetStatus>,
    opts: Options,
    /// The kernel as the last observation saw it, for the status.
    last: Observed,
}

/// Connects to rtnetlink, subscribes to its notifications and starts the controller on `base` (the boot network).
pub fn start(base: Desired, start_dhcp: DhcpStarter, opts: Options) -> Result<NetHandle, netlink::NetlinkError> {
    let handle = netlink::connect()?;
    let (events, inbox) = mpsc::channel(256);
    watch_kernel(events.clone())?;
    let (status, status_rx) = watch::channel(NetStatus::default());
    let network = Network {
        handle,
        events: events.clone(),
        leases: BTreeMap::new(),
        dhcp: BTreeMap::new(),
        start_dhcp,
        status,
        opts,
        last: Observed::default(),
    };
    let (desired, controller) = runner::start_with(network, inbox);
    desired.send_replace(Some(Target { generation: None, desired: base }));
    Ok(NetHandle { desired, events, status: status_rx, controller })
}

impl Network {
    async fn release_all(&mut self) {
        for (ifindex, (control, _)) in std::mem::take(&mut self.dhcp) {
            let (tx, rx) = oneshot::channel();
            if control.send(DhcpCommand::Release(tx)).await.is_ok()
                && tokio::time::timeout(Duration::from_secs(1), rx).await.is_err()
            {
                log::warn!("net.dhcp.release_timeout ifindex={ifindex}");
            }
        }
    }
}

impl controller::Controller for Network {
    const KIND: Kind = Kind::Network;
    const AREA: &'static str = "net";
    const RESYNC: Duration = Duration::from_secs(60);
    /// Whatever the network waits for (a link, carrier, a lease) is reported by an event: polling is a safety net.
    const POLL: Duration = Duration::from_secs(30);
    /// Kernel events arrive in bursts (one change can notify link, address and route groups): gather them first.
    const SETTLE: Duration = Duration::from_millis(5);
    const BACKOFF_FIRST: Duration = Duration::from_secs(2);
    const BACKOFF_CAP: Duration = Duration::from_secs(32);

    type Desired = Desired;
    type Observed = NetObserved;
    type Op = NetOp;
    type Event = NetEvent;

    async fn observe(&mut self, _target: &Target<Desired>) -> Result<NetObserved, String> {
        let kernel = match tokio::time::timeout(NETLINK_TIMEOUT, netlink::dump(&self.handle)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("netlink dump took over {NETLINK_TIMEOUT:?}")),
        };
        // resolv.conf lives on /run (tmpfs): reading it never waits for a disk, so it is read in place (a thread
        // hand-off per pass would cost more than the read).
        let resolv = std::fs::read_to_string(&self.opts.resolv_path).ok();
        let hostname = self
            .opts
            .manage_hostname
            .then(|| HostName { current: crate::hostname::current(), fallback: self.opts.default_hostname.clone() });
        self.last = kernel.clone();
        Ok(NetObserved {
            kernel,
            leases: self.leases.clone(),
            dhcp: self.dhcp.iter().map(|(i, (_, carrier))| (*i, *carrier)).collect(),
            hostname,
            resolv,
        })
    }

    fn plan(desired: &Desired, observed: &NetObserved) -> Plan<NetOp> {
        plan_node::plan(desired, observed)
    }

    async fn apply(&mut self, op: NetOp, _generation: Option<u64>) -> Result<(), String> {
        match op {
            NetOp::Hostname { name, was } => {
                crate::hostname::converge(&name).map_err(|e| format!("sethostname {name}: {e}"))?;
                log::info!("net.hostname name={name} was={was}");
            }
            NetOp::Kernel(op) => {
                match tokio::time::timeout(NETLINK_TIMEOUT, netlink::apply(&self.handle, &op)).await {
                    Ok(r) => r.map_err(|e| e.to_string())?,
                    Err(_) => return Err(format!("no answer from the kernel in {NETLINK_TIMEOUT:?}")),
                }
                crate::metrics::bump(&crate::metrics::NET_WRITES);
            }
            NetOp::StartDhcp(link) => {
                let control = (self.start_dhcp)(link.index, link.name, link.mac, self.events.clone());
                self.dhcp.insert(link.index, (control, true));
            }
            NetOp::Carrier { index, name, up } => {
                if let Some((control, carrier)) = self.dhcp.get_mut(&index) {
                    *carrier = up;
                    log::info!("net.carrier if={name} up={up}");
                    let _ = control.try_send(DhcpCommand::Carrier(up));
                }
            }
            NetOp::StopDhcp { index, name } => {
                if let Some((control, _)) = self.dhcp.remove(&index) {
                    let _ = control.try_send(DhcpCommand::Stop);
                }
                self.leases.remove(&index);
                log::info!("net.dhcp.stop if={name} ifindex={index}");
            }
            NetOp::Resolv { text, nameservers } => {
                // The init's one atomic write (on /run, a tmpfs, its fsyncs cost nothing), off the event loop.
                let path = self.opts.resolv_path.clone();
                crate::fsutil::write_atomic_off_loop(path.clone(), text.into_bytes(), 0o644).await?;
                log::info!("net.resolv nameservers={nameservers} path={}", path.display());
            }
        }
        Ok(())
    }

    async fn event(&mut self, event: NetEvent) -> Wake {
        match event {
            NetEvent::Kernel => Wake::Now,
            NetEvent::Lease { ifindex, lease } => {
                // Only a running client's lease counts (a stopped client's last word arrives late).
                match lease {
                    Some(l) if self.dhcp.contains_key(&ifindex) => self.leases.insert(ifindex, l),
                    Some(_) => None,
                    None => self.leases.remove(&ifindex),
                };
                Wake::Input
            }
            NetEvent::Shutdown(ack) => {
                self.release_all().await;
                let _ = ack.send(());
                Wake::Stop
            }
        }
    }

    fn repairs(op: &NetOp) -> bool {
        op.repairs()
    }

    fn passed(&mut self, target: &Target<Desired>, status: &ControllerStatus) {
        let observed = NetObserved { kernel: self.last.clone(), leases: self.leases.clone(), ..Default::default() };
        let (eff, wanted) = plan_node::effective(&target.desired, &observed);
        let (mut pending, mut failed) = (Vec::new(), Vec::new());
        for (item, state) in &status.items {
            match state {
                ItemState::Converged => {}
                ItemState::Waiting(reason) => pending.push(Pending { item: item.clone(), reason: reason.clone() }),
                ItemState::Failed(e) => failed.push((item.clone(), e.clone())),
            }
        }
        // Ready: the links, addresses, routes and DHCP clients are as desired (the host name and resolv.conf are
        // reported, but a node whose resolv.conf cannot be written still has its network).
        let ready = status.error.is_none()
            && pending.iter().all(|p| is_host_item(&p.item))
            && failed.iter().all(|(item, _)| is_host_item(item));
        let became_ready = ready && !self.status.borrow().ready;
        if became_ready {
            let now = clock::uptime();
            log::info!(
                "net.ready uptime_ms={} init_ms={} rss_kib={} source={} addresses={}",
                clock::ms(now),
                clock::ms(now.saturating_sub(self.opts.exec_at)),
                crate::procfs::self_rss_kib(),
                if !wanted.is_empty() {
                    "dhcp"
                } else if eff.addresses.is_empty() {
                    "none"
                } else {
                    "static"
                },
                eff.addresses.len()
            );
            crate::procfs::log_memory("net.ready", log::Level::Debug);
        }
        crate::metrics::NET_RECONCILES.store(status.runs, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::NET_REPAIRS.store(status.repairs, std::sync::atomic::Ordering::Relaxed);
        let hostname = eff.hostname.clone().unwrap_or_else(|| self.opts.default_hostname.clone());
        self.status.send_modify(|s| {
            s.ready = s.ready || ready;
            s.observed = self.last.clone();
            s.leases = self.leases.clone();
            s.pending = pending;
            s.failed = failed;
            s.nameservers = eff.nameservers.iter().map(|a| a.to_string()).collect();
            s.hostname = hostname;
            s.ntp = eff.ntp.clone();
            s.reconciles = status.runs;
            s.writes = status.writes;
            s.generation = target.generation;
        });
    }
}

/// The items that say how the host is named and resolves, not whether it is connected.
fn is_host_item(item: &str) -> bool {
    item == "hostname" || item == "resolv.conf"
}

/// Subscribes to link, address and route notifications; each one becomes a `Kernel` event.
fn watch_kernel(inbox: mpsc::Sender<NetEvent>) -> Result<(), netlink::NetlinkError> {
    use futures_util::StreamExt;
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            // A full inbox already holds a pending pass: dropping this one loses nothing.
            let _ = inbox.try_send(NetEvent::Kernel);
        }
        log::error!("net.events_lost: rtnetlink notifications ended; falling back to periodic resync");
    });
    Ok(())
}
