//! A small HTTP/1.1 client for pulling node config: one GET per connection (`Connection: close`), conditional on
//! the last ETag, with a bounded body and a deadline for the whole exchange; over TLS for https:// (see tls.rs).
//! Parsing is pure: URLs and responses are keel-wire's (`wire/src/http/`), unit-tested and fuzzed there.

use super::tls;
pub use keel_wire::http::{parse_response, parse_url, Response, Url, UrlError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// Replaces `${name}` with its value for each (name, value); unknown names stay as they are.
pub fn substitute(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: response larger than {1} bytes")]
    TooLarge(String, usize),
    #[error("{0}: malformed response: {1}")]
    Malformed(String, String),
    /// The TLS handshake failed or https cannot be used at all; the text says what is wrong.
    #[error("{0}: {1}")]
    Tls(String, String),
}

/// GET `url`, sending `If-None-Match` when an ETag is known; https:// trusts the CAs baked into the image.
pub async fn get(url: &Url, etag: Option<&str>, timeout: Duration, max: usize) -> Result<Response, HttpError> {
    get_with(url, url.tls.then(tls::image_client), etag, timeout, max).await
}

/// [`get`] with the TLS client for an https:// URL: without one (`Err`), the error is why there is none.
pub async fn get_with(
    url: &Url,
    tls: Option<&Result<TlsConnector, String>>,
    etag: Option<&str>,
    timeout: Duration,
    max: usize,
) -> Result<Response, HttpError> {
    let name = url.to_string();
    let connector = match (url.tls, tls) {
        (false, _) => None,
        (true, Some(Ok(c))) => Some(c.clone()),
        (true, Some(Err(why))) => return Err(HttpError::Tls(name, why.clone())),
        (true, None) => return Err(HttpError::Tls(name, "no TLS client for https".into())),
    };
    let server_name = match connector {
        Some(_) => Some(tls::server_name(&url.host).map_err(|e| HttpError::Tls(name.clone(), e))?),
        None => None,
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| HttpError::Connect(name.clone(), e))?;
        match (connector, server_name) {
            (Some(connector), Some(server_name)) => {
                let stream = connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|e| HttpError::Tls(name.clone(), tls::describe(&e, &url.host)))?;
                exchange(stream, url, &name, etag, max).await
            }
            _ => exchange(stream, url, &name, etag, max).await,
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout(name.clone(), timeout))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &Url,
    name: &str,
    etag: Option<&str>,
    max: usize,
) -> Result<Response, HttpError> {
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: keel/{}\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.port,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(tag) = etag {
        req.push_str(&format!("If-None-Match: {tag}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| HttpError::Io(name.to_string(), e))?;
    stream.flush().await.map_err(|e| HttpError::Io(name.to_string(), e))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS server that closes without close_notify: the response still has to parse in full (its
            // length is checked), and the config it carries is verified by its signature anyway.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(HttpError::Io(name.to_string(), e)),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > max + 16 * 1024 {
            return Err(HttpError::TooLarge(name.to_string(), max));
        }
    }
    parse_response(&raw, max).map_err(|e| HttpError::Malformed(name.to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_node_variables() {
        let vars = [("mac", "52:54:00:12:34:56"), ("uuid", "0a1b"), ("hostname", "keel-0a1b")];
        assert_eq!(
            substitute("http://h/${uuid}/${mac}.toml?h=${hostname}&k=${other}", &vars),
            "http://h/0a1b/52:54:00:12:34:56.toml?h=keel-0a1b&k=${other}"
        );
    }

    #[test]
    fn gets_over_loopback_with_etag() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..2 {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap();
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let reply: &[u8] = if req.contains("If-None-Match: \"v1\"") {
                        b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 4\r\n\r\nbody"
                    };
                    s.write_all(reply).await.unwrap();
                    seen.push(req);
                }
                seen
            });
            let url = parse_url(&format!("http://127.0.0.1:{port}/node.toml")).unwrap();
            let first = get(&url, None, Duration::from_secs(5), 1024).await.unwrap();
            assert_eq!(
                (first.status, first.body.as_slice(), first.etag.as_deref()),
                (200, &b"body"[..], Some("\"v1\""))
            );
            let second = get(&url, first.etag.as_deref(), Duration::from_secs(5), 1024).await.unwrap();
            assert_eq!(second.status, 304);
            let seen = server.await.unwrap();
            assert!(seen[0].starts_with("GET /node.toml HTTP/1.1\r\n"), "{}", seen[0]);
        });
    }

    #[test]
    fn refused_and_silent_servers_are_errors_not_hangs() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let url = parse_url(&format!("http://127.0.0.1:{port}/")).unwrap();
            assert!(matches!(get(&url, None, Duration::from_secs(5), 10).await, Err(HttpError::Connect(..))));
            let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = parse_url(&format!("http://{}/", silent.local_addr().unwrap())).unwrap();
            let r = get(&url, None, Duration::from_millis(200), 10).await;
            assert!(matches!(r, Err(HttpError::Timeout(..))), "{r:?}");
        });
    }
}
