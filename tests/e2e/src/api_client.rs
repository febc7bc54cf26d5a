//! HTTPS to a node's API (docs/api.md) from tests and benchmarks, with keelctl's own certificate pinning and
//! HTTP/1.1 code (compiled here from ctl/src/tls.rs and ctl/src/http.rs): one request per connection, as
//! keelctl makes them. Built for many threads at once: the TLS client config is shared.

#[allow(dead_code)]
#[path = "../../../ctl/src/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../../../ctl/src/tls.rs"]
mod tls;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// How errors before the TLS handshake completed begin: the connection never reached an HTTP exchange.
pub const CONNECT: &str = "connect: ";
pub const HANDSHAKE: &str = "TLS handshake: ";

/// A node's API behind a `hostfwd` on 127.0.0.1, its certificate pinned to `fingerprint`.
#[derive(Clone)]
pub struct Api {
    pub port: u16,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl Api {
    /// `fingerprint` as the console printed it (`sha256:…`); `None` trusts any certificate.
    pub fn new(port: u16, fingerprint: Option<&str>) -> Api {
        let (config, _) = tls::client_config(fingerprint.map(str::to_string)).expect("a TLS client config");
        Api { port, config: Arc::new(config), timeout: Duration::from_secs(120) }
    }

    /// One request on a fresh connection: the status and the whole body.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
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
        let mut stream = StreamOwned::new(conn, tcp);
        http::write_request(&mut stream, method, path, "keel-node", body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let mut response =
            http::read_response(BufReader::new(stream)).map_err(|e| format!("{method} {path}: answer: {e}"))?;
        let bytes = response.read_all().map_err(|e| format!("{method} {path}: body: {e}"))?;
        Ok((response.status, bytes))
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
