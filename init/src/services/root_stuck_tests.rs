//! A service whose process does not go away when killed (uninterruptible sleep: here its exit is never reaped,
//! which looks the same to its supervisor) must not freeze the services manager: every later config converges
//! for the other services, and the stuck one is reported until it is gone.

use super::root_harness::{in_child_process, inner, svc, Harness};
use super::{State, Timing};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn root_services_a_stuck_stop_does_not_block_later_configs() {
    in_child_process("root_stuck_tests::inner_stuck_stop");
}

#[test]
#[ignore = "the body of root_services_a_stuck_stop_does_not_block_later_configs, in its own process"]
fn inner_stuck_stop() {
    if !inner() {
        return;
    }
    let mut h = Harness::new(Timing::default());
    let mut stuck = svc("stuck", "/bin/sleep", &["1000"]);
    stuck.stop_timeout_s = 1;
    let keep = svc("keep", "/bin/sleep", &["1001"]);
    h.apply(1, vec![stuck.clone(), keep.clone()]);
    h.service("stuck", State::Running);
    h.service("keep", State::Running);
    // From here no exit is seen: the stop of `stuck` never completes.
    h.reaping.store(false, Ordering::SeqCst);
    let asked = Instant::now();
    h.apply(2, vec![keep.clone(), svc("new", "/bin/sleep", &["1002"])]);
    // Stop timeout 1 s + SIGKILL's 5 s grace + 3 s margin: the manager moves on, the new service starts.
    let s = h.until("generation 2 applied with `new` running", 30, |s| {
        s.generation == Some(2) && s.services.get("new").is_some_and(|n| n.state == State::Running)
    });
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(25), "the manager waited {took:?} on a stuck stop");
    let shown = &s.services["stuck"];
    assert_eq!(shown.state, State::Stopping, "the stuck service is still shown: {s:#?}");
    assert!(shown.reason.as_deref().unwrap_or("").contains("SIGKILL"), "{shown:?}");
    assert!(!s.converged, "not converged while a removed process lingers");
    // A third config brings the stuck one back: applied at once for the rest; it waits for its old process.
    h.apply(3, vec![keep.clone(), svc("new", "/bin/sleep", &["1002"]), stuck]);
    let s = h.until("generation 3 applied", 10, |s| s.generation == Some(3));
    assert_eq!((s.services["keep"].state, s.services["new"].state), (State::Running, State::Running));
    assert_eq!(s.services["stuck"].state, State::Stopping, "not started over its old process: {s:#?}");
    // The process finally goes (reaping resumes): the new definition starts and everything converges.
    h.reaping.store(true, Ordering::SeqCst);
    h.until("converged with `stuck` running again", 30, |s| {
        s.converged && s.services.get("stuck").is_some_and(|x| x.state == State::Running)
    });
}
