//! The client against a real dnsmasq, in two throwaway network namespaces joined by a veth pair. It never touches
//! the host's own links, and removes both namespaces even when it fails.
//!
//! Needs root, `ip` (iproute2) and the dnsmasq binary (Debian: dnsmasq-base). About 2.5 minutes, most of it
//! waiting for a 2-minute lease to run out; ignored by default. Run it with
//! `cargo test -p keel-init -- --ignored root_netns_dhcp`.

use super::codec::{Message, MessageType};
use super::ip;
use super::{run, DhcpControl, DhcpEvent, Lease};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

const MAC: [u8; 6] = [0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// The namespaces, dnsmasq and the scratch directory; all removed on drop, panics included.
struct Lab {
    srv: String,
    cli: String,
    dir: PathBuf,
    dnsmasq: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("keel-dhcp-test-{pid}"));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let lab = Lab { srv: format!("keel-dhcp-srv-{pid}"), cli: format!("keel-dhcp-cli-{pid}"), dir, dnsmasq: None };
        ip(&["netns", "add", &lab.srv]);
        ip(&["netns", "add", &lab.cli]);
        // Both ends are created directly inside their namespaces.
        ip(&[
            "link", "add", "veth-cli", "netns", &lab.cli, "type", "veth", "peer", "name", "veth-srv", "netns", &lab.srv,
        ]);
        ip(&["-n", &lab.cli, "link", "set", "veth-cli", "address", "02:6b:65:65:6c:01"]);
        ip(&["-n", &lab.srv, "addr", "add", "10.99.0.1/24", "dev", "veth-srv"]);
        for (ns, dev) in [(&lab.srv, "veth-srv"), (&lab.cli, "veth-cli"), (&lab.srv, "lo"), (&lab.cli, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    fn leases(&self) -> String {
        std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default()
    }

    fn start_dnsmasq(&mut self) {
        let log = std::fs::File::create(self.dir.join("dnsmasq.log")).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0"])
            .args(["--interface=veth-srv", "--bind-interfaces", "--user=root", "--group=root", "--log-dhcp"])
            .args([
                "--log-facility=-",
                "--dhcp-authoritative",
                "--no-ping",
                "--dhcp-range=10.99.0.50,10.99.0.60,255.255.255.0,2m",
            ])
            .args(["--dhcp-option=3,10.99.0.1", "--dhcp-option=6,10.99.0.1"])
            .args(["--dhcp-option=121,192.168.50.0/24,10.99.0.1"])
            // T1 10 s, T2 15 s: renewing and rebinding early; the lease stays at dnsmasq's minimum, 2 minutes.
            .args(["--dhcp-option=58,10", "--dhcp-option=59,15"])
            .arg(format!("--dhcp-leasefile={}", self.dir.join("leases").display()))
            .arg(format!("--pid-file={}", self.dir.join("dnsmasq.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("dnsmasq runs (apt-get install dnsmasq-base)");
        self.dnsmasq = Some(child);
        // Ready once its DHCP socket is bound.
        let started = Instant::now();
        while !self.dnsmasq_log().contains("sockets bound exclusively") {
            assert!(started.elapsed() < Duration::from_secs(10), "dnsmasq did not start:\n{}", self.dnsmasq_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    fn stop_dnsmasq(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_dnsmasq();
        for ns in [&self.cli, &self.srv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2) runs");
    assert!(status.success(), "ip {}: {status}", args.join(" "));
}

fn enter_netns(name: &str) {
    let ns = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
    setns(ns, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A DHCP message a server saw: who sent it to whom, and what it was.
#[derive(Debug, Clone)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: Option<MessageType>,
    ciaddr: Ipv4Addr,
    at: Instant,
}

/// Records every DHCP message arriving at the server's side, from a packet socket in the server namespace.
fn capture(netns: String, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<()>, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handle = std::thread::spawn(move || {
        enter_netns(&netns);
        let fd = socket(AddressFamily::Packet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::EthIp)
            .expect("packet socket");
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000)).expect("timeout");
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = nix::sys::socket::recvfrom::<nix::sys::socket::LinkAddr>(fd.as_raw_fd(), &mut buf) else {
                continue;
            };
            let Ok(udp) = ip::parse_udp(&buf[..n], 67, false) else { continue };
            let Ok(m) = Message::decode(udp.payload) else { continue };
            let entry =
                Seen { src: udp.src, dst: udp.dst, kind: m.message_type(), ciaddr: m.ciaddr, at: Instant::now() };
            log.lock().expect("capture log").push(entry);
        }
    });
    (handle, seen)
}

async fn next_event(events: &mut mpsc::Receiver<DhcpEvent>, within: Duration) -> DhcpEvent {
    match timeout(within, events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the client stopped"),
        Err(_) => panic!("no event within {within:?}"),
    }
}

/// What the network controller does on Bound / Expired.
fn configure(lab: &Lab, lease: &Lease, add: bool) {
    let addr = format!("{}/{}", lease.address, lease.prefix_len);
    ip(&["-n", &lab.cli, "addr", if add { "add" } else { "del" }, &addr, "dev", "veth-cli"]);
}

fn check_lease(lease: &Lease) {
    let octets = lease.address.octets();
    assert!(octets[..3] == [10, 99, 0] && (50..=60).contains(&octets[3]), "address {}", lease.address);
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.routers, vec![SERVER]);
    assert_eq!(lease.dns, vec![SERVER]);
    assert_eq!(lease.routes, vec![(Ipv4Addr::new(192, 168, 50, 0), 24, SERVER)]);
    // RFC 3442: option 121 without a default route means no default route.
    assert_eq!(lease.effective_routes(), lease.routes);
    assert_eq!(lease.server, SERVER);
    assert_eq!(
        (lease.lease, lease.t1, lease.t2),
        (Duration::from_secs(120), Duration::from_secs(10), Duration::from_secs(15))
    );
}

fn assert_send<T: Send>(_: &T) {}

/// A REQUEST unicast to the server from the leased address: renewing.
fn unicast_request(s: &Seen, leased: Ipv4Addr) -> bool {
    s.kind == Some(MessageType::Request) && s.dst == SERVER && s.src == leased && s.ciaddr == leased
}

#[test]
#[ignore = "needs root, network namespaces and dnsmasq; about 2.5 minutes"]
fn root_netns_dhcp_lease_renew_release_and_expiry() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    // The client's log lines, on stderr (shown with --nocapture).
    crate::logging::init(log::LevelFilter::Debug);
    let mut lab = Lab::new();
    lab.start_dnsmasq();
    let stop = Arc::new(AtomicBool::new(false));
    let (capturer, seen) = capture(lab.srv.clone(), stop.clone());
    let cli = lab.cli.clone();
    let lab = Arc::new(Mutex::new(lab));
    let lab_in_client = lab.clone();

    let result = std::thread::spawn(move || {
        enter_netns(&cli);
        let ifindex = nix::net::if_::if_nametoindex("veth-cli").expect("veth-cli");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let lab = lab_in_client;
            // 1. A lease, with everything dnsmasq was told to hand out.
            let (ev_tx, mut events) = mpsc::channel(8);
            let (control, ctl_rx) = mpsc::channel(4);
            let client = run(ifindex, "veth-cli".into(), MAC, Some("keel-test".into()), ev_tx, ctl_rx);
            assert_send(&client);
            let client = tokio::spawn(client);
            let t0 = Instant::now();
            let DhcpEvent::Bound { ifindex: i, lease } = next_event(&mut events, Duration::from_secs(20)).await else {
                panic!("expected Bound")
            };
            println!("bound in {:?}: {lease:?}", t0.elapsed());
            assert_eq!(i, ifindex);
            check_lease(&lease);
            configure(&lab.lock().expect("lab"), &lease, true);

            // 2. Renewal at T1 (10 s), unicast to the server from the leased address.
            let DhcpEvent::Renewed { lease: renewed, .. } = next_event(&mut events, Duration::from_secs(20)).await
            else {
                panic!("expected Renewed")
            };
            println!("renewed after {:?}", t0.elapsed());
            assert_eq!(renewed.address, lease.address);
            assert!(seen.lock().expect("seen").iter().any(|s| unicast_request(s, lease.address)), "renewal: {seen:?}");

            // 3. Release: DHCPRELEASE reaches dnsmasq, which drops the lease from its file.
            let mac_text = "02:6b:65:65:6c:01";
            assert!(lab.lock().expect("lab").leases().contains(mac_text), "dnsmasq holds the lease");
            control.send(DhcpControl::Release).await.expect("control");
            assert_eq!(next_event(&mut events, Duration::from_secs(5)).await, DhcpEvent::Released { ifindex });
            timeout(Duration::from_secs(5), client).await.expect("run returns after Released").expect("no panic");
            let released = Instant::now();
            while lab.lock().expect("lab").leases().contains(mac_text) {
                assert!(released.elapsed() < Duration::from_secs(5), "dnsmasq still holds the lease");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let release =
                |s: &Seen| s.kind == Some(MessageType::Release) && s.dst == SERVER && s.ciaddr == lease.address;
            assert!(seen.lock().expect("seen").iter().any(release), "release unicast: {seen:?}");
            configure(&lab.lock().expect("lab"), &lease, false);

            // 4. A new lease; then the server dies: renewing at T1, rebinding at T2, expiry at 120 s.
            let (ev_tx, mut events) = mpsc::channel(8);
            let (control, ctl_rx) = mpsc::channel(4);
            let client = tokio::spawn(run(ifindex, "veth-cli".into(), MAC, None, ev_tx, ctl_rx));
            let DhcpEvent::Bound { lease, .. } = next_event(&mut events, Duration::from_secs(20)).await else {
                panic!("expected Bound again")
            };
            let bound_at = Instant::now();
            check_lease(&lease);
            configure(&lab.lock().expect("lab"), &lease, true);
            lab.lock().expect("lab").stop_dnsmasq();
            let DhcpEvent::Expired { lease: expired, .. } = next_event(&mut events, Duration::from_secs(140)).await
            else {
                panic!("expected Expired")
            };
            let lived = bound_at.elapsed();
            println!("expired {lived:?} after the second bind");
            assert_eq!(expired.address, lease.address);
            assert!(lived > Duration::from_secs(115) && lived < Duration::from_secs(125), "lease lived {lived:?}");
            configure(&lab.lock().expect("lab"), &lease, false);
            let seen = seen.lock().expect("seen").clone();
            let after = |s: &&Seen| s.at > bound_at;
            let renewing = seen.iter().filter(after).find(|s| unicast_request(s, lease.address));
            let rebinding = seen.iter().filter(after).find(|s| {
                s.kind == Some(MessageType::Request) && s.dst == Ipv4Addr::BROADCAST && s.ciaddr == lease.address
            });
            let (Some(renewing), Some(rebinding)) = (renewing, rebinding) else {
                panic!("renewing (unicast) and rebinding (broadcast) REQUESTs after the server died: {seen:?}")
            };
            let (t1, t2) = (renewing.at - bound_at, rebinding.at - bound_at);
            println!("after the server died: renewing at {t1:?}, rebinding at {t2:?}");
            assert!(t1 >= Duration::from_secs(9) && t1 < Duration::from_secs(12), "T1 at {t1:?}");
            assert!(t2 >= Duration::from_secs(14) && t2 < Duration::from_secs(17), "T2 at {t2:?}");
            drop(control);
            timeout(Duration::from_secs(5), client).await.expect("run returns when control closes").expect("no panic");
        });
    })
    .join();
    stop.store(true, Ordering::Relaxed);
    let _ = capturer.join();
    let dir = lab.lock().map(|l| l.dir.clone()).unwrap_or_else(|p| p.into_inner().dir.clone());
    println!("dnsmasq log:\n{}", std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default());
    drop(lab);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
