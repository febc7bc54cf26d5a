//! `drift BOND MEMBER VLAN`: once VLAN exists with an address on it, does by hand what drift looks like on a node:
//! releases MEMBER from BOND (the bonding driver's sysfs `slaves` file) and deletes VLAN (an rtnetlink
//! `RTM_DELLINK`), then reports how long the node took to put both back. Keel's network controller must repair
//! both from the kernel's link events alone.

use std::io::{Error, ErrorKind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn ifindex(name: &str) -> Option<i32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

fn master_of(name: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/net/{name}/master")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// An IPv4 address on `name` (its line in /proc/net/fib_trie is hard to read; the route table names it).
fn has_route(name: &str) -> bool {
    std::fs::read_to_string("/proc/net/route")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().next() == Some(name)))
}

/// RTM_DELLINK for the link with `index`, acknowledged by the kernel.
fn delete_link(index: i32) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let sock: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let mut msg = [0u8; 32]; // nlmsghdr (16) + ifinfomsg (16)
    msg[0..4].copy_from_slice(&32u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_DELLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[20..24].copy_from_slice(&index.to_ne_bytes());
    let mut file = std::fs::File::from(sock);
    std::io::Write::write_all(&mut file, &msg)?;
    let mut ack = [0u8; 256];
    let n = std::io::Read::read(&mut file, &mut ack)?;
    if n < 20 || u16::from_ne_bytes([ack[4], ack[5]]) != libc::NLMSG_ERROR as u16 {
        return Err(Error::new(ErrorKind::InvalidData, "no netlink acknowledgement"));
    }
    match i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]) {
        0 => Ok(()),
        e => Err(Error::from_raw_os_error(-e)),
    }
}

fn wait(what: &str, limit: Duration, ok: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("testhelper: {what} not seen within {}s", limit.as_secs());
    None
}

pub fn drift(bond: &str, member: &str, vlan: &str) -> ExitCode {
    let settled = || master_of(member).as_deref() == Some(bond) && ifindex(vlan).is_some() && has_route(vlan);
    if wait(&format!("{member} in {bond} and {vlan} with an address"), Duration::from_secs(120), settled).is_none() {
        return ExitCode::FAILURE;
    }
    let vlan_index = ifindex(vlan).unwrap_or(0);
    if let Err(e) = std::fs::write(format!("/sys/class/net/{bond}/bonding/slaves"), format!("-{member}")) {
        eprintln!("testhelper: release {member} from {bond}: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = delete_link(vlan_index) {
        eprintln!("testhelper: delete {vlan}: {e}");
        return ExitCode::FAILURE;
    }
    println!("testhelper: drifted released={member} deleted={vlan} index={vlan_index}");
    let repaired = || settled() && ifindex(vlan) != Some(vlan_index);
    match wait("the repair", Duration::from_secs(60), repaired) {
        Some(took) => {
            println!("testhelper: repaired member={member} vlan={vlan} ms={}", took.as_millis());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// Prints what the bonding driver knows (`/proc/net/bonding/*`: mode, active member, LACP partner per member) and
/// the VLANs, for a test that failed to get traffic through.
pub fn dump_bonds() {
    for dir in ["/proc/net/bonding", "/proc/net/vlan"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                println!("testhelper: {}: {line}", e.path().display());
            }
        }
    }
    // Per-link packet counters and addresses: did a member receive nothing at all (LACPDUs included), and does it
    // carry the bond's MAC?
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    for line in dev.lines().skip(2) {
        println!("testhelper: /proc/net/dev: {}", line.trim());
    }
    for name in ["eth1", "eth2", "bond0"] {
        let addr = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).unwrap_or_default();
        println!("testhelper: {name} address={}", addr.trim());
    }
}
