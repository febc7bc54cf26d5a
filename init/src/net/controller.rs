//! The network controller: the only owner of the kernel's network state. It reconciles on every change of the
//! desired state, on every rtnetlink event (drift is repaired as soon as the kernel reports it), on DHCP lease
//! changes, after failures with backoff, and every minute as a safety net. Each reconcile observes, plans (pure)
//! and applies; a converged host costs one dump and zero writes.

use super::desired::{self, LeaseInfo};
use super::model::Desired;
use super::netlink;
use super::observed::Observed;
use super::plan::{self, Op, Pending};
use super::resolv;
use crate::clock;
use rtnetlink::{Handle, MulticastGroup};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

const RESYNC: Duration = Duration::from_secs(60);
/// Kernel events arrive in bursts (one change can notify link, address and route groups): gather them first.
const SETTLE: Duration = Duration::from_millis(5);

pub enum NetEvent {
    /// Something changed in the kernel's links, addresses or routes.
    Kernel,
    /// A DHCP client bound or renewed (`Some`) or lost (`None`) its lease.
    Lease { ifindex: u32, lease: Option<LeaseInfo> },
    /// New desired state from a newly accepted config of this generation.
    SetBase(Desired, u64),
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

/// What the rest of the init can see of the network.
#[derive(Debug, Clone, Default)]
pub struct NetStatus {
    pub ready: bool,
    pub observed: Observed,
    pub leases: BTreeMap<u32, LeaseInfo>,
    pub pending: Vec<Pending>,
    /// Operations that failed in the last reconcile, with the kernel's answer.
    pub failed: Vec<(String, String)>,
    pub nameservers: Vec<String>,
    pub hostname: String,
    pub ntp: Vec<String>,
    pub reconciles: u64,
    pub writes: u64,
    /// The config generation the last reconcile worked from (None: the boot network, before any config).
    pub generation: Option<u64>,
}

pub struct Controller {
    handle: Handle,
    inbox_tx: mpsc::Sender<NetEvent>,
    inbox: mpsc::Receiver<NetEvent>,
    base: Desired,
    generation: Option<u64>,
    leases: BTreeMap<u32, LeaseInfo>,
    /// Running DHCP clients, with the carrier they last heard of.
    dhcp: BTreeMap<u32, (mpsc::Sender<DhcpCommand>, bool)>,
    start_dhcp: DhcpStarter,
    status: watch::Sender<NetStatus>,
    default_hostname: String,
    resolv_path: PathBuf,
    manage_hostname: bool,
    exec_at: Duration,
    failures: u32,
}

pub struct Options {
    pub default_hostname: String,
    pub resolv_path: PathBuf,
    /// Off in tests that run in a network namespace but share the host's UTS namespace.
    pub manage_hostname: bool,
    /// When init started, for the `net.ready` line.
    pub exec_at: Duration,
}

impl Controller {
    pub fn new(
        base: Desired,
        start_dhcp: DhcpStarter,
        opts: Options,
    ) -> Result<(Controller, mpsc::Sender<NetEvent>, watch::Receiver<NetStatus>), netlink::NetlinkError> {
        let handle = netlink::connect()?;
        let (inbox_tx, inbox) = mpsc::channel(256);
        let (status, status_rx) = watch::channel(NetStatus::default());
        watch_kernel(inbox_tx.clone())?;
        let c = Controller {
            handle,
            inbox_tx: inbox_tx.clone(),
            inbox,
            base,
            generation: None,
            leases: BTreeMap::new(),
            dhcp: BTreeMap::new(),
            start_dhcp,
            status,
            default_hostname: opts.default_hostname,
            resolv_path: opts.resolv_path,
            manage_hostname: opts.manage_hostname,
            exec_at: opts.exec_at,
            failures: 0,
        };
        Ok((c, inbox_tx, status_rx))
    }

    pub async fn run(mut self) {
        let mut reason = "start";
        loop {
            self.reconcile(reason).await;
            let retry = (self.failures > 0).then(|| Duration::from_secs(1 << self.failures.min(5)));
            let wait = retry.unwrap_or(RESYNC);
            let deadline = Instant::now() + wait;
            reason = match tokio::time::timeout(wait, self.inbox.recv()).await {
                Err(_) if retry.is_some() => "retry",
                Err(_) => "resync",
                Ok(None) => return,
                Ok(Some(NetEvent::Kernel)) => {
                    tokio::time::sleep(SETTLE.min(deadline.saturating_duration_since(Instant::now()))).await;
                    "kernel-event"
                }
                Ok(Some(NetEvent::Lease { ifindex, lease })) => {
                    match lease {
                        Some(l) => self.leases.insert(ifindex, l),
                        None => self.leases.remove(&ifindex),
                    };
                    "dhcp"
                }
                Ok(Some(NetEvent::SetBase(d, generation))) => {
                    self.base = d;
                    self.generation = Some(generation);
                    "config"
                }
                Ok(Some(NetEvent::Shutdown(ack))) => {
                    self.release_all().await;
                    let _ = ack.send(());
                    return;
                }
            };
            // Coalesce what else is already queued: one reconcile covers all of it.
            while let Ok(ev) = self.inbox.try_recv() {
                match ev {
                    NetEvent::Kernel => {}
                    NetEvent::Lease { ifindex, lease: Some(l) } => {
                        self.leases.insert(ifindex, l);
                    }
                    NetEvent::Lease { ifindex, lease: None } => {
                        self.leases.remove(&ifindex);
                    }
                    NetEvent::SetBase(d, generation) => {
                        self.base = d;
                        self.generation = Some(generation);
                    }
                    NetEvent::Shutdown(ack) => {
                        self.release_all().await;
                        let _ = ack.send(());
                        return;
                    }
                }
            }
        }
    }

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

    /// Starts DHCP where it is wanted and stops it where it no longer is.
    /// Starts a client when a link that wants DHCP first has carrier, tells it when carrier goes and comes back
    /// (so it keeps its lease across a cable pull and verifies it after), and stops it when the link no longer
    /// wants DHCP.
    fn supervise_dhcp(&mut self, eff: &Desired, obs: &Observed) {
        let wanted = desired::dhcp_links(eff, obs);
        let stale: Vec<u32> = self.dhcp.keys().copied().filter(|i| !wanted.iter().any(|w| w.index == *i)).collect();
        for ifindex in stale {
            if let Some((control, _)) = self.dhcp.remove(&ifindex) {
                let _ = control.try_send(DhcpCommand::Stop);
            }
            self.leases.remove(&ifindex);
            log::info!("net.dhcp.stop ifindex={ifindex}");
        }
        for link in wanted {
            match self.dhcp.get_mut(&link.index) {
                None if link.carrier => {
                    let control = (self.start_dhcp)(link.index, link.name, link.mac, self.inbox_tx.clone());
                    self.dhcp.insert(link.index, (control, true));
                }
                None => {}
                Some((control, carrier)) if *carrier != link.carrier => {
                    *carrier = link.carrier;
                    log::info!("net.carrier if={} up={}", link.name, link.carrier);
                    let _ = control.try_send(DhcpCommand::Carrier(link.carrier));
                }
                Some(_) => {}
            }
        }
    }

    async fn reconcile(&mut self, reason: &str) {
        let started = clock::uptime();
        crate::metrics::bump(&crate::metrics::NET_RECONCILES);
        let obs = match netlink::dump(&self.handle).await {
            Ok(o) => o,
            Err(e) => {
                log::error!("net.observe_failed error={}", crate::logging::q(&e.to_string()));
                self.failures += 1;
                return;
            }
        };
        let observed_at = clock::uptime();
        let mut eff = desired::effective(&self.base, &obs, &self.leases);
        self.supervise_dhcp(&eff, &obs);
        // Leases dropped by supervision no longer count.
        eff = desired::effective(&self.base, &obs, &self.leases);
        // The host name first: anything that talks once the network is up already sees the right name.
        let hostname = eff.hostname.clone().unwrap_or_else(|| self.default_hostname.clone());
        let mut writes = self.converge_hostname(&hostname);
        let plan = plan::plan(&eff, &obs);
        let repair = matches!(reason, "kernel-event" | "resync");
        let mut failed = Vec::new();
        for op in &plan.ops {
            match netlink::apply(&self.handle, op).await {
                Ok(()) => {
                    writes += 1;
                    crate::metrics::bump(&crate::metrics::NET_WRITES);
                    if repair && !matches!(op, Op::DelAddr { .. } | Op::DelRoute(_)) {
                        crate::metrics::bump(&crate::metrics::NET_REPAIRS);
                        log::info!("net.repair {op} reason={reason}");
                    } else {
                        log::info!("net.apply {op} reason={reason}");
                    }
                }
                Err(e) => {
                    log::warn!("net.apply_failed {op} error={}", crate::logging::q(&e.to_string()));
                    failed.push((op.to_string(), e.to_string()));
                }
            }
        }
        for p in &plan.pending {
            log::debug!("net.pending item={} reason={}", crate::logging::q(&p.item), crate::logging::q(&p.reason));
        }
        self.failures = if failed.is_empty() && plan.pending.is_empty() { 0 } else { self.failures.saturating_add(1) };
        writes += self.converge_resolv(&eff);
        log::debug!(
            "net.reconcile reason={reason} ops={} writes={writes} start_ms={} observe_ms={} total_ms={}",
            plan.ops.len(),
            clock::ms(started),
            clock::ms(observed_at.saturating_sub(started)),
            clock::ms(clock::uptime().saturating_sub(started))
        );
        // DHCP is up when every link running a client has a lease; links that want DHCP but have no carrier yet
        // keep the network from being ready only while no lease exists anywhere.
        let dhcp_links = eff.links.iter().filter(|l| l.dhcp4 && obs.link(&l.link).is_some()).count();
        let dhcp_wanted = dhcp_links > 0;
        let all_leased = self.dhcp.keys().all(|i| self.leases.contains_key(i));
        let ready =
            failed.is_empty() && plan.pending.is_empty() && (!dhcp_wanted || (!self.dhcp.is_empty() && all_leased));
        let was_ready = self.status.borrow().ready;
        if ready && !was_ready {
            let now = clock::uptime();
            log::info!(
                "net.ready uptime_ms={} init_ms={} rss_kib={} source={} addresses={}",
                clock::ms(now),
                clock::ms(now.saturating_sub(self.exec_at)),
                crate::procfs::self_rss_kib(),
                if dhcp_wanted {
                    "dhcp"
                } else if eff.addresses.is_empty() {
                    "none"
                } else {
                    "static"
                },
                eff.addresses.len()
            );
        }
        let observed = if writes > 0 { netlink::dump(&self.handle).await.unwrap_or(obs) } else { obs };
        self.status.send_modify(|s| {
            s.ready = s.ready || ready;
            s.observed = observed;
            s.leases = self.leases.clone();
            s.pending = plan.pending.clone();
            s.failed = failed;
            s.nameservers = eff.nameservers.iter().map(|a| a.to_string()).collect();
            s.hostname = hostname;
            s.ntp = eff.ntp.clone();
            s.reconciles += 1;
            s.writes += writes;
            s.generation = self.generation;
        });
    }

    fn converge_resolv(&self, eff: &Desired) -> u64 {
        let source = if self.leases.is_empty() || !self.base.nameservers.is_empty() { "static config" } else { "dhcp" };
        let text = resolv::render(&eff.nameservers, &eff.search, source);
        match resolv::write_if_changed(&self.resolv_path, &text) {
            Ok(true) => {
                log::info!("net.resolv nameservers={} path={}", eff.nameservers.len(), self.resolv_path.display());
                1
            }
            Ok(false) => 0,
            Err(e) => {
                log::warn!("net.resolv_failed path={} error={e}", self.resolv_path.display());
                0
            }
        }
    }

    fn converge_hostname(&self, name: &str) -> u64 {
        if !self.manage_hostname {
            return 0;
        }
        match crate::hostname::converge(name) {
            Ok(None) => 0,
            Ok(Some(was)) => {
                log::info!("net.hostname name={name} was={was}");
                1
            }
            Err(e) => {
                log::warn!("net.hostname_failed name={name} error={e}");
                0
            }
        }
    }
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
            // A full inbox already holds a pending reconcile: dropping this one loses nothing.
            let _ = inbox.try_send(NetEvent::Kernel);
        }
        log::error!("net.events_lost: rtnetlink notifications ended; falling back to periodic resync");
    });
    Ok(())
}
