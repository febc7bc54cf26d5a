//! A TCP listener on the host's loopback that the guest reaches as 10.0.2.2:<port>: tests prove the node (or a
//! service it runs) got out by having it connect and send one line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Listens on 127.0.0.1 on a free port (non-blocking, for [`accept_line`]).
pub fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    l.set_nonblocking(true).expect("non-blocking listener");
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    (l, port)
}

/// The first line of the next connection to `l`, if one comes within `timeout`.
pub fn accept_line(l: &TcpListener, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok();
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut line = String::new();
                let _ = BufReader::new(s).read_line(&mut line);
                return Some(line.trim().to_string());
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return None,
        }
    }
}
