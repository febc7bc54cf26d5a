//! The log forwarding controller, one kind on the one runner (`controller::runner`): desired = the config's
//! `[[log.forward]]` collectors; observed = the collectors running; the pure plan stops the ones no longer
//! wanted and starts the new ones, so applying the same config twice changes nothing (a running collector keeps
//! its connection and its queue). A collector whose settings changed is replaced. Its events are the log lines
//! themselves, fanned out to the running collectors (they change nothing to converge), and a 1 s tick that
//! publishes the collectors' detail status (connected, sent, dropped, buffered) for `/v1/status` and `/metrics`.
//! A collector that is down is not a convergence problem: its lines wait in its buffer.

use super::dest::{self, Shared};
use super::format::Record;
use crate::controller::{self, runner, ControllerStatus, DesiredTx, ItemState, Target, Wake};
use crate::registry::Kind;
use keel_config::model::LogForward;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Recent lines kept for a collector configured after they were logged (the boot's lines, typically).
const HISTORY_LINES: usize = 1000;
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the collectors report: the node's status type (`keel_config::status::LogsStatus`), published as is.
pub type LogFwdStatus = keel_config::status::LogsStatus;

#[derive(Debug, PartialEq, Eq)]
pub enum LogOp {
    Stop(LogForward),
    Start(LogForward),
}

impl fmt::Display for LogOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogOp::Stop(s) => write!(f, "op=stop destination={}", s.url),
            LogOp::Start(s) => {
                write!(f, "op=start destination={} format={} buffer_lines={}", s.url, s.format.as_str(), s.buffer_lines)
            }
        }
    }
}

/// Pure: the difference between the desired and the running collectors (compared by every setting): stops
/// first, then starts; every desired collector already running is converged.
pub fn plan(desired: &[LogForward], running: &BTreeSet<LogForward>) -> controller::Plan<LogOp> {
    let want: BTreeSet<&LogForward> = desired.iter().collect();
    let mut p = controller::Plan::default();
    for r in running.iter().filter(|r| !want.contains(r)) {
        p.op(r.url.clone(), LogOp::Stop(r.clone()));
    }
    for d in want {
        if running.contains(d) {
            p.item(d.url.clone(), ItemState::Converged);
        } else {
            p.op(d.url.clone(), LogOp::Start(d.clone()));
        }
    }
    p
}

pub enum LogEvent {
    /// A log line, for every running collector.
    Line(Record),
    /// Time to publish the collectors' detail status.
    Tick,
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
    status: watch::Sender<LogFwdStatus>,
}

impl Forwarder {
    fn new(machine_id: String, status: watch::Sender<LogFwdStatus>) -> Forwarder {
        Forwarder {
            machine_id,
            running: BTreeMap::new(),
            seeded: BTreeSet::new(),
            history: VecDeque::new(),
            generation: None,
            status,
        }
    }

    fn stop(&mut self, spec: &LogForward) {
        if let Some(r) = self.running.remove(spec) {
            r.task.abort();
        }
    }

    fn start(&mut self, spec: LogForward) {
        let shared = Arc::new(Shared::new(spec.buffer_lines));
        if self.seeded.insert(spec.url.clone()) {
            for r in &self.history {
                shared.push(r.clone());
            }
        }
        let task = tokio::spawn(dest::run(spec.clone(), shared.clone(), self.machine_id.clone()));
        self.running.insert(spec, Running { shared, task });
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

    fn detail(&self) -> LogFwdStatus {
        LogFwdStatus {
            generation: self.generation,
            forward: self
                .running
                .iter()
                .map(|(spec, r)| keel_config::status::LogDestination {
                    url: spec.url.clone(),
                    format: spec.format.as_str().to_string(),
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

    fn publish(&self) {
        let now = self.detail();
        self.status.send_if_modified(|s| {
            let changed = *s != now;
            if changed {
                *s = now;
            }
            changed
        });
    }
}

impl controller::Controller for Forwarder {
    const KIND: Kind = Kind::Logs;
    const AREA: &'static str = "logfwd";
    /// The collectors are the init's own tasks: nothing else can change them. The resync only re-checks.
    const RESYNC: Duration = Duration::from_secs(300);

    type Desired = Vec<LogForward>;
    type Observed = BTreeSet<LogForward>;
    type Op = LogOp;
    type Event = LogEvent;

    async fn observe(&mut self, _target: &Target<Vec<LogForward>>) -> Result<BTreeSet<LogForward>, String> {
        Ok(self.running.keys().cloned().collect())
    }

    fn plan(desired: &Vec<LogForward>, running: &BTreeSet<LogForward>) -> controller::Plan<LogOp> {
        plan(desired, running)
    }

    async fn apply(&mut self, op: LogOp, _generation: Option<u64>) -> Result<(), String> {
        match op {
            LogOp::Stop(spec) => self.stop(&spec),
            LogOp::Start(spec) => self.start(spec),
        }
        Ok(())
    }

    async fn event(&mut self, event: LogEvent) -> Wake {
        match event {
            LogEvent::Line(r) => self.fan_out(r),
            LogEvent::Tick => self.publish(),
        }
        Wake::Later
    }

    /// Starting and stopping collectors follows the config; nothing outside the init undoes them.
    fn repairs(_op: &LogOp) -> bool {
        false
    }

    fn passed(&mut self, target: &Target<Vec<LogForward>>, status: &ControllerStatus) {
        if status.converged {
            self.generation = target.generation;
        }
        self.publish();
    }
}

/// Where the config task sends the collectors, and the kind's status and detail status.
pub struct LogsHandle {
    pub desired: DesiredTx<Vec<LogForward>>,
    pub controller: watch::Receiver<ControllerStatus>,
    pub status: watch::Receiver<LogFwdStatus>,
}

/// Starts the controller: the log lines of the init and its services and a 1 s tick are its events.
pub fn start(machine_id: String) -> LogsHandle {
    let (status_tx, status) = watch::channel(LogFwdStatus::default());
    let (events, inbox) = mpsc::channel(1024);
    if let Some(mut intake) = super::take_intake() {
        let lines = events.clone();
        crate::spawn_apart(move || async move {
            while let Some(r) = intake.recv().await {
                if lines.send(LogEvent::Line(r)).await.is_err() {
                    return;
                }
            }
        });
    }
    crate::spawn_apart(move || async move {
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if events.send(LogEvent::Tick).await.is_err() {
                return;
            }
        }
    });
    let (desired, controller) = runner::start_with(Forwarder::new(machine_id, status_tx), inbox);
    LogsHandle { desired, controller, status }
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
        let ops = |p: controller::Plan<LogOp>| p.ops.into_iter().map(|(_, op)| op).collect::<Vec<_>>();
        let a = spec("tcp://a:1", 10);
        let b = spec("tcp://b:1", 10);
        let running: BTreeSet<_> = [a.clone(), b.clone()].into();
        let same = plan(&[a.clone(), b.clone()], &running);
        assert!(same.ops.is_empty(), "the same config changes nothing");
        assert!(same.items.iter().all(|(_, s)| *s == ItemState::Converged));
        let b2 = spec("tcp://b:1", 20);
        assert_eq!(ops(plan(&[a.clone(), b2.clone()], &running)), [LogOp::Stop(b.clone()), LogOp::Start(b2)]);
        assert_eq!(ops(plan(&[], &running)), [LogOp::Stop(a.clone()), LogOp::Stop(b)]);
        assert_eq!(ops(plan(std::slice::from_ref(&a), &BTreeSet::new())), [LogOp::Start(a)]);
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

    /// Applies `desired` as the runner would: plan against what runs, apply every operation.
    async fn converge(fwd: &mut Forwarder, generation: u64, desired: &[LogForward]) {
        use crate::controller::Controller;
        let target = Target::new(generation, desired.to_vec());
        let observed = fwd.observe(&target).await.unwrap();
        for (_, op) in Forwarder::plan(&target.desired, &observed).ops {
            fwd.apply(op, Some(generation)).await.unwrap();
        }
        fwd.generation = Some(generation);
    }

    #[tokio::test]
    async fn a_new_collector_gets_the_history_once_and_apply_is_idempotent() {
        let mut fwd = Forwarder::new("m".into(), watch::channel(LogFwdStatus::default()).0);
        fwd.fan_out(rec("boot"));
        // Port 1 on localhost: refused at once; the task retries in the background and the queue keeps lines.
        let mut s = spec("tcp://127.0.0.1:1", 100);
        s.host = "127.0.0.1".into();
        s.port = 1;
        converge(&mut fwd, 1, std::slice::from_ref(&s)).await;
        fwd.fan_out(rec("after"));
        let st = fwd.detail();
        assert_eq!((st.generation, st.forward.len(), st.forward[0].buffered), (Some(1), 1, 2));
        converge(&mut fwd, 2, std::slice::from_ref(&s)).await;
        assert_eq!(fwd.detail().forward[0].buffered, 2, "the same collector keeps its queue");
        let mut bigger = s.clone();
        bigger.buffer_lines = 200;
        converge(&mut fwd, 3, &[bigger]).await;
        assert_eq!(fwd.detail().forward[0].buffered, 0, "replaced, without the history a second time");
        converge(&mut fwd, 4, &[]).await;
        assert!(fwd.detail().forward.is_empty());
    }
}
