//! Streaming HTTP/1.1 responses for registry pulls: one request per connection (`Connection: close`), the head
//! parsed in full (bounded), the body handed out chunk by chunk (Content-Length, chunked, or until close) so a
//! layer never sits in memory. Every read has an idle deadline. It reuses config/http.rs's URL and TLS pieces;
//! the head and chunk parsers are keel-wire's (`wire/src/http/response.rs`), the one implementation.

use crate::config::http::{HttpError, Url};
use crate::config::tls;
pub use keel_wire::http::{parse_head, Dechunker, Head};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const MAX_HEAD: usize = 64 << 10;
const READ_CHUNK: usize = 64 << 10;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Framing {
    Length(u64),
    Chunked(Dechunker),
    Close,
}

/// A response body being received; [`Body::next`] hands out the next piece.
pub struct Body {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    at: usize,
    framing: Framing,
    idle: Duration,
    name: String,
    eof: bool,
}

impl Body {
    /// The next piece of the body, `None` at its end. A body cut short is an error.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            if self.at < self.buf.len() {
                let input = &self.buf[self.at..];
                let data = match &mut self.framing {
                    Framing::Length(0) => return Ok(None),
                    Framing::Length(left) => {
                        let n = (*left).min(input.len() as u64) as usize;
                        *left -= n as u64;
                        self.at += n;
                        input[..n].to_vec()
                    }
                    Framing::Chunked(d) => {
                        let (used, data) = d.feed(input).map_err(|e| HttpError::Malformed(self.name.clone(), e))?;
                        let data = data.to_vec();
                        self.at += used;
                        data
                    }
                    Framing::Close => {
                        self.at = self.buf.len();
                        input.to_vec()
                    }
                };
                if !data.is_empty() {
                    return Ok(Some(data));
                }
                continue;
            }
            match &self.framing {
                Framing::Length(0) => return Ok(None),
                Framing::Chunked(d) if d.done() => return Ok(None),
                _ => {}
            }
            if self.eof {
                return match self.framing {
                    Framing::Close => Ok(None),
                    _ => Err(HttpError::Malformed(self.name.clone(), "connection closed before the body ended".into())),
                };
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), HttpError> {
        self.buf.resize(READ_CHUNK, 0);
        self.at = 0;
        let read = tokio::time::timeout(self.idle, self.stream.read(&mut self.buf)).await;
        let n = match read {
            Err(_) => return Err(HttpError::Timeout(self.name.clone(), self.idle)),
            Ok(Ok(n)) => n,
            // A TLS server closing without close_notify: the framing (or the digest) tells whether all came.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Ok(Err(e)) => return Err(HttpError::Io(self.name.clone(), e)),
        };
        self.buf.truncate(n);
        self.eof = n == 0;
        Ok(())
    }

    /// The whole body, refused past `max` bytes (manifests, configs, tokens, error texts).
    pub async fn read_all(mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(piece) = self.next().await? {
            if out.len() + piece.len() > max {
                return Err(HttpError::TooLarge(self.name.clone(), max));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

/// Sends `GET url` with `headers` and returns the response head and its body. `connector` is the TLS client for
/// an https:// URL. Connecting, the handshake and the head share `idle`; each body read has its own `idle`.
pub async fn get(
    url: &Url,
    connector: Option<&TlsConnector>,
    headers: &[(&str, String)],
    idle: Duration,
) -> Result<(Head, Body), HttpError> {
    let name = url.to_string();
    let start = async {
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| HttpError::Connect(name.clone(), e))?;
        let mut stream: Box<dyn Io> = match (url.tls, connector) {
            (false, _) => Box::new(tcp),
            (true, None) => return Err(HttpError::Tls(name.clone(), "no TLS client for https".into())),
            (true, Some(c)) => {
                let server_name = tls::server_name(&url.host).map_err(|e| HttpError::Tls(name.clone(), e))?;
                let s = c
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| HttpError::Tls(name.clone(), tls::describe(&e, &url.host)))?;
                Box::new(s)
            }
        };
        let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: keel/{}\r\nConnection: close\r\n",
            url.path,
            url.port,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.map_err(|e| HttpError::Io(name.clone(), e))?;
        stream.flush().await.map_err(|e| HttpError::Io(name.clone(), e))?;
        let mut raw = Vec::new();
        let mut piece = vec![0u8; 8192];
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if raw.len() > MAX_HEAD {
                return Err(HttpError::TooLarge(name.clone(), MAX_HEAD));
            }
            let n = stream.read(&mut piece).await.map_err(|e| HttpError::Io(name.clone(), e))?;
            if n == 0 {
                return Err(HttpError::Malformed(name.clone(), "connection closed inside the headers".into()));
            }
            raw.extend_from_slice(&piece[..n]);
        };
        Ok((stream, raw, end))
    };
    let (stream, mut raw, end) =
        tokio::time::timeout(idle, start).await.map_err(|_| HttpError::Timeout(name.clone(), idle))??;
    let head = parse_head(&raw[..end]).map_err(|e| HttpError::Malformed(name.clone(), e))?;
    let chunked = head.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let framing = if head.status == 204 || head.status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Dechunker::default())
    } else if let Some(len) = head.get("content-length") {
        Framing::Length(
            len.parse().map_err(|_| HttpError::Malformed(name.clone(), format!("bad Content-Length {len:?}")))?,
        )
    } else {
        Framing::Close
    };
    raw.drain(..end + 4);
    Ok((head, Body { stream, buf: raw, at: 0, framing, idle, name, eof: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_bodies_and_refuses_short_ones() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for (reply, want) in [
                (&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"[..], Ok(&b"hello"[..])),
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
                    Ok(b"hello"),
                ),
                (b"HTTP/1.1 200 OK\r\n\r\nhello", Ok(b"hello")),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", Err(())),
            ] {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url =
                    crate::config::http::parse_url(&format!("http://{}/v2/", listener.local_addr().unwrap())).unwrap();
                let server = tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap();
                    s.write_all(reply).await.unwrap();
                    String::from_utf8_lossy(&buf[..n]).to_string()
                });
                let (head, body) =
                    get(&url, None, &[("Range", "bytes=0-".into())], Duration::from_secs(5)).await.unwrap();
                assert_eq!(head.status, 200);
                let got = body.read_all(100).await;
                assert_eq!(got.as_deref().map_err(|_| ()), want);
                let req = server.await.unwrap();
                assert!(req.starts_with("GET /v2/ HTTP/1.1\r\n") && req.contains("\r\nRange: bytes=0-\r\n"), "{req}");
            }
        });
    }
}
