//! One collector: a bounded queue (the oldest line goes first when it is full) and the task that keeps a
//! connection to the collector and drains the queue into it. A collector that is down, slow or gone only fills
//! its own queue; nothing waits for it. After an outage the first thing sent is a line saying how many lines
//! were dropped. Reconnects follow the one backoff ([`crate::retry::Backoff`]).

use super::format::{self, Identity, Record, DAEMON};
use keel_config::model::{LogFormat, LogForward};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that takes longer means the collector is not reading: treat it as down.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const BATCH: usize = 256;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Lines waiting for the collector.
#[derive(Debug)]
pub struct Queue {
    lines: VecDeque<Record>,
    cap: usize,
    /// Dropped since the collector last heard about drops.
    unreported: u64,
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue { lines: VecDeque::new(), cap: cap.max(1), unreported: 0 }
    }

    /// Appends; returns how many old lines were dropped to make room.
    pub fn push(&mut self, r: Record) -> u64 {
        self.lines.push_back(r);
        self.trim()
    }

    /// Puts a batch that could not be sent back in front, keeping the bound (the oldest go).
    pub fn unsend(&mut self, batch: Vec<Record>) -> u64 {
        for r in batch.into_iter().rev() {
            self.lines.push_front(r);
        }
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let mut dropped = 0;
        while self.lines.len() > self.cap {
            self.lines.pop_front();
            dropped += 1;
        }
        self.unreported += dropped;
        dropped
    }

    /// The next batch; led by a line about the drops when there were any since the last batch.
    pub fn batch(&mut self, url: &str, now: SystemTime) -> Vec<Record> {
        let mut out = Vec::with_capacity(BATCH.min(self.lines.len() + 1));
        if self.unreported > 0 && !self.lines.is_empty() {
            let text = format!("logfwd.dropped destination={url} lines={}", self.unreported);
            out.push(Record { at: now, app: "keel".into(), facility: DAEMON, severity: 4, stream: None, text });
            self.unreported = 0;
        }
        let n = BATCH.min(self.lines.len());
        out.extend(self.lines.drain(..n));
        out
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

/// What the controller and the fan-out share with a collector's task.
#[derive(Debug)]
pub struct Shared {
    pub queue: Mutex<Queue>,
    pub notify: Notify,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(cap: usize) -> Shared {
        Shared {
            queue: Mutex::new(Queue::new(cap)),
            notify: Notify::new(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A poisoned lock only means a panic mid-push; the queue is still consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, r: Record) {
        let dropped = self.queue().push(r);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    pub fn buffered(&self) -> usize {
        self.queue().len()
    }

    pub fn error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(spec: &LogForward) -> Result<Box<dyn Io>, String> {
    let tcp =
        tokio::net::TcpStream::connect((spec.host.as_str(), spec.port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !spec.tls {
        return Ok(Box::new(tcp));
    }
    let connector = match &spec.ca {
        Some(pem) => crate::config::tls::connector(pem.as_bytes(), "log.forward ca")?,
        None => crate::config::tls::image_client().clone()?,
    };
    let name = crate::config::tls::server_name(&spec.host)?;
    let tls = connector.connect(name, tcp).await.map_err(|e| crate::config::tls::describe(&e, &spec.host))?;
    Ok(Box::new(tls))
}

fn encode(batch: &[Record], format: LogFormat, id: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 160);
    for r in batch {
        match format {
            LogFormat::Rfc5424 => format::octet_counted(&format::rfc5424(r, id), &mut out),
            LogFormat::Json => format::json_line(r, id, &mut out),
        }
    }
    out
}

fn identity(machine_id: &str) -> Identity {
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    Identity { machine_id: machine_id.to_string(), hostname }
}

/// Keeps the collector connected and fed, for as long as the controller lets it run (it aborts the task).
pub async fn run(spec: LogForward, shared: Arc<Shared>, machine_id: String) {
    let mut backoff = crate::retry::Backoff::new(BACKOFF_FIRST, BACKOFF_CAP);
    loop {
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&spec)).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                shared.set_error(Some(e));
                None
            }
            Err(_) => {
                shared.set_error(Some(format!("connect: no answer in {}s", CONNECT_TIMEOUT.as_secs())));
                None
            }
        };
        let Some(conn) = conn else {
            let wait = backoff.failed();
            if backoff.failures() == 1 {
                log::warn!(
                    "logfwd.unreachable destination={} error={} retry_s={:.1}",
                    spec.url,
                    crate::logging::q(&shared.error().unwrap_or_default()),
                    wait.as_secs_f64()
                );
            }
            tokio::time::sleep(wait).await;
            continue;
        };
        shared.connected.store(true, Ordering::Relaxed);
        shared.set_error(None);
        log::info!("logfwd.connected destination={} format={}", spec.url, spec.format.as_str());
        let why = feed(conn, &spec, &shared, &machine_id, &mut backoff).await;
        shared.connected.store(false, Ordering::Relaxed);
        log::warn!("logfwd.disconnected destination={} error={}", spec.url, crate::logging::q(&why));
        shared.set_error(Some(why));
        tokio::time::sleep(backoff.failed()).await;
    }
}

/// Sends batches until the connection fails; returns why it ended. A batch that could not be written goes back
/// into the queue (it may then reach the collector twice: at least once, not at most once).
async fn feed(
    conn: Box<dyn Io>,
    spec: &LogForward,
    shared: &Shared,
    machine_id: &str,
    backoff: &mut crate::retry::Backoff,
) -> String {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut scratch = [0u8; 512];
    loop {
        let batch = shared.queue().batch(&spec.url, SystemTime::now());
        if batch.is_empty() {
            // A collector sends nothing: a read that returns is the connection ending, noticed before the next
            // write would be lost in the socket buffer.
            tokio::select! {
                _ = shared.notify.notified() => continue,
                r = rd.read(&mut scratch) => match r {
                    Ok(0) => return "the collector closed the connection".into(),
                    Ok(_) => continue,
                    Err(e) => return format!("read: {e}"),
                },
            }
        }
        let bytes = encode(&batch, spec.format, &identity(machine_id));
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            wr.write_all(&bytes).await?;
            wr.flush().await
        })
        .await;
        let err = match written {
            Ok(Ok(())) => {
                shared.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                backoff.succeeded();
                continue;
            }
            Ok(Err(e)) => format!("write: {e}"),
            Err(_) => format!("write: not accepted in {}s", WRITE_TIMEOUT.as_secs()),
        };
        let dropped = shared.queue().unsend(batch);
        shared.dropped.fetch_add(dropped, Ordering::Relaxed);
        return err;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> Record {
        Record {
            at: SystemTime::UNIX_EPOCH,
            app: "keel".into(),
            facility: DAEMON,
            severity: 6,
            stream: None,
            text: text.into(),
        }
    }

    fn texts(batch: &[Record]) -> Vec<String> {
        batch.iter().map(|r| r.text.clone()).collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_reports_it_first() {
        let mut q = Queue::new(3);
        let dropped: u64 = (0..5).map(|i| q.push(rec(&format!("l{i}")))).sum();
        assert_eq!(dropped, 2);
        let b = q.batch("tcp://c:1", SystemTime::UNIX_EPOCH);
        assert_eq!(texts(&b), ["logfwd.dropped destination=tcp://c:1 lines=2", "l2", "l3", "l4"]);
        assert_eq!(b[0].severity, 4);
        q.push(rec("l5"));
        assert_eq!(texts(&q.batch("tcp://c:1", SystemTime::UNIX_EPOCH)), ["l5"], "reported once");
        assert!(q.batch("x", SystemTime::UNIX_EPOCH).is_empty());
    }

    #[test]
    fn an_unsent_batch_goes_back_in_front_within_the_bound() {
        let mut q = Queue::new(3);
        q.push(rec("a"));
        q.push(rec("b"));
        let b = q.batch("u", SystemTime::UNIX_EPOCH);
        q.push(rec("c"));
        q.push(rec("d"));
        assert_eq!(q.unsend(b), 1);
        assert_eq!(texts(&q.batch("u", SystemTime::UNIX_EPOCH))[1..], ["b", "c", "d"]);
    }

    #[test]
    fn batches_are_bounded() {
        let mut q = Queue::new(1000);
        for i in 0..600 {
            q.push(rec(&i.to_string()));
        }
        assert_eq!(q.batch("u", SystemTime::UNIX_EPOCH).len(), BATCH);
        assert_eq!(q.len(), 600 - BATCH);
    }

    #[test]
    fn encodes_each_format() {
        let id = Identity { machine_id: "m".into(), hostname: "h".into() };
        let rfc = String::from_utf8(encode(&[rec("x"), rec("y")], LogFormat::Rfc5424, &id)).unwrap();
        let first = format::rfc5424(&rec("x"), &id);
        assert!(rfc.starts_with(&format!("{} {first}", first.len())), "{rfc}");
        let json = String::from_utf8(encode(&[rec("x"), rec("y")], LogFormat::Json, &id)).unwrap();
        assert_eq!(json.lines().count(), 2);
    }
}

#[cfg(test)]
#[path = "dest_tests.rs"]
mod socket_tests;
