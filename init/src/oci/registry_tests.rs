//! The Bearer token flow and redirects against a loopback server speaking the distribution API's auth dance
//! (docker-registry's own token auth needs a JWT-signing token service; the root tests cover Basic with it).

use super::*;
use crate::oci::PullSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers each connection by its request line; returns the requests it saw.
async fn serve(listener: tokio::net::TcpListener, count: usize) -> Vec<String> {
    let port = listener.local_addr().unwrap().port();
    let mut seen = Vec::new();
    for _ in 0..count {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        let line = req.lines().next().unwrap_or("").to_string();
        let reply = if line.starts_with("GET /token?") {
            if req.contains("Authorization: Basic a2VlbDpzM2NyZXQ=") {
                "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"token\":\"tok.123\"}".to_string()
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
            }
        } else if line.starts_with("GET /v2/ns/app/blobs/") && !req.contains("Authorization: Bearer tok.123") {
            // The redirect target: must not see the registry's credentials.
            assert!(!req.contains("Authorization"), "credentials followed a redirect: {req}");
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nblob".to_string()
        } else if req.contains("Authorization: Bearer tok.123") {
            if line.contains("/blobs/") {
                // Redirect to another origin (localhost instead of 127.0.0.1).
                format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{port}/v2/ns/app/blobs/x\r\nContent-Length: 0\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string()
            }
        } else {
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test registry\",scope=\"repository:ns/app:pull\"\r\nContent-Length: 0\r\n\r\n"
            )
        };
        s.write_all(reply.as_bytes()).await.unwrap();
        seen.push(req);
    }
    seen
}

fn spec(port: u16, token: Option<&str>) -> PullSpec {
    let r = Reference::parse(&format!("127.0.0.1:{port}/ns/app@sha256:{}", "a".repeat(64))).unwrap();
    PullSpec { reference: r, plain_http: true, token: token.map(str::to_string), ca_pem: None }
}

#[test]
fn bearer_token_flow_then_redirect_without_credentials() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, 5));
        let mut reg = Registry::new(&spec(port, Some("keel:s3cret"))).unwrap();
        let (head, body) = reg.get("/v2/ns/app/manifests/x".into(), &[]).await.unwrap();
        assert_eq!((head.status, body.read_all(10).await.unwrap()), (200, b"ok".to_vec()));
        let (head, body) = reg.get("/v2/ns/app/blobs/sha256:x".into(), &[]).await.unwrap();
        assert_eq!((head.status, body.read_all(10).await.unwrap()), (200, b"blob".to_vec()));
        let seen = server.await.unwrap();
        assert!(
            seen[0].starts_with("GET /v2/ns/app/manifests/x ") && !seen[0].contains("Authorization"),
            "anonymous first"
        );
        assert!(
            seen[1].starts_with("GET /token?service=test%20registry&scope=repository%3Ans%2Fapp%3Apull "),
            "{}",
            seen[1]
        );
        assert!(seen[2].contains("Authorization: Bearer tok.123"));
        assert!(seen[3].contains("Authorization: Bearer tok.123"), "the token is reused");
        assert!(seen[4].starts_with("GET /v2/ns/app/blobs/x "));
    });
}

#[test]
fn refused_token_is_unauthorized() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, 2));
        let mut reg = Registry::new(&spec(port, Some("keel:wrong"))).unwrap();
        let e = reg.get("/v2/ns/app/manifests/x".into(), &[]).await.err().unwrap();
        assert_eq!(e.code(), "unauthorized", "{e}");
        assert!(e.to_string().contains("token service"), "{e}");
        server.await.unwrap();
    });
}
