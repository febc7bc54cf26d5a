//! The client's sockets.
//!
//! - [`PacketSocket`]: an `AF_PACKET`/`SOCK_DGRAM` socket bound to the interface for IPv4. It works before the
//!   interface has an address: it sends whole IPv4/UDP packets we build ([`super::ip`]) to the Ethernet broadcast
//!   address, and receives every IPv4 packet to UDP port 68 on the link, broadcast or unicast to our MAC (a kernel
//!   BPF filter drops the rest before they wake us). Selecting, Requesting, Rebinding and INIT-REBOOT use it.
//! - [`open_unicast`]: a UDP socket bound to the leased address, port 68, with `SO_BINDTODEVICE`, for what goes
//!   unicast to the server (Renewing, DHCPRELEASE). The kernel routes it and resolves the server's MAC, so a
//!   server behind a relay or a changed server MAC needs nothing from us; and with a socket on port 68, a
//!   server's unicast reply is not answered with an ICMP port unreachable. It relies on the network controller
//!   having put the leased address on the interface, which it does on `Bound`, long before T1; without that the
//!   server could not reach us by unicast anyway (it ARPs for the address). `IP_FREEBIND` lets it bind even so.
//!
//! Replies to the leased address arrive on both sockets; the state machine ignores a second copy, since by then it
//! waits for nothing with that xid.

use super::codec::{CLIENT_PORT, SERVER_PORT};
use super::ip;
use nix::libc;
use nix::sys::socket::{
    bind, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, LinkAddr, MsgFlags,
    SockFlag, SockType, SockaddrIn, SockaddrLike,
};
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct SocketError {
    pub op: &'static str,
    #[source]
    pub source: io::Error,
}

fn err(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> SocketError {
    move |e| SocketError { op, source: io::Error::from(e) }
}

/// Room for the largest packet we accept (option 57 says 1500) and then some.
const RECV_BUFFER: usize = 4096;
/// `PACKET_OUTGOING` in `sll_pkttype`: a copy of a packet this host sent.
const PACKET_OUTGOING: u8 = 4;
/// In `tpacket_auxdata.tp_status`: the checksum is to be filled in by hardware offload and is not there yet.
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// Classic BPF over the IPv4 header (a `SOCK_DGRAM` packet socket's offset 0): accept UDP, not a fragment, to
/// port 68; drop everything else.
const FILTER: [libc::sock_filter; 9] = [
    bpf(0x30, 0, 0, 9),                  // 0: ldb [9]             protocol
    bpf(0x15, 0, 6, 17),                 // 1: jeq #17, 2, 8       UDP?
    bpf(0x28, 0, 0, 6),                  // 2: ldh [6]             flags and fragment offset
    bpf(0x45, 4, 0, 0x1fff),             // 3: jset #0x1fff, 8, 4  a fragment (non-zero offset)?
    bpf(0xb1, 0, 0, 0),                  // 4: ldxb 4*([0]&0xf)    x = IPv4 header length
    bpf(0x48, 0, 0, 2),                  // 5: ldh [x+2]           UDP destination port
    bpf(0x15, 0, 1, CLIENT_PORT as u32), // 6: jeq #68, 7, 8
    bpf(0x06, 0, 0, u32::MAX),           // 7: ret #-1             accept the whole packet
    bpf(0x06, 0, 0, 0),                  // 8: ret #0              drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A DHCP payload off the wire, and the IP source it came from.
pub struct Received {
    pub from: Ipv4Addr,
    pub payload: Vec<u8>,
}

pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens the socket on one interface. Needs `CAP_NET_RAW`.
    pub fn open(ifindex: u32) -> Result<PacketSocket, SocketError> {
        // Protocol 0: nothing is received until `bind` names IPv4, by when the filter is in place.
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket(AddressFamily::Packet, SockType::Datagram, flags, None).map_err(err("socket"))?;
        let program = libc::sock_fprog { len: FILTER.len() as u16, filter: FILTER.as_ptr().cast_mut() };
        // SAFETY: `program` points at FILTER, a static array of `len` instructions that the kernel copies.
        set_raw(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
            .map_err(|source| SocketError { op: "attach filter", source })?;
        let one: libc::c_int = 1;
        set_raw(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)
            .map_err(|source| SocketError { op: "PACKET_AUXDATA", source })?;
        let local = link_addr(ifindex, None).ok_or(SocketError { op: "sockaddr_ll", source: invalid_input() })?;
        bind(fd.as_raw_fd(), &local).map_err(err("bind"))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns (and alone closes) the descriptor it registers.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| SocketError { op: "register", source: io::Error::from(e) })?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends a DHCP message from `src`:68 to 255.255.255.255:67, to the Ethernet broadcast address.
    pub async fn send_broadcast(&self, src: Ipv4Addr, payload: &[u8]) -> Result<(), SocketError> {
        let packet = ip::build_udp(src, Ipv4Addr::BROADCAST, CLIENT_PORT, SERVER_PORT, payload)
            .ok_or(SocketError { op: "build packet", source: invalid_input() })?;
        let to = link_addr(self.ifindex, Some([0xff; 6]))
            .ok_or(SocketError { op: "sockaddr_ll", source: invalid_input() })?;
        loop {
            let mut guard = self.fd.writable().await.map_err(|source| SocketError { op: "wait writable", source })?;
            let sent = guard.try_io(|fd| {
                sendto(fd.get_ref().as_raw_fd(), &packet, &to, MsgFlags::empty()).map_err(io::Error::from)
            });
            match sent {
                Ok(result) => return result.map(|_| ()).map_err(|source| SocketError { op: "sendto", source }),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next DHCP payload sent to port 68 on this link. Packets that are not well-formed IPv4/UDP are skipped.
    pub async fn recv(&self) -> Result<Received, SocketError> {
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| SocketError { op: "wait readable", source })?;
            let got = match guard.try_io(|fd| recv_packet(fd.get_ref(), &mut buf)) {
                Ok(result) => result.map_err(|source| SocketError { op: "recvmsg", source })?,
                Err(_would_block) => continue,
            };
            let Some((len, checksum_ready)) = got else {
                continue; // our own packet, or one cut short
            };
            match ip::parse_udp(&buf[..len], CLIENT_PORT, checksum_ready) {
                Ok(udp) => return Ok(Received { from: udp.src, payload: udp.payload.to_vec() }),
                Err(e) => log::debug!("net.dhcp.packet_dropped ifindex={} error={}", self.ifindex, e),
            }
        }
    }
}

/// One packet: its length and whether its UDP checksum can be checked; `None` for a packet to skip.
fn recv_packet(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
    let mut cmsg = nix::cmsg_space!(libc::tpacket_auxdata);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<LinkAddr>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_TRUNC)?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.address.is_some_and(|a| a.pkttype() == PACKET_OUTGOING) {
        return Ok(None);
    }
    let mut checksum_ready = true;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Unknown(u) = c {
            let is_aux =
                u.cmsg_header.cmsg_level == libc::SOL_PACKET && u.cmsg_header.cmsg_type == libc::PACKET_AUXDATA;
            if let (true, Some(status)) = (is_aux, u.data_bytes.get(..4)) {
                let status = u32::from_ne_bytes([status[0], status[1], status[2], status[3]]);
                checksum_ready = status & TP_STATUS_CSUMNOTREADY == 0;
            }
        }
    }
    Ok(Some((msg.bytes, checksum_ready)))
}

/// `sockaddr_ll` for IPv4 on an interface, to a MAC when sending.
fn link_addr(ifindex: u32, mac: Option<[u8; 6]>) -> Option<LinkAddr> {
    // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    if let Some(mac) = mac {
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
    }
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a fully initialised sockaddr_ll of family AF_PACKET and `len` is its size. (nix offers no
    // safe constructor; `from_raw` checks the family and length, which are set right above.)
    unsafe { LinkAddr::from_raw((&raw const sll).cast(), Some(len)) }
}

fn invalid_input() -> io::Error {
    io::Error::from(io::ErrorKind::InvalidInput)
}

/// `setsockopt` for options nix has no wrapper for.
fn set_raw<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live reference to a T of `len` bytes, which the kernel only reads.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket on `addr`:68, bound to the interface, for unicast to the server.
pub fn open_unicast(ifname: &str, addr: Ipv4Addr) -> Result<tokio::net::UdpSocket, SocketError> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(AddressFamily::Inet, SockType::Datagram, flags, None).map_err(err("socket"))?;
    setsockopt(&fd, sockopt::BindToDevice, &ifname.into()).map_err(err("SO_BINDTODEVICE"))?;
    setsockopt(&fd, sockopt::IpFreebind, &true).map_err(err("IP_FREEBIND"))?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(addr, CLIENT_PORT))).map_err(err("bind"))?;
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))
        .map_err(|source| SocketError { op: "register", source })
}

/// Sends a DHCP message to the server's port 67 over a socket from [`open_unicast`].
pub async fn send_unicast(socket: &tokio::net::UdpSocket, server: Ipv4Addr, payload: &[u8]) -> Result<(), SocketError> {
    let to = SocketAddrV4::new(server, SERVER_PORT);
    socket.send_to(payload, to).await.map(|_| ()).map_err(|source| SocketError { op: "sendto", source })
}
