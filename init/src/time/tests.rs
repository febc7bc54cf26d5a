//! Real UDP exchanges on loopback against a tiny fake SNTP server, and the sync task driving a fake clock.
//! Nothing here sets the host's clock or RTC.

use super::schedule::Tuning;
use super::sntp::{self, NtpTimestamp, Packet, SntpError};
use super::sync::run_with;
use super::sync::Clock;
use super::system::ClockError;
use super::{Source, TimeStatus};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy)]
enum Fake {
    /// Answers with its clock `offset_ns` ahead of ours; requests reach it `hold` late (a slow path).
    Offset {
        offset_ns: i64,
        hold: Duration,
    },
    /// Answers, but not to the request we sent.
    WrongOriginate,
    Kiss(&'static [u8; 4]),
    Silent,
}

fn offset(offset_ns: i64) -> Fake {
    Fake::Offset { offset_ns, hold: Duration::ZERO }
}

/// Starts a fake server on 127.0.0.1 and returns its address.
async fn fake_server(behaviour: Fake) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let request = Packet::decode(&buf[..n]).unwrap();
            assert_eq!((request.version, request.mode), (4, 3));
            let (offset_ns, hold) = match behaviour {
                Fake::Offset { offset_ns, hold } => (offset_ns, hold),
                Fake::Silent => continue,
                _ => (0, Duration::ZERO),
            };
            let server_now = || {
                NtpTimestamp::from_unix_nanos(keel_wire::sntp::unix_nanos(SystemTime::now()) + i128::from(offset_ns))
            };
            tokio::time::sleep(hold).await;
            let receive = server_now();
            let mut reply = Packet {
                version: 4,
                mode: 4,
                stratum: 1,
                reference_id: *b"GPS\0",
                originate: request.transmit,
                receive,
                transmit: server_now(),
                ..Packet::default()
            };
            match behaviour {
                Fake::WrongOriginate => reply.originate = NtpTimestamp(request.transmit.0 ^ 1),
                Fake::Kiss(code) => {
                    reply = Packet { stratum: 0, leap: 3, reference_id: *code, ..reply };
                }
                _ => {}
            }
            let _ = socket.send_to(&reply.encode(), peer).await;
        }
    });
    addr
}

fn assert_near(actual: i64, expected: i64, slack: i64) {
    assert!((actual - expected).abs() <= slack, "{actual} is not within {slack} of {expected}");
}

/// How far a measured offset may be from the true one: half the round trip (NTP's own error bound: the path's
/// asymmetry is unknown, and a loaded test machine makes it large), plus a millisecond of rounding.
fn bound(delay_ns: i64) -> i64 {
    delay_ns / 2 + MS
}

/// [`bound`] for a status, whose delay is in milliseconds.
fn status_bound(status: &TimeStatus) -> i64 {
    bound((status.delay_ms.unwrap_or(0.0) * MS as f64) as i64)
}

const MS: i64 = 1_000_000;
const TIMEOUT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn measures_a_known_offset_over_udp() {
    for expected in [1_500 * MS, -250 * MS, 3 * MS] {
        let addr = fake_server(offset(expected)).await;
        let m = sntp::query_server(&addr.to_string(), Duration::from_secs(2), &SystemTime::now).await.unwrap();
        assert_near(m.offset_ns, expected, bound(m.delay_ns));
        assert!((0..2_000 * MS).contains(&m.delay_ns), "delay {}", m.delay_ns);
        assert_eq!((m.addr, m.stratum, m.server), (addr, 1, addr.to_string()));
    }
}

#[tokio::test]
async fn host_names_go_through_the_system_resolver() {
    // `localhost` comes from /etc/hosts; if it lists ::1 first, that address refuses and 127.0.0.1 is tried next.
    let addr = fake_server(offset(700 * MS)).await;
    let m = sntp::query_server(&format!("localhost:{}", addr.port()), TIMEOUT, &SystemTime::now).await.unwrap();
    assert_eq!(m.addr, addr);
    assert_near(m.offset_ns, 700 * MS, bound(m.delay_ns));
}

#[tokio::test]
async fn rejects_a_reply_to_someone_else() {
    let addr = fake_server(Fake::WrongOriginate).await;
    let r = sntp::query_server(&addr.to_string(), TIMEOUT, &SystemTime::now).await;
    assert!(matches!(r, Err(SntpError::Reply(sntp::ReplyError::Originate))), "{r:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let addr = fake_server(Fake::Silent).await;
    let started = std::time::Instant::now();
    let r = sntp::query_server(&addr.to_string(), TIMEOUT, &SystemTime::now).await;
    assert!(matches!(r, Err(SntpError::Timeout(300))), "{r:?}");
    assert!(started.elapsed() >= TIMEOUT && started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_kiss_is_reported_with_its_code() {
    let addr = fake_server(Fake::Kiss(b"RATE")).await;
    let r = sntp::query_server(&addr.to_string(), TIMEOUT, &SystemTime::now).await;
    assert!(matches!(&r, Err(SntpError::Reply(sntp::ReplyError::Kiss(code))) if code == "RATE"), "{r:?}");
}

#[tokio::test]
async fn a_closed_port_fails_without_waiting_forever() {
    // Bound, then dropped: nothing listens. The ICMP port-unreachable must end the query at once: a timeout is a
    // failure, not an accepted outcome.
    let addr = UdpSocket::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let r = sntp::query_server(&addr.to_string(), Duration::from_secs(5), &SystemTime::now).await;
    assert!(
        matches!(&r, Err(SntpError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "expected connection refused, got {r:?}"
    );
}

#[tokio::test]
async fn picks_the_server_with_the_lowest_delay() {
    let slow = fake_server(Fake::Offset { offset_ns: 900 * MS, hold: Duration::from_millis(60) }).await;
    let fast = fake_server(offset(400 * MS)).await;
    let silent = fake_server(Fake::Silent).await;
    let servers = [slow, silent, fast].map(|a| a.to_string());
    let results = sntp::query_all(&servers, TIMEOUT, &SystemTime::now).await;
    assert!(results[1].1.is_err());
    let best = sntp::best(&results).unwrap();
    assert_eq!(best.addr, fast);
    assert_near(best.offset_ns, 400 * MS, bound(best.delay_ns));
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Step(i64),
    Slew(i64),
    WriteRtc,
}

/// Records what the task asks of the clock; its time is the host's, untouched.
#[derive(Clone, Default)]
struct FakeClock {
    actions: Arc<Mutex<Vec<Action>>>,
}

impl FakeClock {
    fn actions(&self) -> Vec<Action> {
        self.actions.lock().unwrap().clone()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn step(&self, offset_ns: i64) -> Result<(), ClockError> {
        self.actions.lock().unwrap().push(Action::Step(offset_ns));
        Ok(())
    }
    fn slew(&self, offset_ns: i64) -> Result<(), ClockError> {
        self.actions.lock().unwrap().push(Action::Slew(offset_ns));
        Ok(())
    }
    fn write_rtc(&self) -> Result<(), ClockError> {
        self.actions.lock().unwrap().push(Action::WriteRtc);
        Ok(())
    }
}

fn tuning() -> Tuning {
    Tuning { query_timeout: TIMEOUT, ..Tuning::default() }
}

struct Running {
    servers: watch::Sender<Vec<String>>,
    status: watch::Receiver<TimeStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the task on `servers`, from a status that says the RTC set the clock.
    fn start(servers: Vec<String>, clock: FakeClock) -> Running {
        let (servers, servers_rx) = watch::channel(servers);
        let (status_tx, status) = watch::channel(TimeStatus { source: Source::Rtc, ..TimeStatus::default() });
        let task = tokio::spawn(async move { run_with(servers_rx, status_tx, clock, tuning()).await });
        Running { servers, status, task }
    }

    /// Waits (up to 5 s) for a status `done` accepts.
    async fn until(&mut self, done: impl FnMut(&TimeStatus) -> bool) -> TimeStatus {
        let status = tokio::time::timeout(Duration::from_secs(5), self.status.wait_for(done)).await;
        status.expect("status in time").expect("task alive").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_large_offset_is_stepped() {
    let addr = fake_server(offset(5_000 * MS)).await;
    let clock = FakeClock::default();
    let status = Running::start(vec![addr.to_string()], clock.clone()).until(|s| s.synced).await;
    let actions = clock.actions();
    let slack = status_bound(&status);
    assert!(matches!(actions[0], Action::Step(ns) if (ns - 5_000 * MS).abs() <= slack), "{actions:?}");
    assert_eq!(actions[1..], [Action::WriteRtc]);
    assert_eq!(
        (status.source, status.server.as_deref(), &status.error),
        (Source::Sntp, Some(&*addr.to_string()), &None)
    );
    assert!((status.offset_ms.unwrap() - 5_000.0).abs() <= slack as f64 / MS as f64);
    assert!(status.last_sync.is_some() && status.delay_ms.is_some());
}

#[tokio::test]
async fn a_small_offset_is_slewed() {
    for expected in [40 * MS, -40 * MS] {
        let addr = fake_server(offset(expected)).await;
        let clock = FakeClock::default();
        let status = Running::start(vec![addr.to_string()], clock.clone()).until(|s| s.synced).await;
        let actions = clock.actions();
        let slack = status_bound(&status);
        assert!(matches!(actions[0], Action::Slew(ns) if (ns - expected).abs() <= slack), "{actions:?}");
        assert!(status.to_string().starts_with("synced=true source=sntp server=127.0.0.1:"));
    }
}

#[tokio::test]
async fn a_kissing_server_is_passed_over() {
    let kiss = fake_server(Fake::Kiss(b"DENY")).await;
    let good = fake_server(offset(-30 * MS)).await;
    let clock = FakeClock::default();
    let servers = vec![kiss.to_string(), good.to_string()];
    let status = Running::start(servers, clock.clone()).until(|s| s.synced).await;
    assert_eq!(status.server, Some(good.to_string()));
    let slack = status_bound(&status);
    assert!(matches!(clock.actions()[..], [Action::Slew(ns), Action::WriteRtc] if (ns + 30 * MS).abs() <= slack));
}

#[tokio::test]
async fn unreachable_servers_are_reported_and_the_clock_left_alone() {
    let silent = fake_server(Fake::Silent).await;
    let clock = FakeClock::default();
    let status = Running::start(vec![silent.to_string()], clock.clone()).until(|s| s.error.is_some()).await;
    assert!(!status.synced);
    assert_eq!(status.source, Source::Rtc, "the clock still holds the RTC's time");
    assert_eq!(status.error.as_deref(), Some(&*format!("{silent}: no reply within 300 ms")));
    assert!(clock.actions().is_empty());
}

#[tokio::test]
async fn without_servers_the_task_waits_for_some() {
    let clock = FakeClock::default();
    let mut running = Running::start(vec![" ".into()], clock.clone());
    let status = running.until(|s| s.error.is_some()).await;
    assert_eq!(status.to_string(), "synced=false source=rtc error=\"no servers configured\"");
    assert!(clock.actions().is_empty());
    let addr = fake_server(offset(10 * MS)).await;
    running.servers.send_replace(vec![addr.to_string()]);
    let status = running.until(|s| s.synced).await;
    assert_eq!(status.server, Some(addr.to_string()));
    assert!(matches!(clock.actions()[..], [Action::Slew(_), Action::WriteRtc]), "{:?}", clock.actions());
}

#[test]
fn status_display_suits_log_lines() {
    let status = TimeStatus {
        synced: true,
        server: Some("pool.ntp.org".into()),
        offset_ms: Some(-1.23456),
        delay_ms: Some(12.5),
        last_sync: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_085_978_496)),
        source: Source::Sntp,
        error: None,
    };
    assert_eq!(
        status.to_string(),
        "synced=true source=sntp server=pool.ntp.org offset_ms=-1.235 delay_ms=12.500 last_sync=2036-02-07T06:28:16Z"
    );
    assert_eq!(TimeStatus::default().to_string(), "synced=false source=none");
    let failed = TimeStatus::after_rtc(&Err(super::rtc::RtcError::Invalid("mon=12".into())));
    assert_eq!(failed.to_string(), "synced=false source=none error=\"rtc holds no valid time: mon=12\"");
    assert_eq!(TimeStatus::after_rtc(&Ok(super::rtc::Boot::Set { rtc: 0 })).source, Source::Rtc);
}
