//! `container [PORT]`: what an image service sees of itself, as one line: its pid (1 inside its own PID
//! namespace), whether the node's `/var/lib/keel` is visible, whether its root filesystem takes a write, whether
//! `/tmp` does, its host name and uid. With PORT it then answers that line to every HTTP request on it (an
//! image service reached through the node's network).

use std::io::{Read, Write};
use std::process::ExitCode;

fn report() -> String {
    let keel = if std::path::Path::new("/var/lib/keel").exists() { "present" } else { "absent" };
    let writable = |dir: &str| {
        let probe = format!("{dir}/.keel-write-probe");
        match std::fs::write(&probe, b"x") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                "yes"
            }
            Err(_) => "no",
        }
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
    format!(
        "testhelper: container pid={} keel_state={keel} root_writable={} tmp_writable={} hostname={} uid={}",
        std::process::id(),
        writable(""),
        writable("/tmp"),
        hostname.trim(),
        uid.unwrap_or("?")
    )
}

pub fn run(port: Option<&str>) -> ExitCode {
    let line = report();
    println!("{line}");
    let Some(port) = port else { return ExitCode::SUCCESS };
    let listener = match std::net::TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testhelper: listen on {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for mut stream in listener.incoming().flatten() {
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = format!("{line}\n");
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
    ExitCode::SUCCESS
}
