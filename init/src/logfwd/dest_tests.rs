//! A collector task against a real TCP listener on the loopback: lines arrive octet-counted; while the
//! listener is gone the queue keeps the newest lines; when it is back the drop notice comes first, then the kept
//! lines.

use super::*;
use keel_config::model::{LogFormat, LogForward};
use tokio::net::TcpListener;

fn rec(text: &str) -> Record {
    Record {
        at: SystemTime::now(),
        app: "web".into(),
        facility: DAEMON,
        severity: 6,
        stream: Some("stdout"),
        text: text.into(),
    }
}

/// Reads until `want` is in what arrived (bounded wait).
async fn read_until(conn: &mut tokio::net::TcpStream, got: &mut String, want: &str) {
    let mut buf = [0u8; 4096];
    let read = async {
        while !got.contains(want) {
            let n = conn.read(&mut buf).await.expect("read from the forwarder");
            assert!(n > 0, "the forwarder closed the connection; got {got:?}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), read).await.is_err() {
        panic!("{want:?} did not arrive in 30s; got {got:?}");
    }
}

#[tokio::test]
async fn an_outage_keeps_the_newest_lines_and_reports_the_drops_first() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("tcp://127.0.0.1:{port}");
    let spec = LogForward {
        url: url.clone(),
        tls: false,
        host: "127.0.0.1".into(),
        port,
        format: LogFormat::Rfc5424,
        ca: None,
        buffer_lines: 3,
    };
    let shared = Arc::new(Shared::new(3));
    let task = tokio::spawn(run(spec, shared.clone(), "0a1b2c3d4e5f60718293a4b5c6d7e8f9".into()));
    shared.push(rec("first"));
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.expect("accept").expect("accept");
    let mut got = String::new();
    read_until(&mut conn, &mut got, "first").await;
    let msg = got.split_once(' ').map(|(len, rest)| (len.parse::<usize>().ok(), rest.len())).expect("a frame");
    assert_eq!(msg.0, Some(msg.1), "octet count = message length: {got:?}");
    assert!(
        got.contains(" web - - [keel@32473 machine_id=\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\" stream=\"stdout\"] first"),
        "{got}"
    );

    // The collector goes away; the task notices (it reads EOF) before any line is written into the void.
    drop(conn);
    drop(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.connected.load(Ordering::Relaxed) {
        assert!(tokio::time::Instant::now() < deadline, "the closed connection went unnoticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..10 {
        shared.push(rec(&format!("outage-{i}")));
    }
    assert_eq!((shared.buffered(), shared.dropped.load(Ordering::Relaxed)), (3, 7));

    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the same port again");
    let (mut conn, _) =
        tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.expect("reconnect").expect("accept");
    let mut got = String::new();
    read_until(&mut conn, &mut got, "outage-9").await;
    let notice = got.find(&format!("logfwd.dropped destination={url} lines=7")).expect("the drop notice");
    let kept: Vec<usize> =
        ["outage-7", "outage-8", "outage-9"].iter().map(|l| got.find(l).expect("a kept line")).collect();
    assert!(notice < kept[0] && kept[0] < kept[1] && kept[1] < kept[2], "{got}");
    assert!(!got.contains("outage-6"), "dropped lines stay dropped: {got}");
    assert!(got.contains("<28>1 "), "the notice is a warning from keel: {got}");
    assert_eq!(shared.sent.load(Ordering::Relaxed), 1 + 1 + 3);
    task.abort();
}

/// A CA that signs a collector certificate for `127.0.0.1`: (the CA's PEM, the collector's TLS acceptor).
fn tls_collector() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_pem, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn tls_collectors_are_verified_against_the_configured_ca() {
    let (ca_pem, acceptor) = tls_collector();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let spec = LogForward {
        url: format!("tls://127.0.0.1:{port}"),
        tls: true,
        host: "127.0.0.1".into(),
        port,
        format: LogFormat::Json,
        ca: Some(ca_pem),
        buffer_lines: 10,
    };
    let shared = Arc::new(Shared::new(10));
    let task = tokio::spawn(run(spec.clone(), shared.clone(), "m".into()));
    shared.push(rec("over tls"));
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.expect("accept").expect("accept");
    let mut tls = acceptor.accept(tcp).await.expect("the forwarder completes the handshake");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with('\n') {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.expect("a line").expect("read");
        assert!(n > 0, "closed; got {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let v: serde_json::Value = serde_json::from_str(got.trim_end()).expect("one JSON line");
    assert_eq!((v["msg"].as_str(), v["app"].as_str()), (Some("over tls"), Some("web")));
    task.abort();

    // A collector whose certificate the configured CA did not sign is refused, with a reason.
    let (other_ca, _) = tls_collector();
    let (_, acceptor) = tls_collector();
    let untrusted = LogForward { ca: Some(other_ca), ..spec };
    let shared = Arc::new(Shared::new(10));
    let task = tokio::spawn(run(untrusted, shared.clone(), "m".into()));
    let (tcp, _) =
        tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.expect("accept").expect("accept");
    assert!(
        acceptor.accept(tcp).await.is_err(),
        "the forwarder must not finish a handshake with an untrusted collector"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.error().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no error recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!shared.connected.load(Ordering::Relaxed));
    assert!(shared.error().is_some_and(|e| !e.is_empty()), "{:?}", shared.error());
    task.abort();
}
