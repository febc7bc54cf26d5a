//! One node: dial, TLS with the pinned (or first-use) certificate, a credential bound to the connection, one
//! HTTP request per connection. Every failure is one line that says which node, what went wrong and what to try.

use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;

use crate::http::{self, Head, Response};
use crate::known::{self, KnownNodes, NodeAddr};
use crate::signer::{self, Signer};
use crate::{tls, Failure};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a plain read may wait for its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `PUT /v1/config` answers after the node has applied the config.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Bodies larger than this are sent with `Expect: 100-continue`.
const LARGE_BODY: usize = 1 << 20;

pub type Stream = StreamOwned<ClientConnection, TcpStream>;

/// Where and how to reach a node: `--node`/`KEEL_NODE`, `--fingerprint`, `--known-nodes`/`KEEL_KNOWN_NODES`.
#[derive(Debug)]
pub struct Client {
    pub addr: NodeAddr,
    pub key: String,
    explicit: Option<String>,
    known_path: PathBuf,
    /// `--key`: who proves access (docs/api.md, "Authentication"); else KEEL_KEY, else the ssh-agent's keys.
    auth_key: Option<PathBuf>,
    signers: std::cell::OnceCell<Vec<Signer>>,
}

impl Client {
    pub fn new(
        command: &str,
        node: Option<String>,
        fingerprint: Option<String>,
        known_nodes: Option<PathBuf>,
    ) -> Result<Client, Failure> {
        let node = node.or_else(|| std::env::var("KEEL_NODE").ok().filter(|n| !n.is_empty())).ok_or_else(|| {
            Failure::Usage(format!("{command}: which node? pass --node HOST[:PORT] or set KEEL_NODE"))
        })?;
        let addr = NodeAddr::parse(&node).map_err(|e| Failure::Usage(format!("{command}: {e}")))?;
        let explicit = match fingerprint {
            None => None,
            Some(f) => Some(known::parse_fingerprint(&f).ok_or_else(|| {
                Failure::Usage(format!("{command}: --fingerprint {f:?}: expected sha256:<64 hex>, as the node prints"))
            })?),
        };
        let known_path = KnownNodes::default_path(known_nodes).map_err(Failure::Failed)?;
        let (auth_key, signers) = (None, std::cell::OnceCell::new());
        Ok(Client { key: addr.key(), addr, explicit, known_path, auth_key, signers })
    }

    /// The key that proves access to the node (`--key`).
    pub fn with_key(mut self, key: Option<PathBuf>) -> Client {
        self.auth_key = key;
        self
    }

    fn signers(&self) -> Result<&[Signer], Failure> {
        if self.signers.get().is_none() {
            let found = signer::resolve(self.auth_key.as_deref())?;
            if found.is_empty() {
                return Err(self.fail(
                    "the node API needs a credential: pass --key KEY (a key file, or KEY.pub of an ssh-agent key), \
                     set KEEL_KEY, or ssh-add a key (see keelctl help)",
                ));
            }
            let _ = self.signers.set(found);
        }
        Ok(self.signers.get().map(Vec::as_slice).unwrap_or_default())
    }

    /// The `Authorization` value for this connection: `signer`'s signature over its RFC 9266 exporter.
    fn proof(&self, stream: &Stream, signer: &Signer) -> Result<String, Failure> {
        use keel_config::credential;
        let exporter = stream
            .conn
            .export_keying_material([0u8; 32], credential::EXPORTER_LABEL, None)
            .map_err(|e| self.fail(format!("TLS exporter: {e}")))?;
        let sig = signer
            .sign(&credential::proof_message(&exporter), credential::PROOF_NAMESPACE)
            .map_err(|e| self.fail(e))?;
        Ok(credential::proof_header(&sig))
    }

    pub fn fail(&self, msg: impl std::fmt::Display) -> Failure {
        Failure::Failed(format!("{}: {msg}", self.key))
    }

    fn dial(&self) -> Result<TcpStream, Failure> {
        let addrs = (self.addr.host.as_str(), self.addr.port)
            .to_socket_addrs()
            .map_err(|e| self.fail(format!("cannot resolve {}: {e}; check --node", self.addr.host)))?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let why = match last {
            None => "the name has no address".to_string(),
            Some(e) if e.kind() == ErrorKind::ConnectionRefused => "connection refused".to_string(),
            Some(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())
            }
            Some(e) => format!("cannot connect: {e}"),
        };
        Err(self.fail(format!("{why}; is the node up and the API port forwarded?")))
    }

    /// Dials and completes the TLS handshake, pinning the certificate on first use.
    pub fn connect(&self, read_timeout: Option<Duration>) -> Result<Stream, Failure> {
        let mut known = KnownNodes::load(&self.known_path).map_err(Failure::Failed)?;
        let pin = known.find(&self.key).map_err(Failure::Failed)?;
        let expected = self.explicit.clone().or_else(|| pin.as_ref().map(|p| p.fingerprint.clone()));
        let mut tcp = self.dial()?;
        let timeouts = tcp.set_read_timeout(read_timeout).and_then(|()| tcp.set_write_timeout(Some(WRITE_TIMEOUT)));
        timeouts.map_err(|e| self.fail(e))?;
        let _ = tcp.set_nodelay(true);
        let (config, verifier) = tls::client_config(expected.clone()).map_err(|e| self.fail(e))?;
        let name = ServerName::try_from(self.addr.host.clone())
            .or_else(|_| ServerName::try_from("keel-node"))
            .map_err(|e| self.fail(e))?;
        let mut conn = ClientConnection::new(Arc::new(config), name).map_err(|e| self.fail(e))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(match (verifier.seen(), &expected) {
                    (Some(seen), Some(want)) if seen != *want => match (&self.explicit, &pin) {
                        (None, Some(pin)) => Failure::Failed(known.mismatch_message(&self.key, pin, &seen)),
                        _ => self.fail(format!(
                            "certificate {seen} is not --fingerprint {want}; check the fingerprint on the node's console"
                        )),
                    },
                    _ => self.fail(format!(
                        "TLS handshake failed: {e}; is {} the node's API port (default {})?",
                        self.addr.port,
                        known::DEFAULT_PORT
                    )),
                });
            }
        }
        let seen = verifier.seen().ok_or_else(|| self.fail("TLS handshake finished without a certificate"))?;
        match (&self.explicit, &pin) {
            (Some(_), Some(old)) if old.fingerprint != seen => {
                known.pin(&self.key, &seen, Some(old.line)).map_err(Failure::Failed)?;
                eprintln!(
                    "keelctl: pinned {} {seen} (--fingerprint; replaced {} at {}:{})",
                    self.key,
                    old.fingerprint,
                    known.path.display(),
                    old.line
                );
            }
            (explicit, None) => {
                known.pin(&self.key, &seen, None).map_err(Failure::Failed)?;
                let how = if explicit.is_some() { "--fingerprint" } else { "first use" };
                eprintln!("keelctl: pinned {} {seen} ({how})", self.key);
            }
            _ => {}
        }
        Ok(StreamOwned::new(conn, tcp))
    }

    /// Sends one request and reads the answer's head; the body is left to the caller (it may stream). With
    /// several candidate keys (the agent's), a 401 tries the next on a fresh connection.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        read_timeout: Option<Duration>,
    ) -> Result<Response<BufReader<Stream>>, Failure> {
        let what = format!("{method} {path}");
        let signers = self.signers()?;
        for (i, signer) in signers.iter().enumerate() {
            let mut stream = self.connect(read_timeout)?;
            let auth = self.proof(&stream, signer)?;
            // A large body (an upgrade image) waits for the node's go-ahead: a refused credential costs no upload.
            let expect_continue = body.is_some_and(|b| b.len() > LARGE_BODY);
            let head = Head { auth: Some(&auth), keep_alive: false, expect_continue };
            http::write_request(&mut stream, method, path, &self.key, head, body)
                .map_err(|e| self.io_fail(&what, e))?;
            let mut reader = BufReader::new(stream);
            if let (Some(body), true) = (body, expect_continue) {
                if http::continue_or_answer(&mut reader).map_err(|e| self.io_fail(&what, e))? {
                    let s = reader.get_mut();
                    s.write_all(body).and_then(|()| s.flush()).map_err(|e| self.io_fail(&what, e))?;
                }
            }
            let response = http::read_response(reader).map_err(|e| self.io_fail(&what, e))?;
            if response.status == 401 && i + 1 < signers.len() {
                continue;
            }
            return Ok(response);
        }
        Err(self.fail(format!("{what}: no key to sign with")))
    }

    /// One line for an I/O failure during a request.
    pub fn io_fail(&self, what: &str, e: io::Error) -> Failure {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                self.fail(format!("{what}: no answer in time; is the node overloaded or rebooting? try again"))
            }
            ErrorKind::InvalidData => self.fail(format!("{what}: {e}; is this a Keel node API port?")),
            _ => self.fail(format!("{what}: {e}; the node may be rebooting, try again")),
        }
    }

    /// A request whose answer is JSON: the status and the parsed body (Null when empty).
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        read_timeout: Duration,
    ) -> Result<(u16, Value), Failure> {
        let what = format!("{method} {path}");
        let body = body.map(|b| b.to_string().into_bytes());
        let mut response = self.send(method, path, body.as_deref(), Some(read_timeout))?;
        let bytes = response.read_all().map_err(|e| self.io_fail(&what, e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((response.status, Value::Null));
        }
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok((response.status, v)),
            Err(_) if !(200..300).contains(&response.status) => Err(self.http_error(&what, response.status, &bytes)),
            Err(e) => {
                Err(self.fail(format!("{what}: the answer is not JSON ({e}); is keelctl too old for this node?")))
            }
        }
    }

    /// GET, and anything but 2xx is an error.
    pub fn get_json(&self, path: &str) -> Result<Value, Failure> {
        let (status, v) = self.json("GET", path, None, READ_TIMEOUT)?;
        self.expect_ok(&format!("GET {path}"), status, v)
    }

    pub fn expect_ok(&self, what: &str, status: u16, v: Value) -> Result<Value, Failure> {
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(self.http_error(what, status, v.to_string().as_bytes()))
        }
    }

    /// `HTTP 4xx` with the server's `error` (or `reason`) and `detail`, or the first line of a non-JSON body.
    pub fn http_error(&self, what: &str, status: u16, body: &[u8]) -> Failure {
        let shown = match serde_json::from_slice::<Value>(body) {
            Ok(v) => describe_error(&v),
            Err(_) => String::from_utf8_lossy(body).lines().next().unwrap_or("").chars().take(200).collect(),
        };
        let hint = match status {
            404 | 405 => "; is keelctl newer than the node?",
            400..=499 => "",
            _ => "; see keelctl logs",
        };
        let sep = if shown.is_empty() { "" } else { ": " };
        self.fail(format!("{what}: HTTP {status}{sep}{shown}{hint}"))
    }
}

/// `code: detail` from an error body (`{"error"|"reason": …, "detail": …}`); tolerant of either missing.
pub fn describe_error(v: &Value) -> String {
    let code = v.get("error").or_else(|| v.get("reason")).and_then(Value::as_str);
    let detail = v.get("detail").and_then(Value::as_str);
    match (code, detail) {
        (Some(c), Some(d)) => format!("{c}: {d}"),
        (Some(c), None) => c.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) if v.is_null() => String::new(),
        (None, None) => v.to_string().chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let v: Value = serde_json::from_str(r#"{"error":"not-found","detail":"no such path"}"#).unwrap();
        assert_eq!(describe_error(&v), "not-found: no such path");
        let v: Value = serde_json::from_str(r#"{"accepted":false,"reason":"replayed"}"#).unwrap();
        assert_eq!(describe_error(&v), "replayed");
        assert_eq!(describe_error(&Value::Null), "");
    }

    #[test]
    fn http_errors_are_one_line() {
        let c = Client::new("status", Some("10.0.2.15".into()), None, Some("k".into())).unwrap();
        let e = c.http_error("GET /v1/nope", 404, br#"{"error":"not-found","detail":"no such path"}"#).to_string();
        assert_eq!(
            e,
            "10.0.2.15:7443: GET /v1/nope: HTTP 404: not-found: no such path; is keelctl newer than the node?"
        );
        let e = c.http_error("GET /v1/status", 500, b"boom\nsecond line").to_string();
        assert_eq!(e, "10.0.2.15:7443: GET /v1/status: HTTP 500: boom; see keelctl logs");
    }

    #[test]
    fn node_and_fingerprint_are_checked_up_front() {
        let e = Client::new("status", Some("a b".into()), None, Some("k".into())).unwrap_err();
        assert!(matches!(e, Failure::Usage(_)) && e.to_string().contains("not HOST[:PORT]"), "{e}");
        let e = Client::new("status", Some("n".into()), Some("sha1:00".into()), Some("k".into())).unwrap_err();
        assert!(e.to_string().contains("expected sha256:<64 hex>"), "{e}");
    }

    #[test]
    fn refused_connection_says_what_to_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = Client::new("status", Some(format!("127.0.0.1:{port}")), None, Some("k".into())).unwrap();
        let e = c.connect(None).unwrap_err().to_string();
        assert_eq!(e, format!("127.0.0.1:{port}: connection refused; is the node up and the API port forwarded?"));
    }
}
