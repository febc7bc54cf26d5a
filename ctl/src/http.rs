//! A small HTTP/1.1 client over any byte stream: one request per connection (`Connection: close`, as keelctl
//! makes them) or several (keep-alive, as the load test and bench make them), answers
//! framed by Content-Length, chunked transfer coding, or the end of the stream. The body is an [`io::Read`], so
//! `logs -f` streams chunks as they come. Errors are plain messages; the caller adds which node and what to do.

use std::io::{self, BufRead, Read, Write};

/// The most an answer's head (status line and headers) may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most [`Response::read_all`] collects; a node's answers are far smaller (requests are capped at 1 MiB).
pub const MAX_BODY: u64 = 16 << 20;

/// What goes into a request's head besides the method, path and host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Head<'a> {
    /// The `Authorization` value (docs/api.md, "Authentication").
    pub auth: Option<&'a str>,
    /// Keep the connection open for another request (else `Connection: close`).
    pub keep_alive: bool,
    /// Send `Expect: 100-continue` and leave the body out: the caller sends it after [`continue_or_answer`]
    /// says the node wants it (a refusal then costs no upload).
    pub expect_continue: bool,
}

/// Writes one request. `host` is what the Host header names (`10.0.2.15:7443`).
pub fn write_request<W: Write>(
    w: &mut W,
    method: &str,
    path: &str,
    host: &str,
    h: Head<'_>,
    body: Option<&[u8]>,
) -> io::Result<()> {
    let connection = if h.keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keelctl/{}\r\nAccept: */*\r\nConnection: {connection}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(auth) = h.auth {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    if h.expect_continue {
        head.push_str("Expect: 100-continue\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if let (Some(body), false) = (body, h.expect_continue) {
        w.write_all(body)?;
    }
    w.flush()
}

/// After a request sent with `expect_continue`: true when the node answered `100 Continue` (consumed: send the
/// body now), false when its final answer came instead (left for [`read_response`]).
pub fn continue_or_answer<R: BufRead>(r: &mut R) -> io::Result<bool> {
    let buffered = r.fill_buf()?;
    if buffered.is_empty() {
        return Err(truncated());
    }
    if !buffered.starts_with(b"HTTP/1.1 100") && !buffered.starts_with(b"HTTP/1.0 100") {
        return Ok(false);
    }
    let mut budget = MAX_HEAD;
    read_line(r, &mut budget)?;
    while !read_line(r, &mut budget)?.is_empty() {}
    Ok(true)
}

/// An answer whose head has been read; [`Response::body`] reads the rest.
pub struct Response<R> {
    pub status: u16,
    pub body: Body<R>,
}

impl<R: BufRead> Response<R> {
    /// The whole body, at most [`MAX_BODY`] bytes.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self.body).take(MAX_BODY + 1).read_to_end(&mut out)?;
        if out.len() as u64 > MAX_BODY {
            return Err(invalid(format!("answer larger than {MAX_BODY} bytes")));
        }
        Ok(out)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed in the middle of the answer")
}

/// One CRLF- (or LF-) terminated line, without its terminator; `budget` bounds what the head may still take.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(if n > *budget { invalid("answer head too large") } else { truncated() });
    }
    *budget -= n;
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("answer head is not text"))
}

/// The CRLF (or LF) after a chunk's data.
fn end_of_chunk<R: BufRead>(r: &mut R) -> io::Result<()> {
    let mut byte = [0u8; 1];
    for expected in [b'\r', b'\n'] {
        r.read_exact(&mut byte).map_err(|_| truncated())?;
        if byte[0] == b'\n' {
            return Ok(());
        }
        if byte[0] != expected {
            return Err(invalid("chunk longer than its size"));
        }
    }
    Ok(())
}

/// Reads the status line and headers (skipping any 1xx interim answers) and sets up the body framing.
pub fn read_response<R: BufRead>(mut r: R) -> io::Result<Response<R>> {
    loop {
        let mut budget = MAX_HEAD;
        let status_line = read_line(&mut r, &mut budget)?;
        let mut words = status_line.splitn(3, ' ');
        let (version, code) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            let shown: String = status_line.chars().take(60).collect();
            return Err(invalid(format!("not an HTTP/1.1 answer: {shown:?}")));
        }
        let status: u16 = code.parse().map_err(|_| invalid(format!("bad HTTP status {code:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut r, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let find = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.as_str());
        let chunked = find("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let framing = if status == 204 || status == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked { left: 0, done: false }
        } else if let Some(len) = find("content-length") {
            Framing::Length(len.parse().map_err(|_| invalid(format!("bad Content-Length {len:?}")))?)
        } else {
            Framing::Eof
        };
        return Ok(Response { status, body: Body { inner: r, framing } });
    }
}

enum Framing {
    /// Bytes still to come.
    Length(u64),
    /// Bytes left in the current chunk; `done` after the last chunk and trailers.
    Chunked { left: u64, done: bool },
    /// Until the server closes the connection.
    Eof,
}

/// The body of an answer, decoded from its framing.
pub struct Body<R> {
    inner: R,
    framing: Framing,
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Eof => match self.inner.read(buf) {
                // A TLS peer that closes without close_notify: with no length to check against, that is the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let mut budget = MAX_HEAD;
                    let size_line = read_line(&mut self.inner, &mut budget)?;
                    let size = size_line.split(';').next().unwrap_or("").trim();
                    *left =
                        u64::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
                    if *left == 0 {
                        while !read_line(&mut self.inner, &mut budget)?.is_empty() {}
                        *done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                *left -= n as u64;
                if *left == 0 {
                    end_of_chunk(&mut self.inner)?;
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> io::Result<(u16, Vec<u8>)> {
        let mut r = read_response(raw.as_bytes())?;
        let body = r.read_all()?;
        Ok((r.status, body))
    }

    #[test]
    fn request_has_length_host_and_close() {
        let mut out = Vec::new();
        write_request(&mut out, "PUT", "/v1/config", "10.0.2.15:7443", Head::default(), Some(b"{}")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("PUT /v1/config HTTP/1.1\r\nHost: 10.0.2.15:7443\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n") && text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
        let mut out = Vec::new();
        let h = Head { auth: Some("Keel-SSHSIG AAAA"), keep_alive: true, expect_continue: false };
        write_request(&mut out, "GET", "/v1/status", "n:1", h, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Content-Length"));
        assert!(text.contains("\r\nAuthorization: Keel-SSHSIG AAAA\r\n") && text.contains("Connection: keep-alive"));
    }

    #[test]
    fn expect_continue_leaves_the_body_for_later() {
        let mut out = Vec::new();
        let h = Head { expect_continue: true, ..Head::default() };
        write_request(&mut out, "PUT", "/v1/upgrade", "n:1", h, Some(b"IMAGE")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Length: 5\r\nExpect: 100-continue\r\n\r\n") && !text.contains("IMAGE"),
            "{text}"
        );
        let mut r =
            io::BufReader::new(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
        assert!(continue_or_answer(&mut r).unwrap());
        assert_eq!(read_response(r).unwrap().status, 200);
        let mut r = io::BufReader::new(&b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"[..]);
        assert!(!continue_or_answer(&mut r).unwrap());
        assert_eq!(read_response(r).unwrap().status, 401);
    }

    #[test]
    fn content_length() {
        let (status, body) = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
        let (_, body) = parse("HTTP/1.1 200 OK\r\ncontent-length:3\r\nContent-Type: text/plain\r\n\r\nabc").unwrap();
        assert_eq!(body, b"abc");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let raw =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\nT: v\r\n\r\n";
        assert_eq!(parse(raw).unwrap().1, b"hello, world");
        let lf_only = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\na\n0123456789\n0\n\n";
        assert_eq!(parse(lf_only).unwrap().1, b"0123456789");
    }

    #[test]
    fn until_close_and_interim_answers() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nno such thing";
        assert_eq!(parse(raw).unwrap(), (404, b"no such thing".to_vec()));
        assert_eq!(parse("HTTP/1.1 204 No Content\r\n\r\n").unwrap(), (204, vec![]));
    }

    #[test]
    fn broken_answers_are_errors() {
        let cases = [
            ("", "closed in the middle"),
            ("SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP/1.1 answer"),
            ("HTTP/1.1 2x0 OK\r\n\r\n", "bad HTTP status"),
            ("HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed in the middle"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", "longer than its size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed in the middle"),
            ("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        ];
        for (raw, want) in cases {
            let e = parse(raw).unwrap_err().to_string();
            assert!(e.contains(want), "{raw:?}: {e}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(parse(&huge).unwrap_err().to_string().contains("head too large"));
    }

    #[test]
    fn chunks_stream_one_at_a_time() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline1\n\r\n6\r\nline2\n\r\n";
        let mut r = read_response(raw.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = r.body.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"line1\n");
        let n = r.body.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"line2\n");
        // The stream ends without the last chunk: the node went away.
        assert_eq!(r.body.read(&mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
