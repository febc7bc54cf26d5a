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
