use super::*;
use crate::controller::{Plan, Target};
use crate::registry::Kind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fake host: a counter the controller raises one step per operation (so convergence takes several rounds),
/// with scripted failures, a waiting state and a blocking observation.
#[derive(Default)]
struct Host {
    value: u32,
    /// The next this many applies fail.
    fail: u32,
    /// While set, the item waits (a disk not there yet).
    absent: bool,
    observes: u32,
    applies: u32,
    block_ms: u64,
    /// When set, the kind's own resync period (an adaptive one, like time's poll interval) instead of RESYNC.
    resync_s: u64,
}

struct Counter(Arc<Mutex<Host>>);

enum Ev {
    Poke,
    Quiet,
    Stop,
}

impl Controller for Counter {
    const KIND: Kind = Kind::Sysctl;
    const AREA: &'static str = "counter";
    const RESYNC: Duration = Duration::from_secs(30);
    const POLL: Duration = Duration::from_millis(200);
    type Desired = u32;
    type Observed = (u32, bool);
    type Op = String;
    type Event = Ev;

    async fn observe(&mut self, _target: &Target<u32>) -> Result<(u32, bool), String> {
        let block = self.0.lock().unwrap().block_ms;
        if block > 0 {
            // A hung disk: the observation blocks its thread, off the loop as the trait asks.
            crate::fsutil::off_loop("test", move || std::thread::sleep(Duration::from_millis(block))).await?;
        }
        let mut h = self.0.lock().unwrap();
        h.observes += 1;
        Ok((h.value, h.absent))
    }

    fn plan(desired: &u32, observed: &(u32, bool)) -> Plan<String> {
        let mut plan = Plan::default();
        match observed {
            (_, true) => plan.item("n", ItemState::Waiting("no device".into())),
            (v, false) if v == desired => plan.item("n", ItemState::Converged),
            (v, false) => plan.op("n", format!("op=step from={v}")),
        }
        plan
    }

    async fn apply(&mut self, _op: String, _generation: Option<u64>) -> Result<(), String> {
        let mut h = self.0.lock().unwrap();
        h.applies += 1;
        if h.fail > 0 {
            h.fail -= 1;
            return Err("EBUSY".into());
        }
        h.value += 1;
        Ok(())
    }

    fn resync(&self) -> Duration {
        match self.0.lock().unwrap().resync_s {
            0 => Self::RESYNC,
            s => Duration::from_secs(s),
        }
    }

    async fn event(&mut self, event: Ev) -> Wake {
        match event {
            Ev::Poke => Wake::Now,
            Ev::Quiet => Wake::Later,
            Ev::Stop => Wake::Stop,
        }
    }
}

fn start(host: &Arc<Mutex<Host>>) -> (DesiredTx<u32>, mpsc::Sender<Ev>, watch::Receiver<ControllerStatus>) {
    super::start(Counter(host.clone()))
}

use crate::controller::DesiredTx;

async fn settled(status: &mut watch::Receiver<ControllerStatus>, generation: u64) -> ControllerStatus {
    let s = tokio::time::timeout(
        Duration::from_secs(600),
        status.wait_for(|s| s.generation == Some(generation) && (s.converged || !s.problems().is_empty())),
    )
    .await;
    s.expect("the runner published nothing").unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn applies_round_after_round_then_a_converged_host_costs_no_writes() {
    let host = Arc::new(Mutex::new(Host::default()));
    let (desired, _events, mut status) = start(&host);
    desired.send_replace(Some(Target::new(1, 3)));
    let s = settled(&mut status, 1).await;
    assert!(s.converged, "{s:?}");
    assert_eq!((s.writes, s.runs), (3, 1), "one pass of three rounds");
    assert_eq!(host.lock().unwrap().value, 3);
    // The resync looks again and writes nothing.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let s = status.borrow().clone();
    assert_eq!((s.writes, s.runs, s.repairs), (3, 2, 0));
    // Drift, found by the resync, is repaired and counted as a repair.
    host.lock().unwrap().value = 1;
    tokio::time::sleep(Duration::from_secs(31)).await;
    let s = status.borrow().clone();
    assert_eq!((s.writes, s.repairs), (5, 2));
    assert!(s.converged);
}

#[tokio::test(start_paused = true)]
async fn a_kind_with_its_own_resync_period_looks_again_on_it() {
    let host = Arc::new(Mutex::new(Host { resync_s: 300, ..Default::default() }));
    let (desired, _events, mut status) = start(&host);
    desired.send_replace(Some(Target::new(1, 1)));
    assert!(settled(&mut status, 1).await.converged);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(status.borrow().runs, 1, "not on RESYNC (30 s)");
    tokio::time::sleep(Duration::from_secs(270)).await;
    assert_eq!(status.borrow().runs, 2, "on the kind's own period");
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_reported_and_retried_with_backoff() {
    let host = Arc::new(Mutex::new(Host { fail: 3, ..Default::default() }));
    let (desired, _events, mut status) = start(&host);
    desired.send_replace(Some(Target::new(7, 1)));
    let s = settled(&mut status, 7).await;
    assert!(!s.converged);
    assert_eq!(s.items, vec![("n".to_string(), ItemState::Failed("EBUSY".into()))]);
    assert_eq!(s.failures, 1);
    // 1 s, 2 s, 4 s (±20%): converged within 10 s, not retried in a tight loop.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = status.borrow().clone();
    assert!(s.converged, "{s:?}");
    assert_eq!(host.lock().unwrap().applies, 4, "three failures, then the success");
    assert_eq!(s.failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_item_is_polled_and_events_wake_a_pass() {
    let host = Arc::new(Mutex::new(Host { absent: true, ..Default::default() }));
    let (desired, events, mut status) = start(&host);
    desired.send_replace(Some(Target::new(1, 1)));
    let s =
        tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.runs == 1)).await.unwrap().unwrap().clone();
    assert_eq!(s.items, vec![("n".to_string(), ItemState::Waiting("no device".into()))]);
    assert!(!s.converged && s.waiting());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polled = host.lock().unwrap().observes;
    assert!((5..=7).contains(&polled), "polled every 200 ms while waiting: {polled} looks in 1 s");
    host.lock().unwrap().absent = false;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(status.borrow().converged);
    // Converged: the next look is the resync, 30 s away; an event that asks for one passes at once, a quiet one
    // does not.
    let runs = status.borrow().runs;
    events.send(Ev::Quiet).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status.borrow().runs, runs);
    events.send(Ev::Poke).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(status.borrow().runs, runs + 1);
    events.send(Ev::Stop).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(events.send(Ev::Poke).await.is_err(), "the runner stopped");
}

/// PID 1's runtime is current_thread: a blocking observation on it would stop every other task (reaping,
/// netlink, the API). Observations that block go off the loop, so a ticker on the same runtime keeps ticking.
#[test]
fn a_blocking_observation_does_not_stall_the_event_loop() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        let host = Arc::new(Mutex::new(Host { block_ms: 800, ..Default::default() }));
        let (desired, _events, mut status) = start(&host);
        desired.send_replace(Some(Target::new(1, 0)));
        let before = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = ticks.load(Ordering::SeqCst) - before;
        assert!(during >= 20, "the loop ticked {during} times in 500 ms while an observation blocked");
        let s = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.converged)).await;
        assert_eq!(s.unwrap().unwrap().generation, Some(1));
    });
}
