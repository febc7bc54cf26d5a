//! HTTP/1.1 responses as the node's clients receive them (the config pull client and the OCI registry
//! client): the head (status line and headers), chunked transfer coding fed in pieces, and a whole response
//! framed by chunked coding, Content-Length or the end of the connection.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header of that name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses a response head (status line and headers, without the blank line).
pub fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let head = std::str::from_utf8(raw).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {:?}", status_line.chars().take(80).collect::<String>()));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head { status, headers })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailer(Vec<u8>),
    Done,
}

/// A chunked transfer-coding decoder fed in pieces, as the tar reader is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dechunker(Chunk);

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker(Chunk::Size(Vec::new()))
    }
}

impl Dechunker {
    pub fn done(&self) -> bool {
        self.0 == Chunk::Done
    }

    /// Consumes a prefix of `input`; returns how much and the body bytes in it (possibly none).
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), String> {
        let line = |buf: &mut Vec<u8>, input: &[u8]| -> Result<(usize, bool), String> {
            match input.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    buf.extend_from_slice(&input[..i]);
                    Ok((i + 1, true))
                }
                None if buf.len() + input.len() > 4096 => Err("chunk line longer than 4 KiB".into()),
                None => {
                    buf.extend_from_slice(input);
                    Ok((input.len(), false))
                }
            }
        };
        match &mut self.0 {
            Chunk::Done => Ok((input.len(), &[])),
            Chunk::Size(buf) => {
                let (used, complete) = line(buf, input)?;
                if complete {
                    let text = String::from_utf8_lossy(buf);
                    let hex = text.trim_end_matches('\r').split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {text:?}"))?;
                    self.0 = if size == 0 { Chunk::Trailer(Vec::new()) } else { Chunk::Data(size) };
                }
                Ok((used, &[]))
            }
            Chunk::Data(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.0 = Chunk::DataEnd(0);
                }
                Ok((n, &input[..n]))
            }
            Chunk::DataEnd(seen) => {
                let Some(&b) = input.first() else { return Ok((0, &[])) };
                match (*seen, b) {
                    (0, b'\r') => *seen = 1,
                    (_, b'\n') => self.0 = Chunk::Size(Vec::new()),
                    _ => return Err("chunk not followed by CRLF".into()),
                }
                Ok((1, &[]))
            }
            Chunk::Trailer(buf) => {
                let (used, complete) = line(buf, input)?;
                if complete {
                    if buf.iter().all(|&b| b == b'\r') {
                        self.0 = Chunk::Done;
                    } else {
                        buf.clear();
                    }
                }
                Ok((used, &[]))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

/// Parses a complete response (the server closed the connection): the head with [`parse_head`], the body
/// framed by chunked transfer coding, Content-Length, or the end of the input. `max` bounds the body.
pub fn parse_response(raw: &[u8], max: usize) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = parse_head(&raw[..end])?;
    let rest = &raw[end + 4..];
    let chunked = head.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut d = Dechunker::default();
        let (mut input, mut out) = (rest, Vec::new());
        while !d.done() {
            let (used, data) = d.feed(input)?;
            if used == 0 {
                return Err("chunked body cut short".into());
            }
            if out.len().saturating_add(data.len()) > max {
                return Err(format!("body over the {max}-byte limit"));
            }
            out.extend_from_slice(data);
            input = &input[used..];
        }
        out
    } else if let Some(value) = head.get("content-length") {
        let n = value.parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?;
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
    Ok(Response { status: head.status, etag: head.get("etag").map(str::to_string), body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let h = parse_head(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"x\"\r\nContent-Length: 3")
            .unwrap();
        assert_eq!(h.status, 401);
        assert_eq!(h.get("www-authenticate"), Some("Bearer realm=\"x\""));
        assert_eq!(h.get("content-length"), Some("3"));
        for bad in [&b"SSH-2.0-x"[..], b"HTTP/1.1 abc", b"HTTP/1.1 99 x", b"HTTP/1.1 200 OK\r\nno colon", b"\xff"] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn dechunk_all(input: &[u8], piece: usize) -> Result<Vec<u8>, String> {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        for p in input.chunks(piece) {
            let mut at = 0;
            while at < p.len() {
                let (used, data) = d.feed(&p[at..])?;
                at += used;
                out.extend_from_slice(data);
            }
        }
        if !d.done() {
            return Err("not done".into());
        }
        Ok(out)
    }

    #[test]
    fn dechunks_in_any_split() {
        let body = b"3\r\nhel\r\n2;ext=1\r\nlo\r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
        for piece in [1, 2, 3, 5, 100] {
            assert_eq!(dechunk_all(body, piece).unwrap(), b"hello0123456789", "piece {piece}");
        }
        assert!(dechunk_all(b"zz\r\n", 4).is_err());
        assert!(dechunk_all(b"3\r\nhelXX0\r\n\r\n", 4).is_err());
        assert!(dechunk_all(b"3\r\nhel\r\n", 4).is_err(), "no last chunk");
        assert!(dechunk_all(&[b'1'; 5000], 64).is_err(), "endless size line");
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
    fn huge_chunk_sizes_and_cut_bodies_are_errors() {
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
        assert!(parse_response(huge, 100).is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(parse_response(cut, 100).unwrap_err().contains("cut short"));
        let long = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(parse_response(long, 100).unwrap_err().contains("Content-Length"));
    }
}
