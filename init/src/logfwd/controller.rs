//! The log forwarding controller: desired = the config's `[[log.forward]]` collectors; observed = the collectors
//! running; a pure plan says which to stop and which to start; apply does exactly that, so applying the same
//! config twice changes nothing (a running collector keeps its connection and its queue). A collector whose
//! settings changed is replaced. The same task fans every line out to the running collectors and publishes
//! their status (connected, sent, dropped, buffered) for `/v1/status`, `/metrics` and the registry.

use super::dest::{self, Shared};
use super::format::Record;
use keel_config::model::LogForward;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Recent lines kept for a collector configured after they were logged (the boot's lines, typically).
const HISTORY_LINES: usize = 1000;
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The desired collectors of an accepted config, with its generation.
pub type Desired = Option<(u64, Vec<LogForward>)>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFwdStatus {
    /// The config generation whose collectors are running.
    pub generation: Option<u64>,
    pub destinations: Vec<DestStatus>,
    /// Lines lost before reaching any queue (the forwarder fell behind the loggers).
    pub intake_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestStatus {
    pub url: String,
    pub format: &'static str,
    pub connected: bool,
    pub sent: u64,
    /// Lines dropped because the queue was full (oldest first), since the collector was configured.
    pub dropped: u64,
    pub buffered: usize,
    pub buffer_lines: usize,
    pub error: Option<String>,
}

/// What to change: collectors to stop, then collectors to start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub stop: Vec<LogForward>,
    pub start: Vec<LogForward>,
}

/// Pure: the difference between the desired and the running collectors (compared by every setting).
pub fn plan(desired: &[LogForward], running: &BTreeSet<LogForward>) -> Plan {
    let want: BTreeSet<&LogForward> = desired.iter().collect();
    Plan {
        stop: running.iter().filter(|r| !want.contains(r)).cloned().collect(),
        start: want.into_iter().filter(|d| !running.contains(*d)).cloned().collect(),
    }
}

struct Running {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Forwarder {
    machine_id: String,
    running: BTreeMap<LogForward, Running>,
    /// URLs that have had the history once: a replaced collector does not get it again.
    seeded: BTreeSet<String>,
    history: VecDeque<Record>,
    generation: Option<u64>,
}

impl Forwarder {
    fn apply(&mut self, generation: u64, desired: &[LogForward]) {
        let running: BTreeSet<LogForward> = self.running.keys().cloned().collect();
        let p = plan(desired, &running);
        for spec in &p.stop {
            if let Some(r) = self.running.remove(spec) {
                r.task.abort();
                log::info!("logfwd.stopped destination={}", spec.url);
            }
        }
        for spec in p.start {
            let shared = Arc::new(Shared::new(spec.buffer_lines));
            if self.seeded.insert(spec.url.clone()) {
                for r in &self.history {
                    shared.push(r.clone());
                }
            }
            log::info!(
                "logfwd.started destination={} format={} buffer_lines={}",
                spec.url,
                spec.format.as_str(),
                spec.buffer_lines
            );
            let task = tokio::spawn(dest::run(spec.clone(), shared.clone(), self.machine_id.clone()));
            self.running.insert(spec, Running { shared, task });
        }
        self.generation = Some(generation);
    }

    fn fan_out(&mut self, r: Record) {
        for running in self.running.values() {
            running.shared.push(r.clone());
        }
        if self.history.len() >= HISTORY_LINES {
            self.history.pop_front();
        }
        self.history.push_back(r);
    }

    fn status(&self) -> LogFwdStatus {
        LogFwdStatus {
            generation: self.generation,
            destinations: self
                .running
                .iter()
                .map(|(spec, r)| DestStatus {
                    url: spec.url.clone(),
                    format: spec.format.as_str(),
                    connected: r.shared.connected.load(Ordering::Relaxed),
                    sent: r.shared.sent.load(Ordering::Relaxed),
                    dropped: r.shared.dropped.load(Ordering::Relaxed),
                    buffered: r.shared.buffered(),
                    buffer_lines: spec.buffer_lines,
                    error: r.shared.error(),
                })
                .collect(),
            intake_dropped: super::INTAKE_DROPPED.load(Ordering::Relaxed),
        }
    }
}

/// Starts the controller; its status is published on the returned channel.
pub fn start(machine_id: String, desired: watch::Receiver<Desired>) -> watch::Receiver<LogFwdStatus> {
    let (status_tx, status_rx) = watch::channel(LogFwdStatus::default());
    let intake = super::take_intake();
    tokio::spawn(run(machine_id, desired, intake, status_tx));
    status_rx
}

async fn run(
    machine_id: String,
    mut desired: watch::Receiver<Desired>,
    mut intake: Option<mpsc::Receiver<Record>>,
    status: watch::Sender<LogFwdStatus>,
) {
    let mut fwd = Forwarder {
        machine_id,
        running: BTreeMap::new(),
        seeded: BTreeSet::new(),
        history: VecDeque::new(),
        generation: None,
    };
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut config_open = true;
    loop {
        let line = async {
            match intake.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = line => match r {
                Some(r) => fwd.fan_out(r),
                None => intake = None,
            },
            changed = desired.changed(), if config_open => {
                if changed.is_err() {
                    config_open = false;
                    continue;
                }
                let now = desired.borrow_and_update().clone();
                if let Some((generation, wanted)) = now {
                    fwd.apply(generation, &wanted);
                    status.send_replace(fwd.status());
                }
            },
            _ = tick.tick() => {
                let now = fwd.status();
                status.send_if_modified(|s| {
                    let changed = *s != now;
                    if changed {
                        *s = now;
                    }
                    changed
                });
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::model::LogFormat;

    fn spec(url: &str, buffer_lines: usize) -> LogForward {
        LogForward {
            url: url.into(),
            tls: false,
            host: "10.0.2.2".into(),
            port: 5514,
            format: LogFormat::Rfc5424,
            ca: None,
            buffer_lines,
        }
    }

    #[test]
    fn plans_only_the_difference() {
        let a = spec("tcp://a:1", 10);
        let b = spec("tcp://b:1", 10);
        let running: BTreeSet<_> = [a.clone(), b.clone()].into();
        assert_eq!(plan(&[a.clone(), b.clone()], &running), Plan::default(), "the same config changes nothing");
        let b2 = spec("tcp://b:1", 20);
        assert_eq!(plan(&[a.clone(), b2.clone()], &running), Plan { stop: vec![b.clone()], start: vec![b2] });
        assert_eq!(plan(&[], &running), Plan { stop: vec![a.clone(), b], start: vec![] });
        assert_eq!(plan(std::slice::from_ref(&a), &BTreeSet::new()), Plan { stop: vec![], start: vec![a] });
    }

    fn rec(text: &str) -> Record {
        Record {
            at: std::time::SystemTime::UNIX_EPOCH,
            app: "keel".into(),
            facility: 3,
            severity: 6,
            stream: None,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn a_new_collector_gets_the_history_once_and_apply_is_idempotent() {
        let mut fwd = Forwarder {
            machine_id: "m".into(),
            running: BTreeMap::new(),
            seeded: BTreeSet::new(),
            history: VecDeque::new(),
            generation: None,
        };
        fwd.fan_out(rec("boot"));
        // Port 1 on localhost: refused at once; the task retries in the background and the queue keeps lines.
        let mut s = spec("tcp://127.0.0.1:1", 100);
        s.host = "127.0.0.1".into();
        s.port = 1;
        fwd.apply(1, std::slice::from_ref(&s));
        fwd.fan_out(rec("after"));
        let st = fwd.status();
        assert_eq!((st.generation, st.destinations.len(), st.destinations[0].buffered), (Some(1), 1, 2));
        fwd.apply(2, std::slice::from_ref(&s));
        assert_eq!(fwd.status().destinations[0].buffered, 2, "the same collector keeps its queue");
        let mut bigger = s.clone();
        bigger.buffer_lines = 200;
        fwd.apply(3, &[bigger]);
        assert_eq!(fwd.status().destinations[0].buffered, 0, "replaced, without the history a second time");
        fwd.apply(4, &[]);
        assert!(fwd.status().destinations.is_empty());
    }
}
