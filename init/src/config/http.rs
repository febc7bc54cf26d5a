//! A small HTTP/1.1 client for pulling node config: one GET per connection (`Connection: close`), conditional on
//! the last ETag, with a bounded body and a deadline for the whole exchange; over TLS for https:// (see tls.rs).
//! Parsing is pure and unit-tested.

use super::tls;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// https:// (true) or http:// (false).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?}: only http:// and https:// URLs are supported")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: bad port")]
    Port(String),
}

pub fn parse_url(text: &str) -> Result<Url, UrlError> {
    let (tls, rest) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(UrlError::Scheme(text.to_string())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let port = |p: &str| p.parse::<u16>().map_err(|_| UrlError::Port(text.to_string()));
    // `[v6]` or `[v6]:port`; otherwise `host` or `host:port`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((h, "")) => (h, default_port),
            Some((h, rest)) => match rest.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None => return Err(UrlError::Port(text.to_string())),
            },
            None => return Err(UrlError::NoHost(text.to_string())),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (authority, default_port),
        },
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(text.to_string()));
    }
    Ok(Url { tls, host: host.to_string(), port, path: path.to_string() })
}

/// Replaces `${name}` with its value for each (name, value); unknown names stay as they are.
pub fn substitute(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
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

/// Parses a complete response (the server closed the connection). `max` bounds the body.
pub fn parse_response(raw: &[u8], max: usize) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status: u16 =
        parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked, mut etag) = (None, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "etag" => etag = Some(value.to_string()),
            _ => {}
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest, max)?
    } else if let Some(n) = length {
        if n > max {
            return Err(format!("body of {n} bytes is over the {max}-byte limit"));
        }
        rest.get(..n).ok_or("body shorter than Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > max {
        return Err(format!("body over the {max}-byte limit"));
    }
    Ok(Response { status, etag, body })
}

fn dechunk(mut data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line not terminated")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "chunk size is not text")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if out.len() + size > max {
            return Err(format!("body over the {max}-byte limit"));
        }
        out.extend_from_slice(data.get(..size).ok_or("chunk shorter than its size")?);
        data = data.get(size + 2..).ok_or("chunk not terminated")?;
    }
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
    fn parses_urls() {
        assert_eq!(
            parse_url("http://10.0.2.2:8080/nodes/a.toml?x=1"),
            Ok(Url { tls: false, host: "10.0.2.2".into(), port: 8080, path: "/nodes/a.toml?x=1".into() })
        );
        let url = |tls, host: &str, port, path: &str| Ok(Url { tls, host: host.into(), port, path: path.into() });
        assert_eq!(parse_url("http://cfg.example"), url(false, "cfg.example", 80, "/"));
        assert_eq!(parse_url("http://[fd00::1]:81/c"), url(false, "fd00::1", 81, "/c"));
        // An IPv6 literal without a port takes the scheme's.
        assert_eq!(parse_url("http://[fd00::1]/x"), url(false, "fd00::1", 80, "/x"));
        assert_eq!(parse_url("https://[fd00::1]"), url(true, "fd00::1", 443, "/"));
        assert_eq!(parse_url("http://[fd00::1]/x").unwrap().to_string(), "http://[fd00::1]:80/x");
        assert!(matches!(parse_url("http://[fd00::1]x/"), Err(UrlError::Port(_))));
        assert!(matches!(parse_url("http://[fd00::1/"), Err(UrlError::NoHost(_))));
        assert!(matches!(parse_url("http://[]:80/"), Err(UrlError::NoHost(_))));
        assert_eq!(parse_url("https://cfg.example/n.toml"), url(true, "cfg.example", 443, "/n.toml"));
        assert_eq!(parse_url("https://10.0.2.2:8443/n"), url(true, "10.0.2.2", 8443, "/n"));
        assert_eq!(parse_url("https://10.0.2.2:8443/n").unwrap().to_string(), "https://10.0.2.2:8443/n");
        assert_eq!(parse_url("http://[fd00::1]:81/c").unwrap().to_string(), "http://[fd00::1]:81/c");
        assert!(matches!(parse_url("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse_url("http://:80/"), Err(UrlError::NoHost(_))));
        assert!(matches!(parse_url("http://x:99999/"), Err(UrlError::Port(_))));
    }

    #[test]
    fn substitutes_node_variables() {
        let vars = [("mac", "52:54:00:12:34:56"), ("uuid", "0a1b"), ("hostname", "keel-0a1b")];
        assert_eq!(
            substitute("http://h/${uuid}/${mac}.toml?h=${hostname}&k=${other}", &vars),
            "http://h/0a1b/52:54:00:12:34:56.toml?h=keel-0a1b&k=${other}"
        );
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"abc\"\r\n\r\nhello", 100).unwrap();
        assert_eq!(r, Response { status: 200, etag: Some("\"abc\"".into()), body: b"hello".to_vec() });
        let r = parse_response(b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n\r\n", 100).unwrap();
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"hello");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nx", 100).unwrap_err().contains("limit"));
        assert!(parse_response(b"garbage", 100).is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n", 100).unwrap_err().contains("not an HTTP"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100).is_err());
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
