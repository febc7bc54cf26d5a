//! HTTPS to a node's API (docs/api.md) from tests and benchmarks, with keelctl's own certificate pinning and
//! HTTP/1.1 code (compiled here from ctl/src/tls.rs and ctl/src/http.rs): one request per connection, as
//! keelctl makes them, or a keep-alive [`Session`]. Requests carry a connection proof signed with the key
//! given to [`Api::with_key`] (none: anonymous). Built for many threads at once: the TLS client config, and
//! with it the cache of TLS sessions to resume, is shared.

#[allow(dead_code)]
#[path = "../../../ctl/src/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../../../ctl/src/tls.rs"]
mod tls;

use keel_config::credential;
use keel_config::sshsig::{sign_signature, HashAlg, PrivateKey};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub type Stream = StreamOwned<ClientConnection, TcpStream>;

/// What a request carries in `Authorization`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Nothing.
    None,
    /// A proof signed for this connection by the [`Api`]'s key.
    Proof,
    /// This exact value (e.g. a proof made for another connection).
    Fixed(String),
}

/// How errors before the TLS handshake completed begin: the connection never reached an HTTP exchange.
pub const CONNECT: &str = "connect: ";
pub const HANDSHAKE: &str = "TLS handshake: ";

/// A node's API behind a `hostfwd` on 127.0.0.1, its certificate pinned to `fingerprint`.
#[derive(Clone)]
pub struct Api {
    pub port: u16,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    key: Option<Arc<PrivateKey>>,
}

impl Api {
    /// `fingerprint` as the console printed it (`sha256:…`); `None` trusts any certificate.
    pub fn new(port: u16, fingerprint: Option<&str>) -> Api {
        let (config, _) = tls::client_config(fingerprint.map(str::to_string)).expect("a TLS client config");
        Api { port, config: Arc::new(config), timeout: Duration::from_secs(120), key: None }
    }

    /// The same node, its requests signed with the OpenSSH key file `key` (unencrypted ed25519).
    pub fn with_key(&self, key: &Path) -> Api {
        let text = std::fs::read_to_string(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let key = PrivateKey::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        Api { key: Some(Arc::new(key)), ..self.clone() }
    }

    /// The same node, each request failing after `timeout` without progress (the default is 120 s).
    pub fn with_timeout(&self, timeout: Duration) -> Api {
        Api { timeout, ..self.clone() }
    }

    /// The same node, anonymous.
    pub fn anonymous(&self) -> Api {
        Api { key: None, ..self.clone() }
    }

    /// Dials and completes the TLS handshake (resuming a cached session when there is one).
    pub fn connect(&self) -> Result<Stream, String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("{CONNECT}{e}"))?;
        tcp.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("keel-node").map_err(|e| e.to_string())?;
        let mut conn = ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut tcp = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| format!("{HANDSHAKE}{e}"))?;
        }
        Ok(StreamOwned::new(conn, tcp))
    }

    /// The proof for `stream` by this client's key (None when anonymous).
    pub fn proof(&self, stream: &Stream) -> Option<String> {
        let key = self.key.as_ref()?;
        let exporter = stream.conn.export_keying_material([0u8; 32], credential::EXPORTER_LABEL, None).ok()?;
        let message = credential::proof_message(&exporter);
        Some(credential::proof_header(&sign_signature(&message, key, credential::PROOF_NAMESPACE, HashAlg::Sha512)))
    }

    /// One request on `stream`, reading the whole answer: (status, body).
    pub fn exchange(
        stream: &mut BufReader<Stream>,
        method: &str,
        path: &str,
        auth: Option<&str>,
        keep_alive: bool,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        let head = http::Head { auth, keep_alive, expect_continue: false };
        http::write_request(stream.get_mut(), method, path, "keel-node", head, body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let mut response = http::read_response(&mut *stream).map_err(|e| format!("{method} {path}: answer: {e}"))?;
        let bytes = response.read_all().map_err(|e| format!("{method} {path}: body: {e}"))?;
        Ok((response.status, bytes))
    }

    /// One request on a fresh connection with `auth`: the status, the whole body, and the header sent.
    pub fn request_auth(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>, Option<String>), String> {
        let stream = self.connect()?;
        let header = match auth {
            Auth::None => None,
            Auth::Proof => Some(self.proof(&stream).ok_or("Auth::Proof needs Api::with_key")?),
            Auth::Fixed(h) => Some(h.clone()),
        };
        let mut stream = BufReader::new(stream);
        let (status, bytes) = Self::exchange(&mut stream, method, path, header.as_deref(), false, body)?;
        Ok((status, bytes, header))
    }

    /// One request on a fresh connection, signed when the client has a key: the status and the whole body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
        let auth = if self.key.is_some() { Auth::Proof } else { Auth::None };
        self.request_auth(method, path, &auth, body).map(|(s, b, _)| (s, b))
    }

    /// A keep-alive connection: one proof, then as many requests as wanted.
    pub fn session(&self) -> Session {
        Session { api: self.clone(), conn: None }
    }

    /// A request whose answer is JSON.
    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, bytes) = self.request(method, path, body.as_deref())?;
        let v = serde_json::from_slice(&bytes).map_err(|e| {
            format!("{method} {path}: HTTP {status}, not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        })?;
        Ok((status, v))
    }

    /// `GET /v1/status`, which must answer 200.
    pub fn status(&self) -> Result<Value, String> {
        match self.json("GET", "/v1/status", None)? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("GET /v1/status: HTTP {s}: {v}")),
        }
    }

    /// `PUT /v1/config` with a config and its armored signature: the status and the answer.
    pub fn push(&self, config: &str, signature: &str) -> Result<(u16, Value), String> {
        self.json("PUT", "/v1/config", Some(&serde_json::json!({"config": config, "signature": signature})))
    }
}

/// Requests on one keep-alive connection (reconnecting, with a fresh proof, when the node closed it).
pub struct Session {
    api: Api,
    conn: Option<(BufReader<Stream>, Option<String>)>,
}

impl Session {
    /// `GET path`: (status, body). A failure on a reused connection is retried once on a new one.
    pub fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let stream = self.api.connect()?;
                let proof = self.api.proof(&stream);
                self.conn = Some((BufReader::new(stream), proof));
            }
            let Some((stream, proof)) = self.conn.as_mut() else { continue };
            match Api::exchange(stream, "GET", path, proof.as_deref(), true, None) {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    self.conn = None;
                    if !reused || attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        Err(format!("GET {path}: no connection"))
    }

    /// `GET /v1/status`, which must answer 200.
    pub fn status(&mut self) -> Result<Value, String> {
        match self.get("/v1/status")? {
            (200, body) => serde_json::from_slice(&body).map_err(|e| format!("GET /v1/status: not JSON: {e}")),
            (s, body) => Err(format!("GET /v1/status: HTTP {s}: {}", String::from_utf8_lossy(&body))),
        }
    }
}
