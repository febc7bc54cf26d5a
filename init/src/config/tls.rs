//! HTTPS for config pulls: a rustls client on the ring provider (chosen explicitly, never a process default) that
//! trusts exactly the CAs baked into the image at /etc/keel/ca.pem — a node has no system trust store — and checks
//! the server's name (a DNS name, or an IP address against the certificate's IP SANs). A failed handshake becomes
//! one line that says what is wrong: no bundle, untrusted issuer, wrong host name, expired.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::{Arc, OnceLock};
use tokio_rustls::TlsConnector;

/// The CA bundle `make image KEEL_CA_BUNDLE=<pem>` bakes into the image.
pub const CA_BUNDLE: &str = "/etc/keel/ca.pem";

/// A client trusting the CA certificates in `pem` (read from `source`); `Err` is why there is none.
pub fn connector(pem: &[u8], source: &str) -> Result<TlsConnector, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA bundle {source} is not valid PEM: {e:?}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA bundle {source} holds no usable CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The client for the bundle at `path` (the image's: [`CA_BUNDLE`]).
pub fn from_bundle(path: &str) -> Result<TlsConnector, String> {
    match std::fs::read(path) {
        Ok(pem) => connector(&pem, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("no CA bundle in the image ({path}); build it with make image KEEL_CA_BUNDLE=<ca.pem>"))
        }
        Err(e) => Err(format!("CA bundle {path}: {e}")),
    }
}

/// The client trusting the image's bundle, made on first use (the root filesystem is read-only, so once is enough).
pub fn image_client() -> &'static Result<TlsConnector, String> {
    static CLIENT: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    CLIENT.get_or_init(|| from_bundle(CA_BUNDLE))
}

/// What the certificate must be valid for: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// One line for a failed TLS connection: what is wrong with the server's certificate, or the TLS error.
pub fn describe(e: &std::io::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake: {e}");
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => format!("untrusted certificate: its issuer is not a CA in {CA_BUNDLE}"),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("wrong host name: the certificate is not valid for {host} ({cert})")
            }
            C::ExpiredContext { time, not_after } => format!(
                "expired certificate: not valid after {}, and the node's clock says {}",
                date(not_after.as_secs()),
                date(time.as_secs())
            ),
            C::Expired => "expired certificate".into(),
            C::NotValidYetContext { time, not_before } => format!(
                "certificate not valid yet: not before {}, and the node's clock says {} (is it right?)",
                date(not_before.as_secs()),
                date(time.as_secs())
            ),
            C::NotValidYet => "certificate not valid yet (is the node's clock right?)".into(),
            C::BadSignature => "bad certificate signature".into(),
            other => format!("invalid certificate: {other}"),
        },
        other => format!("TLS handshake: {other}"),
    }
}

/// `YYYY-MM-DD` (UTC) of Unix seconds.
fn date(secs: u64) -> String {
    let (y, m, d) = keel_config::civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::super::http::{self, HttpError};
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::PrivateKeyDer;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.der().clone(), PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    }

    /// An HTTPS server on 127.0.0.1 answering `count` requests like a config server: 304 when If-None-Match
    /// matches "v1", else the body with ETag "v1". Returns the port and what it saw (request, SNI) per connection.
    async fn serve(
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        count: usize,
    ) -> (u16, tokio::task::JoinHandle<Vec<(String, Option<String>)>>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.0], cert.1)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..count {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    seen.push((String::new(), None));
                    continue;
                };
                let sni = s.get_ref().1.server_name().map(str::to_string);
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "client closed early");
                    req.extend_from_slice(&buf[..n]);
                }
                let req = String::from_utf8_lossy(&req).to_string();
                let reply: &[u8] = if req.contains("If-None-Match: \"v1\"") {
                    b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 9\r\n\r\nsigned-it"
                };
                s.write_all(reply).await.unwrap();
                s.shutdown().await.unwrap();
                seen.push((req, sni));
            }
            seen
        });
        (port, task)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    async fn get(host: &str, port: u16, client: &Result<TlsConnector, String>, etag: Option<&str>) -> http::Response {
        let url = http::parse_url(&format!("https://{host}:{port}/node.toml")).unwrap();
        http::get_with(&url, Some(client), etag, Duration::from_secs(10), 1024).await.unwrap()
    }

    async fn refused(host: &str, port: u16, client: &Result<TlsConnector, String>) -> String {
        let url = http::parse_url(&format!("https://{host}:{port}/node.toml")).unwrap();
        match http::get_with(&url, Some(client), None, Duration::from_secs(10), 1024).await {
            Err(HttpError::Tls(_, why)) => why,
            other => panic!("expected a TLS refusal, got {other:?}"),
        }
    }

    #[test]
    fn trusted_server_by_ip_serves_body_etag_and_304() {
        block_on(async {
            let ca = ca("keel test CA");
            let client = connector(ca.pem.as_bytes(), "test");
            let (port, server) = serve(leaf(&ca, &["127.0.0.1"], false), 2).await;
            let first = get("127.0.0.1", port, &client, None).await;
            assert_eq!(
                (first.status, first.etag.as_deref(), &first.body[..]),
                (200, Some("\"v1\""), &b"signed-it"[..])
            );
            let second = get("127.0.0.1", port, &client, first.etag.as_deref()).await;
            assert_eq!(second.status, 304);
            let seen = server.await.unwrap();
            assert!(seen[0].0.starts_with("GET /node.toml HTTP/1.1\r\n"), "{}", seen[0].0);
            assert!(seen[1].0.contains("If-None-Match: \"v1\"\r\n"), "{}", seen[1].0);
            // No SNI for an IP address (RFC 6066); the IP SAN is what is checked.
            assert_eq!(seen[0].1, None);
        });
    }

    #[test]
    fn trusted_server_by_dns_name_gets_sni() {
        block_on(async {
            let ca = ca("keel test CA");
            let client = connector(ca.pem.as_bytes(), "test");
            let (port, server) = serve(leaf(&ca, &["localhost"], false), 1).await;
            assert_eq!(get("localhost", port, &client, None).await.status, 200);
            assert_eq!(server.await.unwrap()[0].1.as_deref(), Some("localhost"));
        });
    }

    #[test]
    fn untrusted_wrong_name_and_expired_certificates_are_refused_with_the_reason() {
        block_on(async {
            let ours = ca("keel test CA");
            let client = connector(ours.pem.as_bytes(), "test");
            let stranger = ca("someone else");
            let (port, _s) = serve(leaf(&stranger, &["127.0.0.1"], false), 1).await;
            let why = refused("127.0.0.1", port, &client).await;
            assert!(why.starts_with("untrusted certificate"), "{why}");

            let (port, _s) = serve(leaf(&ours, &["cfg.example", "10.9.9.9"], false), 1).await;
            let why = refused("127.0.0.1", port, &client).await;
            assert!(why.starts_with("wrong host name") && why.contains("127.0.0.1"), "{why}");

            let (port, _s) = serve(leaf(&ours, &["127.0.0.1"], true), 1).await;
            let why = refused("127.0.0.1", port, &client).await;
            assert!(why.starts_with("expired certificate: not valid after 2021-01-01"), "{why}");
        });
    }

    #[test]
    fn without_a_bundle_https_fails_with_a_clear_reason_and_http_still_works() {
        let missing = format!("/nonexistent-{}/ca.pem", std::process::id());
        let Err(why) = from_bundle(&missing) else { panic!("a missing bundle must be an error") };
        assert!(why.contains("no CA bundle in the image") && why.contains("KEEL_CA_BUNDLE"), "{why}");
        let Err(why) = connector(b"not a certificate\n", "x.pem") else { panic!("an empty bundle must be an error") };
        assert!(why.contains("no usable CA certificate"), "{why}");
        block_on(async {
            let client = Err(format!("no CA bundle in the image ({missing})"));
            let url = http::parse_url("https://127.0.0.1:1/node.toml").unwrap();
            let r = http::get_with(&url, Some(&client), None, Duration::from_secs(1), 10).await;
            assert!(matches!(&r, Err(HttpError::Tls(_, w)) if w.contains("no CA bundle")), "{r:?}");
        });
    }
}
