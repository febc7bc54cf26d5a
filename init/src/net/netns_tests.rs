//! The network controller against the real kernel, inside throwaway network namespaces (never the host's own
//! links). Needs root; each test makes its own namespace and removes it even when it fails.

use super::controller::{self, DhcpStarter, NetEvent, NetHandle, NetStatus, Options};
use super::model::{AddrSpec, Desired, LinkMatch, LinkSpec, Origin, RouteSpec};
use crate::controller::Target;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("keel-{tag}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// `ip -n <ns> …`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A controller running on its own thread inside the namespace.
pub struct Running {
    pub net: NetHandle,
    pub status: watch::Receiver<NetStatus>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn no_dhcp() -> DhcpStarter {
    Box::new(|_, name, _, _| panic!("DHCP was started on {name} but this test configures no DHCP"))
}

pub fn start(ns: &Netns, base: Desired, resolv: std::path::PathBuf) -> Running {
    let path = format!("/var/run/netns/{}", ns.name);
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let opts = Options {
                default_hostname: "test".into(),
                resolv_path: resolv,
                manage_hostname: false,
                exec_at: Duration::ZERO,
            };
            let net = controller::start(base, no_dhcp(), opts).unwrap();
            let mut done = net.controller.clone();
            tx.send(net).unwrap();
            // The runner drops its status sender when it stops (after the shutdown event).
            while done.changed().await.is_ok() {}
        });
    });
    let net: NetHandle = rx.recv().unwrap();
    Running { status: net.status.clone(), net, thread: Some(thread) }
}

impl Running {
    pub fn wait(&self, what: &str, timeout: Duration, f: impl Fn(&NetStatus) -> bool) -> NetStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status.borrow().clone();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; status: {s:#?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn send(&self, ev: NetEvent) {
        self.net.events.blocking_send(ev).unwrap_or_else(|_| panic!("controller is gone"));
    }

    /// A new desired state, as a config of `generation` would bring.
    pub fn set(&self, desired: Desired, generation: u64) {
        self.net.desired.send_replace(Some(Target::new(generation, desired)));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (ack, done) = oneshot::channel();
        if self.net.events.blocking_send(NetEvent::Shutdown(ack)).is_ok() {
            let _ = done.blocking_recv();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn desired() -> Desired {
    let va = LinkMatch::Name("va".into());
    let route = |dest: &str, prefix, gw: &str, metric| RouteSpec {
        dest: addr(dest),
        prefix,
        gateway: Some(addr(gw)),
        link: Some(va.clone()),
        metric,
        onlink: false,
        origin: Origin::Static,
    };
    Desired {
        links: vec![LinkSpec { link: va.clone(), up: true, mtu: Some(1400), dhcp4: false }],
        addresses: vec![
            AddrSpec { link: va.clone(), addr: addr("10.77.0.2"), prefix: 24, origin: Origin::Static },
            AddrSpec { link: va.clone(), addr: addr("fd77::2"), prefix: 64, origin: Origin::Static },
        ],
        routes: vec![route("0.0.0.0", 0, "10.77.0.1", 0), route("192.168.99.0", 24, "10.77.0.1", 50)],
        nameservers: vec![addr("10.77.0.1")],
        ..Desired::default()
    }
}

fn veth_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["link", "set", "vb", "up"]);
    ns
}

fn has(ns: &Netns, args: &[&str], needle: &str) -> bool {
    ns.ip(args).contains(needle)
}

/// Polls until `needle` shows in `ip <args>`; returns how long that took.
fn until_present(ns: &Netns, args: &[&str], needle: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while !has(ns, args, needle) {
        assert!(start.elapsed() < limit, "{needle:?} not back in `ip {}` after {limit:?}", args.join(" "));
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[test]
fn root_netns_static_converges_then_plans_zero_writes() {
    let ns = veth_netns("static");
    let resolv = std::env::temp_dir().join(format!("{}.resolv", ns.name));
    let c = start(&ns, desired(), resolv.clone());
    let s = c.wait("ready", Duration::from_secs(10), |s| s.ready);
    assert!(s.failed.is_empty() && s.pending.is_empty(), "{s:#?}");
    let link = ns.ip(&["link", "show", "va"]);
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    let addrs = ns.ip(&["addr", "show", "va"]);
    assert!(addrs.contains("10.77.0.2/24") && addrs.contains("fd77::2/64"), "{addrs}");
    let routes = ns.ip(&["-4", "route"]);
    assert!(routes.contains("default via 10.77.0.1 dev va proto 229"), "{routes}");
    assert!(routes.contains("192.168.99.0/24 via 10.77.0.1 dev va proto 229 metric 50"), "{routes}");
    assert_eq!(std::fs::read_to_string(&resolv).unwrap().lines().nth(1), Some("nameserver 10.77.0.1"));

    // Nothing changed: a reconcile performs no write.
    let before = c.status.borrow().clone();
    c.send(NetEvent::Kernel);
    let after = c.wait("another reconcile", Duration::from_secs(10), |s| s.reconciles > before.reconciles);
    assert_eq!(after.writes, before.writes, "a converged host must cost zero writes");
    let _ = std::fs::remove_file(resolv);
}

#[test]
fn root_netns_drift_is_repaired_within_a_second() {
    let ns = veth_netns("drift");
    let c = start(&ns, desired(), std::env::temp_dir().join(format!("{}.resolv", ns.name)));
    c.wait("ready", Duration::from_secs(10), |s| s.ready);
    let second = Duration::from_secs(1);

    ns.ip(&["route", "del", "192.168.99.0/24"]);
    let t = until_present(&ns, &["-4", "route"], "192.168.99.0/24 via 10.77.0.1", second);
    eprintln!("route restored in {t:?}");

    // Removing the address takes its routes with it: all come back.
    ns.ip(&["addr", "del", "10.77.0.2/24", "dev", "va"]);
    let t = until_present(&ns, &["-4", "route"], "default via 10.77.0.1", second);
    until_present(&ns, &["addr", "show", "va"], "10.77.0.2/24", second);
    eprintln!("address and routes restored in {t:?}");

    ns.ip(&["link", "set", "va", "down"]);
    let t = until_present(&ns, &["link", "show", "va"], ",UP", second);
    eprintln!("link up again in {t:?}");
}

#[test]
fn root_netns_removed_items_go_and_foreign_ones_stay() {
    let ns = veth_netns("owner");
    let c = start(&ns, desired(), std::env::temp_dir().join(format!("{}.resolv", ns.name)));
    c.wait("ready", Duration::from_secs(10), |s| s.ready);
    ns.ip(&["addr", "add", "10.88.0.5/24", "dev", "va"]);
    ns.ip(&["route", "add", "192.168.42.0/24", "via", "10.88.0.1"]);
    let mut d = desired();
    d.addresses.retain(|a| a.addr != addr("fd77::2"));
    d.routes.retain(|r| r.prefix != 24);
    let before = c.status.borrow().reconciles;
    c.set(d, 2);
    c.wait("reconcile of the new config", Duration::from_secs(10), |s| s.reconciles > before && s.failed.is_empty());
    let addrs = ns.ip(&["addr", "show", "va"]);
    assert!(!addrs.contains("fd77::2"), "a removed address must go: {addrs}");
    assert!(addrs.contains("10.77.0.2/24"), "{addrs}");
    assert!(addrs.contains("10.88.0.5/24"), "an address Keel did not add must stay: {addrs}");
    let routes = ns.ip(&["-4", "route"]);
    assert!(!routes.contains("192.168.99.0"), "a removed route must go: {routes}");
    assert!(routes.contains("192.168.42.0/24 via 10.88.0.1"), "a foreign route must stay: {routes}");
}

#[test]
fn root_netns_missing_link_and_refused_address_are_reported_rest_converges() {
    let ns = veth_netns("partial");
    ns.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
    ns.ip(&["link", "set", "vc", "up"]);
    // IPv6 off on vc (inside the namespace only): the kernel refuses IPv6 addresses there.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-qw", "net.ipv6.conf.vc.disable_ipv6=1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut d = desired();
    let on = |link: &str, a: &str| AddrSpec {
        link: LinkMatch::Name(link.into()),
        addr: addr(a),
        prefix: 24,
        origin: Origin::Static,
    };
    d.addresses.push(on("eth9", "10.9.0.1"));
    d.addresses.push(AddrSpec { prefix: 64, ..on("vc", "fd66::1") });
    let c = start(&ns, d, std::env::temp_dir().join(format!("{}.resolv", ns.name)));
    let s = c.wait("first reconcile", Duration::from_secs(10), |s| s.reconciles >= 1);
    assert!(!s.ready, "a missing link keeps the network from being ready");
    assert_eq!(s.pending.len(), 1, "{s:#?}");
    assert_eq!(s.pending[0].item, "address 10.9.0.1/24 on eth9");
    assert_eq!(s.failed.len(), 1, "{s:#?}");
    assert!(s.failed[0].0.contains("addr=fd66::1/64"), "{s:#?}");
    assert!(has(&ns, &["addr", "show", "va"], "10.77.0.2/24"), "the rest converges");
    assert!(has(&ns, &["-4", "route"], "default via 10.77.0.1"), "the rest converges");
}

/// `make bench`: converge 1,000 addresses and 1,000 routes on a veth from scratch, then re-plan with nothing to
/// do (which must issue zero netlink writes). Prints the figures; ignored in `make test`.
#[test]
#[ignore = "benchmark: run by make bench"]
fn root_netns_bench_converge_1000_addresses_and_routes() {
    let ns = veth_netns("bench");
    let va = LinkMatch::Name("va".into());
    let mut d =
        Desired { links: vec![LinkSpec { link: va.clone(), up: true, mtu: None, dhcp4: false }], ..Desired::default() };
    for i in 0..1000u32 {
        let a = std::net::Ipv4Addr::from(0x0a40_0000 + (i << 8) + 1);
        d.addresses.push(AddrSpec { link: va.clone(), addr: IpAddr::V4(a), prefix: 24, origin: Origin::Static });
        let dest = std::net::Ipv4Addr::from(0xac10_0000 + (i << 8));
        let gw = std::net::Ipv4Addr::from(0x0a40_0000 + (i << 8) + 254);
        d.routes.push(RouteSpec {
            dest: IpAddr::V4(dest),
            prefix: 24,
            gateway: Some(IpAddr::V4(gw)),
            link: Some(va.clone()),
            metric: 10,
            onlink: false,
            origin: Origin::Static,
        });
    }
    let began = Instant::now();
    let c = start(&ns, d, std::env::temp_dir().join(format!("{}.resolv", ns.name)));
    let s = c.wait("1,000 + 1,000 converged", Duration::from_secs(300), |s| s.ready);
    let converge = began.elapsed();
    assert!(s.failed.is_empty(), "{:?}", &s.failed[..s.failed.len().min(3)]);
    let before = s.clone();
    let t = Instant::now();
    c.send(NetEvent::Kernel);
    let after = c.wait("no-op re-plan", Duration::from_secs(60), |s| s.reconciles > before.reconciles);
    let replan = t.elapsed();
    let routes = ns.ip(&["-4", "route", "show", "proto", "229"]).lines().count();
    println!("net bench: converge 1000 addresses + 1000 routes from scratch: {:.0} ms", converge.as_secs_f64() * 1e3);
    println!(
        "net bench: no-op re-plan (dump + plan): {:.1} ms, netlink writes: {}",
        replan.as_secs_f64() * 1e3,
        after.writes - before.writes
    );
    assert_eq!(after.writes, before.writes, "the no-op re-plan must write nothing");
    assert_eq!(routes, 1000);
}
