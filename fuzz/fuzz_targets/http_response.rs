//! HTTP/1.1 responses from any server (keel-wire's `http::parse_response`, as the config pull client runs it,
//! and `parse_head` + `Dechunker`, as the OCI registry client streams a body): never panic, the body limit
//! holds, and the streaming dechunker gives the same body whatever the piece size. URLs the config names
//! (`parse_url`): what parses prints back to a URL that parses to the same thing.
#![no_main]

use keel_wire::http::{parse_head, parse_response, parse_url, Dechunker};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fn dechunk(mut input: &[u8], piece: usize) -> Option<Vec<u8>> {
    let mut d = Dechunker::default();
    let mut out = Vec::new();
    while !d.done() {
        let (used, data) = d.feed(&input[..piece.min(input.len())]).ok()?;
        if used == 0 {
            return None;
        }
        out.extend_from_slice(data);
        input = &input[used..];
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_response(data, MAX) {
        assert!(r.body.len() <= MAX, "body over the limit");
    }
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
    let _ = parse_head(&data[..end]);
    let body = data.get(end + 4..).unwrap_or(&[]);
    let whole = dechunk(body, usize::MAX);
    if let Some(whole) = &whole {
        for piece in [1, 7] {
            assert_eq!(dechunk(body, piece).as_ref(), Some(whole), "piece size {piece} changed the body");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = parse_url(text) {
            assert_eq!(parse_url(&url.to_string()), Ok(url.clone()), "{url} does not parse back");
        }
    }
});
