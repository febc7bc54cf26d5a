//! Pulling the node config from `keel.config=<url>`: a conditional GET every interval once the network is up,
//! the signature from `<url>.sig` only when the config changed, exponential backoff with jitter on failure, and
//! never giving up. Unchanged bytes are not resubmitted, so a server without ETags does not spam refusals.
//! https:// URLs trust only the CA bundle baked into the image (tls.rs); every failure, TLS ones included, is logged as
//! `config.fetch_failed` and kept in status (`config.pull`) while the node keeps its last good config.

use super::http::{self, Url};
use super::store::Signed;
use super::submit::Submit;
use crate::net::controller::NetStatus;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What status shows of the pull: the URL, how many polls failed in a row and the last failure's reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStatus {
    pub url: Option<String>,
    pub polls: u64,
    pub failures: u32,
    pub last_error: Option<String>,
}

const MAX_BYTES: usize = keel_config::MAX_CONFIG_BYTES;
const TIMEOUT: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The URL with the node's facts substituted.
fn resolve(template: &str, net: &NetStatus, machine_id: &str) -> String {
    let mac = net
        .observed
        .links
        .iter()
        .filter(|l| l.physical)
        .min_by_key(|l| l.index)
        .and_then(|l| l.mac)
        .map(|m| crate::net::model::format_mac(&m))
        .unwrap_or_default();
    http::substitute(template, &[("mac", &mac), ("uuid", machine_id), ("hostname", &net.hostname)])
}

/// When to poll next: the interval after a success, spread ±10% so nodes that started together drift apart
/// (no fleet-wide lockstep), and after a failure the retry policy's doubling backoff (1 s to 5 min, ±20%).
/// Pure apart from its random source, so the fleet bench (`fleet_bench.rs`) drives the node's own schedule with
/// a simulated clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    backoff: crate::retry::Backoff,
    rng: crate::retry::Rng,
}

impl Schedule {
    pub fn new(interval: Duration) -> Schedule {
        Schedule::with(
            interval,
            crate::retry::Backoff::new(Duration::from_secs(1), MAX_BACKOFF),
            crate::retry::Rng::new(),
        )
    }

    #[cfg(test)]
    pub fn seeded(interval: Duration, seed: u64) -> Schedule {
        let backoff = crate::retry::Backoff::seeded(Duration::from_secs(1), MAX_BACKOFF, seed);
        Schedule::with(interval, backoff, crate::retry::Rng::seeded(seed.rotate_left(17) ^ 0x5eed))
    }

    fn with(interval: Duration, backoff: crate::retry::Backoff, rng: crate::retry::Rng) -> Schedule {
        Schedule { interval, backoff, rng }
    }

    /// The wait after a poll that succeeded (`ok`) or failed.
    pub fn next(&mut self, ok: bool) -> Duration {
        if ok {
            self.backoff.succeeded();
            let spread = (self.rng.next_u64() % 201) as f64 / 1000.0 - 0.1; // -0.10 ..= +0.10
            self.interval.mul_f64(1.0 + spread)
        } else {
            self.backoff.failed()
        }
    }
}

/// A node's conditional-GET state for one config URL: the last ETag and body.
#[derive(Debug, Default)]
pub struct Poller {
    etag: Option<String>,
    last_body: Option<Vec<u8>>,
}

impl Poller {
    /// One poll: a conditional GET; when the body changed, its signature too. Some: a config to submit (it
    /// counts as answered from here on, so an unchanged body is never resubmitted).
    pub async fn poll(&mut self, url: &Url) -> Result<Option<Signed>, String> {
        let r = http::get(url, self.etag.as_deref(), TIMEOUT, MAX_BYTES).await.map_err(|e| e.to_string())?;
        match r.status {
            304 => return Ok(None),
            200 => {}
            s => return Err(format!("HTTP status {s}")),
        }
        if self.last_body.as_deref() == Some(r.body.as_slice()) {
            self.etag = r.etag;
            return Ok(None);
        }
        let sig_url = Url { path: format!("{}.sig", url.path), ..url.clone() };
        let sig = http::get(&sig_url, None, TIMEOUT, 64 * 1024).await.map_err(|e| e.to_string())?;
        let sig = match sig.status {
            200 => sig.body,
            // No signature at all: the pipeline refuses it as unsigned, with that reason in status.
            404 => Vec::new(),
            s => return Err(format!("{sig_url}: HTTP status {s}")),
        };
        self.etag = r.etag;
        self.last_body = Some(r.body.clone());
        Ok(Some(Signed { text: r.body, sig }))
    }
}

pub async fn run(
    template: String,
    interval: Duration,
    machine_id: String,
    mut net: watch::Receiver<NetStatus>,
    submit: mpsc::Sender<Submit>,
    status: watch::Sender<PullStatus>,
) {
    let mut schedule = Schedule::new(interval);
    let mut poller = Poller::default();
    loop {
        if net.wait_for(|s| s.ready).await.is_err() {
            log::error!("config.pull_stopped reason=network-controller-gone");
            return;
        }
        let text = resolve(&template, &net.borrow(), &machine_id);
        let url = match http::parse_url(&text) {
            Ok(u) => u,
            Err(e) => {
                log::error!("config.pull_stopped reason=bad-url error={}", crate::logging::q(&e.to_string()));
                return;
            }
        };
        let result = match poller.poll(&url).await {
            Ok(Some(signed)) => {
                crate::metrics::pulled("changed");
                submit_and_wait(&url, signed, &submit).await
            }
            Ok(None) => {
                crate::metrics::pulled("not-modified");
                Ok(())
            }
            Err(e) => Err(e),
        };
        status.send_modify(|s| {
            s.url = Some(url.to_string());
            s.polls += 1;
            match &result {
                Ok(()) => s.failures = 0,
                Err(e) => {
                    crate::metrics::pulled("error");
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some(e.clone());
                }
            }
        });
        let wait = match result {
            Ok(()) => schedule.next(true),
            Err(e) => {
                let wait = schedule.next(false);
                log::warn!(
                    "config.fetch_failed url={url} error={} retry_in_s={:.1}",
                    crate::logging::q(&e),
                    wait.as_secs_f64()
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn submit_and_wait(url: &Url, signed: Signed, submit: &mpsc::Sender<Submit>) -> Result<(), String> {
    let (reply, outcome) = oneshot::channel();
    if submit.send(Submit { source: url.to_string(), signed, reply: Some(reply) }).await.is_err() {
        return Err("the config pipeline is gone".into());
    }
    // Accepted, held for its rollout turn or refused, this body has had its answer.
    let _ = outcome.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The pull, end to end in the process, from a server on the IPv6 loopback named by an IPv6 literal URL.
    #[tokio::test]
    async fn pulls_from_an_ipv6_literal_url() {
        let listener = match tokio::net::TcpListener::bind("[::1]:0").await {
            Ok(l) => l,
            Err(e) => panic!("this test needs the IPv6 loopback: {e}"),
        };
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body: &[u8] = if req.starts_with("GET /n.toml.sig ") { b"SIG" } else { b"CONFIG" };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(body).await.unwrap();
            }
        });
        let net = NetStatus { ready: true, ..NetStatus::default() };
        let (_net_tx, net_rx) = watch::channel(net);
        let (submit, mut inbox) = mpsc::channel(1);
        let (status_tx, status) = watch::channel(PullStatus::default());
        let url = format!("http://[::1]:{port}/n.toml");
        tokio::spawn(run(url, Duration::from_secs(3600), "ab".repeat(16), net_rx, submit, status_tx));
        let got = tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await.unwrap().unwrap();
        assert_eq!((got.signed.text.as_slice(), got.signed.sig.as_slice()), (&b"CONFIG"[..], &b"SIG"[..]));
        assert_eq!(got.source, format!("http://[::1]:{port}/n.toml"));
        if let Some(reply) = got.reply {
            let _ = reply.send(Ok(2));
        }
        let mut status = status;
        let s = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.polls == 1)).await.unwrap();
        assert_eq!(s.unwrap().failures, 0);
    }
}
