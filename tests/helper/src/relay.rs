//! - `proxy LISTEN TARGET`: relays every TCP connection to LISTEN on to TARGET (a partner node that passes the
//!   host's config server on to a node that can reach it only over a bond and a VLAN).
//! - `connect-loop ADDR`: connects to ADDR every 200 ms for good, printing each outcome with a running count, so a
//!   test sees traffic before and after it cuts a link.

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn relay(client: TcpStream, target: &str) -> std::io::Result<()> {
    let upstream = TcpStream::connect(target)?;
    let (c2, u2) = (client.try_clone()?, upstream.try_clone()?);
    std::thread::spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    Ok(())
}

pub fn proxy(listen: &str, target: &str) -> ExitCode {
    // The address appears when the network is configured: retry the bind for a while.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(listen) {
            Ok(l) => break l,
            Err(e) if tries >= 600 => {
                eprintln!("testhelper: proxy bind {listen}: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    println!("testhelper: proxy listening={listen} target={target}");
    for client in listener.incoming().flatten() {
        let target = target.to_string();
        std::thread::spawn(move || {
            if let Err(e) = relay(client, &target) {
                eprintln!("testhelper: proxy to {target}: {e}");
            }
        });
    }
    ExitCode::FAILURE
}

pub fn connect_loop(addr: &str) -> ExitCode {
    let Ok(target) = addr.parse() else {
        eprintln!("testhelper: {addr} is not ADDR:PORT");
        return ExitCode::from(2);
    };
    let (mut ok, mut failed) = (0u64, 0u64);
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(_) => {
                ok += 1;
                println!("testhelper: connect-loop ok={ok} failed={failed}");
            }
            Err(e) => {
                failed += 1;
                // Every failure would flood the console while the network comes up: one line in ten.
                if failed % 10 == 1 {
                    println!("testhelper: connect-loop error={e:?} ok={ok} failed={failed}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
