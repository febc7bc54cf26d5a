//! keel-demo: the workload every Keel node runs from its default config (`image/default-node.toml`), to show
//! services end to end. A tiny HTTP/1.1 server, std only, one request at a time:
//!
//! - `GET /` answers `hello from <host name>, config generation <n>`: the node's host name, and the generation
//!   of the config the node runs (the init writes it to `/run/keel/generation` when it applies a config).
//! - `GET /self` shows how this process runs: its ids, capabilities, no_new_privs, open-files limit and its
//!   cgroup's limits (what the init set up for it).
//!
//! Environment: `KEEL_DEMO_PORT` (8080), `KEEL_DEMO_GREETING` ("hello"), `KEEL_DEMO_GENERATION_FILE`
//! (`/run/keel/generation`). It logs one line per request on stdout, which the init tags with the service name.
//!
//! In the image it is not a program of its own: `/usr/libexec/keel-demo` is a link to `/init`, whose `main`
//! runs [`main`] when called by that name (busybox's way: one copy of std and musl in the image, not two: the
//! compressed initramfs is 43 KB smaller, the init 16 KB larger). The `keel-demo` binary (`src/main.rs`) runs it
//! on a host.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn hello(greeting: &str, generation_file: &str) -> String {
    let host = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into());
    let generation = read_trimmed(generation_file).unwrap_or_else(|| "unknown".into());
    format!("{greeting} from {host}, config generation {generation}\n")
}

/// The lines of /proc/self/status, /proc/self/limits and the cgroup files that show this process's privileges.
fn identity() -> String {
    let mut out = String::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let keys =
        ["Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:", "Seccomp:"];
    for line in status.lines().filter(|l| keys.iter().any(|k| l.starts_with(k))) {
        out.push_str(&line.split_whitespace().collect::<Vec<_>>().join(" "));
        out.push('\n');
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(nofile) = limits.lines().find(|l| l.starts_with("Max open files")) {
        out.push_str(&format!("nofile: {}\n", nofile.split_whitespace().nth(3).unwrap_or("?")));
    }
    let cgroup = read_trimmed("/proc/self/cgroup").unwrap_or_default();
    let path = cgroup.strip_prefix("0::").unwrap_or("");
    out.push_str(&format!("cgroup: {path}\n"));
    for file in ["memory.max", "pids.max", "cpu.max"] {
        let value = read_trimmed(&format!("/sys/fs/cgroup{path}/{file}")).unwrap_or_else(|| "-".into());
        out.push_str(&format!("{file}: {value}\n"));
    }
    out
}

/// The request line's method and path, once the headers are in.
fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut words = text.lines().next()?.split_whitespace();
    Some((words.next()?.to_string(), words.next()?.to_string()))
}

fn handle(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let Some((method, path)) = read_request(&mut stream) else { return };
    let (status, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => {
            let greeting = env("KEEL_DEMO_GREETING", "hello");
            ("200 OK", hello(&greeting, &env("KEEL_DEMO_GENERATION_FILE", "/run/keel/generation")))
        }
        ("GET", "/self") => ("200 OK", identity()),
        ("GET", _) => ("404 Not Found", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    println!("{method} {path} from {peer}: {status}");
}

/// Serves until the process is killed; returns only when it cannot listen.
pub fn main() -> ExitCode {
    let port = env("KEEL_DEMO_PORT", "8080");
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("keel-demo: cannot listen on port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("keel-demo listening on 0.0.0.0:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(s) => handle(s),
            Err(e) => eprintln!("keel-demo: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_host_name_and_generation() {
        let dir = std::env::temp_dir().join(format!("keel-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("generation");
        std::fs::write(&file, "7\n").unwrap();
        let host = read_trimmed("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hello("hi", file.to_str().unwrap()), format!("hi from {host}, config generation 7\n"));
        assert!(hello("hi", "/nonexistent").ends_with("config generation unknown\n"));
        let _ = std::fs::remove_dir_all(dir);
        let me = identity();
        assert!(me.contains("NoNewPrivs:") && me.contains("CapEff:") && me.contains("cgroup: "), "{me}");
    }

    #[test]
    fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                handle(listener.accept().unwrap().0);
            }
        });
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            reply
        };
        assert!(get("/").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("/nope").starts_with("HTTP/1.1 404 Not Found\r\n"));
        server.join().unwrap();
    }
}
