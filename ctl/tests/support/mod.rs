//! A small in-test node API: HTTPS with a fresh self-signed certificate, just enough of docs/api.md for keelctl,
//! including its credential check (a connection proof over the TLS exporter: 401 without a valid one). Every
//! request is recorded for the test to look at.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use keel_config::credential::{self, Credential};
use keel_config::sshsig::{self, AllowedSigners, PrivateKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MACHINE_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// The key the test node trusts, for configs and commands.
pub fn signer() -> PrivateKey {
    PrivateKey::from_seed([42; 32], "ops@test")
}

pub fn allowed_signers() -> AllowedSigners {
    let line = format!("ops@test namespaces=\"keel-config,keel-command\" {}", signer().public_key().to_openssh());
    AllowedSigners::parse("allowed_signers", &line).unwrap()
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: String,
    /// Who the connection proof named (the principal), when it verified.
    pub who: Option<String>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// `tls12_only`: offer nothing newer, to exercise the TLS 1.2 signature check.
    pub fn start(tls12_only: bool) -> Server {
        let ck = rcgen::generate_simple_self_signed(vec!["keel-node".to_string()]).unwrap();
        let der: CertificateDer<'static> = ck.cert.der().clone();
        let hex: String = Sha256::digest(&der).iter().map(|b| format!("{b:02x}")).collect();
        let fingerprint = format!("sha256:{hex}");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let versions: &[&rustls::SupportedProtocolVersion] =
            if tls12_only { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (recorded, fp) = (requests.clone(), fingerprint.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, recorded, fp) = (config.clone(), recorded.clone(), fp.clone());
                std::thread::spawn(move || {
                    let _ = serve(tcp, config, &recorded, &fp);
                });
            }
        });
        Server { addr, fingerprint, requests }
    }

    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(tcp: TcpStream, config: Arc<ServerConfig>, recorded: &Mutex<Vec<Request>>, fp: &str) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut r = BufReader::new(StreamOwned::new(conn, tcp));
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
    let mut length = 0;
    let mut auth = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("authorization") {
                auth = Some(value.trim().to_string());
            }
        }
    }
    let exporter = r.get_ref().conn.export_keying_material([0u8; 32], credential::EXPORTER_LABEL, None).unwrap();
    let who = auth.as_deref().and_then(|a| match credential::parse(a).ok()? {
        Credential::Proof(sig) => credential::verify_proof(&sig, &exporter, &allowed_signers(), SystemTime::now()).ok(),
        Credential::Metrics(_) => None,
    });
    let who = who.map(|id| id.principal);
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let request = Request { method: method.clone(), path: path.clone(), body: body.clone(), who: who.clone() };
    recorded.lock().unwrap().push(request);
    let mut stream = r.into_inner();
    let mut send = |status: &str, content_type: &str, body: &str| -> std::io::Result<()> {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        stream.conn.send_close_notify();
        stream.flush()
    };
    let json = |v: Value| v.to_string();
    if who.is_none() {
        let v = json!({"error": "unauthenticated", "detail": "this endpoint needs a credential"});
        return send("401 Unauthorized", "application/json", &json(v));
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/status") => send("200 OK", "application/json", &json(status(fp))),
        ("GET", "/v1/config") => send("200 OK", "application/json", &json(running_config())),
        ("PUT", "/v1/config") => {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let config = v["config"].as_str().unwrap_or("");
            if v["signature"].as_str().is_none() {
                send("403 Forbidden", "application/json", &json(refusal("unsigned", "no signature")))
            } else if config.contains("generation = 1\n") {
                let r = refusal("not-newer", "generation 1 is not newer than the running generation 6");
                send("409 Conflict", "application/json", &json(r))
            } else {
                let answer = json!({"accepted": true, "generation": 7, "converged": true});
                send("200 OK", "application/json", &json(answer))
            }
        }
        ("POST", "/v1/reboot") | ("POST", "/v1/poweroff") => {
            let (code, answer) = command(&path[4..], &body);
            send(code, "application/json", &json(answer))
        }
        ("GET", "/v1/logs") => send("200 OK", "text/plain", "keel: boot.start\nkeel: ready\n"),
        ("GET", "/v1/logs?follow=1") => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes())?;
            for l in ["keel: old line\n", "keel: new line\n"] {
                stream.write_all(format!("{:x}\r\n{l}\r\n", l.len()).as_bytes())?;
                stream.flush()?;
                std::thread::sleep(Duration::from_millis(50));
            }
            stream.write_all(b"0\r\n\r\n")?;
            stream.conn.send_close_notify();
            stream.flush()
        }
        _ => send("404 Not Found", "application/json", &json(json!({"error": "not-found", "detail": "no such path"}))),
    }
}

fn refusal(reason: &str, detail: &str) -> Value {
    json!({"accepted": false, "reason": reason, "detail": detail})
}

/// Checks a signed command as a node would (signature for keel-command, action, node, expiry).
fn command(action: &str, body: &str) -> (&'static str, Value) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let (Some(doc), Some(sig)) = (v["command"].as_str(), v["signature"].as_str()) else {
        return ("422 Unprocessable Entity", refusal("malformed", "command and signature are required"));
    };
    if let Err(e) = sshsig::verify(doc.as_bytes(), sig, &allowed_signers(), None, "keel-command", SystemTime::now()) {
        return ("403 Forbidden", refusal("bad-signature", &e.to_string()));
    }
    let field = |k: &str| doc.lines().find_map(|l| l.strip_prefix(&format!("{k} = "))).unwrap_or("").trim_matches('"');
    if field("action") != action {
        return ("409 Conflict", refusal("wrong-action", "the command is for another action"));
    }
    if field("node") != MACHINE_ID {
        return ("409 Conflict", refusal("wrong-node", &format!("the command is for {}", field("node"))));
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let expires: u64 = field("expires").parse().unwrap_or(0);
    if expires <= now || expires > now + 900 || field("nonce").len() < 16 {
        return ("409 Conflict", refusal("expired", "bad expiry or nonce"));
    }
    ("202 Accepted", json!({"accepted": true, "action": action}))
}

fn status(fp: &str) -> Value {
    json!({
        "version": "0.1.0", "machine_id": MACHINE_ID, "hostname": "edge-1", "uptime_s": 75.5,
        "boot": {"ready_uptime_ms": 1210.5, "init_ms": 44.1}, "api": {"fingerprint": fp},
        "config": {"generation": 6, "source": "api", "signer": "ops@test", "converged_generation": 6,
                   "last_rejection": null},
        "controllers": {"sysctl": {"converged": true, "generation": 6, "items": [{"name": "vm.swappiness",
                                                                                 "state": "converged"}]}},
        "network": {"ready": true, "links": [{"name": "eth0", "mac": "52:54:00:12:34:56", "up": true,
                                              "carrier": true, "mtu": 1500}],
                    "addresses": [{"link": "eth0", "address": "10.0.2.15/24", "origin": "dhcp"}],
                    "routes": [{"to": "0.0.0.0/0", "via": "10.0.2.2", "link": "eth0", "metric": 1027,
                                "origin": "dhcp"}],
                    "nameservers": ["10.0.2.3"], "pending": [], "failed": []},
        "time": {"synced": true, "source": "ntp", "offset_ms": 1.5, "server": "10.0.2.2"},
        "something_new": {"the server": "is evolving"}
    })
}

/// As a node answers `GET /v1/config` (keel_config::status::RunningConfig), with only the fields the test needs.
fn running_config() -> Value {
    json!({
        "generation": 6, "source": "api", "signer": "ops",
        "config": {
            "version": 1, "generation": 6, "node": {"hostname": "edge-1"},
            "sysctl": {"vm.swappiness": "60"},
            "file": [{"path": "/run/motd", "content": "hello\n", "mode": "0644", "size": 6}]
        }
    })
}
