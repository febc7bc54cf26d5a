//! The fleet pull, measured (`make bench`, `BENCH_ONLY=fleet`): 10,000 simulated nodes (`BENCH_FLEET_NODES`) run
//! the node's own pull client — [`Poller`] (conditional GET, then the `.sig` when the body changed, over
//! `http.rs`) and [`Schedule`] (interval ±10%, doubling backoff with ±20% jitter) — in this one process against
//! one real nginx origin (Debian `nginx-light`, started here with its own config on 127.0.0.1; ETag and
//! If-None-Match give 304s) for one simulated hour at the default 30 s interval.
//!
//! Simulated time: a discrete-event loop over whole simulated seconds. Every node due in second t polls in that
//! step, concurrently (at most 256 exchanges at once), and the step ends when all its exchanges are done; the next
//! poll is scheduled at the node's exact due time + the schedule's wait. Every HTTP exchange is real; the origin's
//! figures come from nginx's own access log (status and bytes sent per request), read after each step.
//!
//! The hour: nodes start spread evenly over the first interval (a fleet in steady state); the origin is down from
//! 15:00 to 20:00 (nginx stopped: connections refused) and comes back; generation 2 (no rollout) is published at
//! 30:00; generation 3 with `[rollout] start = <publish time>, duration = "10m"` at 40:00. A node "runs" a
//! generation when the node's own rollout gate ([`super::rollout::gate`]) lets it: at once, or at its slot's time
//! (it holds the config until then, as the pipeline does). Signature checks and applying are not simulated: they
//! cost the node, not the origin.

use super::http::parse_url;
use super::pull::{Poller, Schedule};
use super::rollout::{gate, Gate};
use keel_config::Timestamp;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(30);
const HOUR: u64 = 3600;
const OUTAGE_START: u64 = 900;
const OUTAGE_END: u64 = 1200;
const PUBLISH_PLAIN: u64 = 1800;
const PUBLISH_ROLLOUT: u64 = 2400;
const ROLLOUT_S: u64 = 600;
/// The simulated hour starts at this instant (2026-12-02T12:00:00Z), for the rollout's start time.
const EPOCH: i64 = 1_796_212_800;

struct Origin {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Origin {
    fn new(port: u16) -> Origin {
        let dir = std::env::temp_dir().join(format!("keel-fleet-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).expect("bench dir");
        std::fs::create_dir_all(dir.join("tmp")).expect("bench dir");
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  log_format fleet '$status $bytes_sent';\n  access_log {d}/access.log fleet;\n\
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  default_type application/octet-stream;\n\
               server {{ listen 127.0.0.1:{port}; root {d}/www; etag on; }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        std::fs::write(dir.join("access.log"), "").expect("access.log");
        Origin { dir, port, child: None }
    }

    fn up(&mut self) {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start nginx (apt-get install nginx-light; make setup does): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 20 s: see {}/error.log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: nginx's fast shutdown; the master waits for its worker.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Publishes a config as an operator uploads to any origin: the signature first, then the config.
    fn publish(&self, text: &str) {
        // A stand-in of a real SSHSIG's size: the pipeline, which would verify it, is not simulated.
        std::fs::write(self.dir.join("www/node.toml.sig"), "S".repeat(297)).expect("write sig");
        std::fs::write(self.dir.join("www/node.toml"), text).expect("write config");
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// New lines of nginx's access log since the last read: (requests, 304s, bytes sent).
struct AccessLog {
    path: PathBuf,
    offset: u64,
}

impl AccessLog {
    fn read_new(&mut self) -> (u64, u64, u64) {
        let mut f = std::fs::File::open(&self.path).expect("access log");
        f.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut text = String::new();
        f.read_to_string(&mut text).expect("read access log");
        // Whole lines only; a line nginx is still writing is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        let (mut n, mut not_modified, mut bytes) = (0, 0, 0);
        for line in text[..whole].lines() {
            let mut w = line.split(' ');
            let status = w.next().unwrap_or("");
            n += 1;
            not_modified += u64::from(status == "304");
            bytes += w.next().and_then(|b| b.parse::<u64>().ok()).unwrap_or(0);
        }
        (n, not_modified, bytes)
    }
}

struct Node {
    machine_id: String,
    schedule: Schedule,
    poller: Option<Poller>,
    next_at: f64,
    running: u64,
    /// (generation, simulated second it applies): a config held for its rollout turn.
    held: Option<(u64, f64)>,
    /// Simulated second at which the node began running each generation ≥ 2.
    ran: Vec<(u64, f64)>,
}

fn config(generation: u64, rollout: &str) -> String {
    format!(
        "version = 1\ngeneration = {generation}\n[sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[[file]]\n\
         path = \"/run/motd\"\ncontent = \"generation {generation}\\n\"\n{rollout}"
    )
}

fn rfc3339(sim: u64) -> String {
    Timestamp { unix_seconds: EPOCH + sim as i64 }.to_string()
}

/// What a node does with a config its pull brought: the pipeline's rollout gate, at simulated time `t`.
fn receive(node: &mut Node, text: &[u8], t: f64) {
    let Ok(c) = keel_config::parse_bytes("node.toml", text) else { return };
    if c.generation <= node.running {
        return;
    }
    let now = Timestamp { unix_seconds: EPOCH + t as i64 };
    match gate(c.rollout.as_ref(), &node.machine_id, now) {
        Gate::Now => {
            node.running = c.generation;
            node.held = None;
            node.ran.push((c.generation, t));
        }
        Gate::Wait(at) => node.held = Some((c.generation, (at.unix_seconds - EPOCH) as f64)),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Seconds from `published` until 99% of the nodes ran `generation`.
fn t99(nodes: &[Node], generation: u64, published: u64) -> f64 {
    let mut times: Vec<f64> = nodes
        .iter()
        .filter_map(|n| n.ran.iter().find(|(g, _)| *g == generation).map(|(_, t)| t - published as f64))
        .collect();
    if times.len() * 100 < nodes.len() * 99 {
        return f64::INFINITY;
    }
    times.sort_by(f64::total_cmp);
    times[(nodes.len() * 99).div_ceil(100) - 1]
}

#[test]
#[ignore = "benchmark: run by make bench (BENCH_ONLY=fleet)"]
fn fleet_bench_10000_nodes_one_nginx_origin() {
    let n: usize = std::env::var("BENCH_FLEET_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut origin = Origin::new(port);
    origin.publish(&config(1, ""));
    origin.up();
    let mut log = AccessLog { path: origin.dir.join("access.log"), offset: 0 };
    let url = Arc::new(parse_url(&format!("http://127.0.0.1:{port}/node.toml")).expect("url"));

    let mut ids = crate::retry::Rng::seeded(0x6b65_656c);
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| Node {
            machine_id: format!("{:016x}{:016x}", ids.next_u64(), ids.next_u64()),
            schedule: Schedule::seeded(INTERVAL, i as u64 + 1),
            poller: Some(Poller::default()),
            next_at: INTERVAL.as_secs_f64() * i as f64 / n as f64,
            running: 0,
            held: None,
            ran: Vec::new(),
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    // Per simulated second: (requests, 304s, bytes sent) at the origin.
    let mut per_second = vec![(0u64, 0u64, 0u64); HOUR as usize];
    let began = Instant::now();
    for t in 0..HOUR {
        match t {
            OUTAGE_START => origin.down(),
            OUTAGE_END => origin.up(),
            PUBLISH_PLAIN => origin.publish(&config(2, "")),
            PUBLISH_ROLLOUT => origin.publish(&config(
                3,
                &format!("[rollout]\nstart = {}\nduration = \"{ROLLOUT_S}s\"\n", rfc3339(PUBLISH_ROLLOUT)),
            )),
            _ => {}
        }
        let due: Vec<usize> = (0..n).filter(|&i| nodes[i].next_at < (t + 1) as f64).collect();
        let results = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for &i in &due {
                let mut poller = nodes[i].poller.take().expect("a poller between polls");
                let (url, limit) = (url.clone(), limit.clone());
                set.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let result = poller.poll(&url).await;
                    (i, poller, result)
                });
            }
            let mut out = Vec::with_capacity(due.len());
            while let Some(r) = set.join_next().await {
                out.push(r.expect("a poll task"));
            }
            out
        });
        for (i, poller, result) in results {
            let node = &mut nodes[i];
            node.poller = Some(poller);
            let at = node.next_at;
            if let Ok(Some(signed)) = &result {
                receive(node, &signed.text, at);
            }
            node.next_at = at + node.schedule.next(result.is_ok()).as_secs_f64();
        }
        // Held configs apply at their time, as the pipeline's timer does.
        for node in nodes.iter_mut() {
            if let Some((g, at)) = node.held.filter(|(_, at)| *at < (t + 1) as f64) {
                node.running = g;
                node.held = None;
                node.ran.push((g, at));
            }
        }
        per_second[t as usize] = log.read_new();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (late, _, _) = log.read_new();
    let real = began.elapsed();

    // Steady state: minutes 5..15 (after the start-up spread, before the outage).
    let steady = &per_second[300..900];
    let requests: u64 = steady.iter().map(|s| s.0).sum();
    let bytes: u64 = steady.iter().map(|s| s.2).sum();
    let rps = requests as f64 / steady.len() as f64;
    let mut rates: Vec<f64> = steady.iter().map(|s| s.0 as f64).collect();
    rates.sort_by(f64::total_cmp);
    let total: u64 = per_second.iter().map(|s| s.0).sum::<u64>() + late;
    let nm: u64 = per_second.iter().map(|s| s.1).sum();
    let after = &per_second[OUTAGE_END as usize..OUTAGE_END as usize + 60];
    let after_total: u64 = after.iter().map(|s| s.0).sum();
    let after_peak = after.iter().map(|s| s.0).max().unwrap_or(0);
    let first10: Vec<String> = after[..10].iter().map(|s| s.0.to_string()).collect();
    // The backoff is capped at 5 min ±20%: the fleet comes back over the following minutes, not in one burst.
    let minutes: Vec<String> = (0..7)
        .map(|m| OUTAGE_END as usize + 60 * m)
        .map(|from| per_second[from..from + 60].iter().map(|s| s.0).sum::<u64>().to_string())
        .collect();
    println!(
        "fleet bench nodes={n} interval_s={} simulated_s={HOUR} real_s={:.0}",
        INTERVAL.as_secs(),
        real.as_secs_f64()
    );
    println!(
        "fleet origin steady req_per_s={rps:.0} bytes_per_s={:.0} per_second p1={:.0} p50={:.0} p99={:.0} max={:.0} \
         (a fleet in lockstep would be {n} every 30 s)",
        bytes as f64 / steady.len() as f64,
        percentile(&rates, 0.01),
        percentile(&rates, 0.5),
        percentile(&rates, 0.99),
        rates.last().copied().unwrap_or(0.0)
    );
    println!("fleet origin hour requests={total} share_304={:.3}", nm as f64 / total.max(1) as f64);
    println!(
        "fleet outage {}s..{}s recovery_minute requests={after_total} ({:.0}/s, steady {rps:.0}/s) peak_per_s={after_peak} \
         first_10_s=[{}] per_minute_after=[{}]",
        OUTAGE_START,
        OUTAGE_END,
        after_total as f64 / 60.0,
        first10.join(","),
        minutes.join(",")
    );
    let plain = t99(&nodes, 2, PUBLISH_PLAIN);
    let staged = t99(&nodes, 3, PUBLISH_ROLLOUT);
    println!("fleet rollout t99_s no_rollout={plain:.0} staged_10m={staged:.0}");
    assert!(plain.is_finite() && staged.is_finite(), "the fleet did not reach 99% on a generation");
    assert!(after_peak < n as u64 / 2, "thundering herd: {after_peak} requests in one second after the outage");
}
