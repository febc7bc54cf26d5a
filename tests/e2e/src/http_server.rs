//! A tiny HTTP/1.1 file server on the host's loopback for the node to pull config from (the guest reaches it as
//! 10.0.2.2). Files live in memory and change while a test runs; ETags follow the content, If-None-Match gets a
//! 304, and the server can be taken down and brought back on the same port. In https mode
//! ([`FileServer::start_tls`]) it speaks TLS with a certificate that can be swapped while a test runs.

use crate::tls::{self, Identity};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Vec<u8>>>,
    down: AtomicBool,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
    /// Bytes of requests read and responses written for 304 answers (what an idle poll costs).
    idle_bytes: AtomicUsize,
    /// Some: https with this certificate.
    tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
}

pub struct FileServer {
    pub port: u16,
    shared: Arc<Shared>,
}

fn etag(body: &[u8]) -> String {
    // FNV-1a: enough to tell contents apart.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

fn accept(stream: TcpStream, shared: &Shared) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let config = shared.tls.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match config {
        None => serve(&mut { stream }, shared),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else { return };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            // A client that refuses the certificate ends the handshake; serve() then reads nothing.
            serve(&mut tls, shared);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
}

fn serve<S: Read + Write>(stream: &mut S, shared: &Shared) {
    let mut reader = BufReader::new(&mut *stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut request_bytes = request.len();
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => {
                request_bytes += line.len();
                break;
            }
            Ok(_) => {
                request_bytes += line.len();
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("if-none-match") {
                        if_none_match = Some(value.trim().to_string());
                    }
                }
            }
        }
    }
    drop(reader);
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = shared.files.lock().unwrap_or_else(|p| p.into_inner()).get(&path).cloned();
    let reply = match body {
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        Some(body) => {
            let tag = etag(&body);
            if if_none_match.as_deref() == Some(tag.as_str()) {
                shared.not_modified.fetch_add(1, Ordering::SeqCst);
                let r = format!("HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n").into_bytes();
                shared.idle_bytes.fetch_add(request_bytes + r.len(), Ordering::SeqCst);
                r
            } else {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nETag: {tag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            }
        }
    };
    let _ = stream.write_all(&reply);
}

impl FileServer {
    pub fn start() -> FileServer {
        Self::start_with(None)
    }

    /// An https server presenting `id`.
    pub fn start_tls(id: &Identity) -> FileServer {
        Self::start_with(Some(tls::server_config(id)))
    }

    /// From the next connection on, present `id` (https mode only).
    pub fn set_identity(&self, id: &Identity) {
        *self.shared.tls.lock().unwrap_or_else(|p| p.into_inner()) = Some(tls::server_config(id));
    }

    /// On the host's IPv6 loopback: QEMU's user network takes the guest's connections to `[fec0::2]` there.
    pub fn start_ipv6() -> FileServer {
        Self::start_on("[::1]:0", None)
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> FileServer {
        Self::start_on("127.0.0.1:0", tls)
    }

    fn start_on(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FileServer {
        let listener = TcpListener::bind(addr).expect("bind the config server");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let shared = Arc::new(Shared { tls: Mutex::new(tls), ..Shared::default() });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if s.down.load(Ordering::SeqCst) {
                    // Down: drop the connection without an answer, like a server that went away.
                    drop(stream);
                    continue;
                }
                accept(stream, &s);
            }
        });
        FileServer { port, shared }
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.shared.files.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string(), body.into());
    }

    pub fn remove(&self, path: &str) {
        self.shared.files.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }

    /// While down, every connection is closed at once without a response.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn not_modified(&self) -> usize {
        self.shared.not_modified.load(Ordering::SeqCst)
    }

    /// HTTP bytes (request + response, without TCP/IP overhead) of all 304 exchanges so far.
    pub fn idle_bytes(&self) -> usize {
        self.shared.idle_bytes.load(Ordering::SeqCst)
    }
}

/// Signs `text` with an OpenSSH key for `namespace`, as an operator would (`ssh-keygen -Y sign`).
pub fn ssh_sign(text: &str, key: &std::path::Path, namespace: &str) -> Vec<u8> {
    // A directory of its own per call: tests in parallel threads may sign the same text at the same time.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("keel-sign-{}-{call}-{}", std::process::id(), etag(text.as_bytes())));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("node.toml");
    std::fs::write(&file, text).expect("write the config to sign");
    let _ = std::fs::remove_file(dir.join("node.toml.sig"));
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file)
        .output()
        .expect("run ssh-keygen (make setup installs openssh-client)");
    assert!(out.status.success(), "ssh-keygen -Y sign: {}", String::from_utf8_lossy(&out.stderr));
    let sig = std::fs::read(dir.join("node.toml.sig")).expect("read the signature");
    let _ = std::fs::remove_dir_all(&dir);
    sig
}

/// A fresh ed25519 key that no image trusts.
pub fn ssh_keygen(dir: &std::path::Path) -> std::path::PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let key = dir.join("untrusted_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "untrusted", "-f"])
        .arg(&key)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ssh-keygen could not make a key");
    key
}
