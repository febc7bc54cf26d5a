//! The reconcile model for resources without kernel events of their own (sysctls, files): a controller observes,
//! plans (pure) and applies, on every new desired state and on a periodic resync; a failing item does not stop
//! the others and is retried with backoff; a converged host costs zero writes. Each controller publishes per-item
//! status and the generation it converged.

pub mod files;
pub mod sysctl;

use std::fmt;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemState {
    Converged,
    Failed(String),
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemState::Converged => f.write_str("converged"),
            ItemState::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerStatus {
    pub name: &'static str,
    /// The config generation whose desired state this status describes.
    pub generation: Option<u64>,
    /// True when every item converged for `generation`.
    pub converged: bool,
    pub items: Vec<(String, ItemState)>,
    pub writes: u64,
    pub runs: u64,
}

/// A resource kind the generic runner can reconcile.
pub trait Resource: Send + 'static {
    type Desired: Clone + Send + Sync + 'static;
    type Op: fmt::Display + Send;
    const NAME: &'static str;

    /// Observes the host and plans; items already right get `Converged`, the rest an op.
    fn plan(&mut self, desired: &Self::Desired) -> (Vec<Self::Op>, Vec<(String, ItemState)>);
    /// Applies one op; the item name it reports on, or the error.
    fn apply(&mut self, op: &Self::Op) -> Result<String, (String, String)>;
}

const RESYNC: Duration = Duration::from_secs(30);

/// One pass: plan, then apply every op (a failing item does not stop the others). Blocking (it reads and writes
/// files), so the runner calls it off the event loop. Returns the items' states and the writes made.
fn pass<R: Resource>(resource: &mut R, generation: u64, desired: &R::Desired) -> (Vec<(String, ItemState)>, u64) {
    let (ops, mut items) = resource.plan(desired);
    let mut writes = 0;
    for op in &ops {
        match resource.apply(op) {
            Ok(item) => {
                writes += 1;
                log::info!("{}.apply {op} generation={generation}", R::NAME);
                items.push((item, ItemState::Converged));
            }
            Err((item, e)) => {
                log::warn!("{}.failed {op} error={}", R::NAME, crate::logging::q(&e));
                items.push((item, ItemState::Failed(e)));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    (items, writes)
}

/// Runs one controller for ever: on every new desired state, on a periodic resync, and after failures with the
/// init's backoff (1 s … 60 s, jittered). Each pass runs on a blocking thread: the event loop never waits for
/// the filesystem.
pub async fn run<R: Resource>(
    mut resource: R,
    mut desired: watch::Receiver<Option<(u64, R::Desired)>>,
    status: watch::Sender<ControllerStatus>,
) {
    let mut backoff = crate::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let current = desired.borrow_and_update().clone();
        let mut wait = RESYNC;
        if let Some((generation, d)) = current {
            let done = crate::fsutil::off_loop(R::NAME, move || {
                let out = pass(&mut resource, generation, &d);
                (resource, out)
            })
            .await;
            let (items, writes) = match done {
                Ok((r, out)) => {
                    resource = r;
                    out
                }
                Err(e) => {
                    // Only a panic gets here, and the panic hook has taken the node down already.
                    return log::error!("{}.stopped error={}", R::NAME, crate::logging::q(&e));
                }
            };
            let converged = items.iter().all(|(_, s)| *s == ItemState::Converged);
            if converged {
                backoff.succeeded();
            } else {
                wait = backoff.failed();
            }
            status.send_modify(|s| {
                s.name = R::NAME;
                s.generation = Some(generation);
                s.converged = converged;
                s.items = items;
                s.writes += writes;
                s.runs += 1;
            });
        }
        if let Ok(Err(_)) = tokio::time::timeout(wait, desired.changed()).await {
            return; // the config pipeline is gone: nothing more will come
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A resource whose every pass blocks its thread (a hung disk, a slow fsync).
    struct Slow;

    impl Resource for Slow {
        type Desired = u32;
        type Op = String;
        const NAME: &'static str = "slow";

        fn plan(&mut self, _: &u32) -> (Vec<String>, Vec<(String, ItemState)>) {
            std::thread::sleep(Duration::from_millis(800));
            (Vec::new(), vec![("x".into(), ItemState::Converged)])
        }

        fn apply(&mut self, op: &String) -> Result<String, (String, String)> {
            Ok(op.clone())
        }
    }

    /// PID 1's runtime is current_thread: a blocking pass on it would stop every other task (reaping, netlink,
    /// the API). The runner passes off the loop, so a ticker on the same runtime keeps ticking meanwhile.
    #[test]
    fn a_blocking_pass_does_not_stall_the_event_loop() {
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
            let (_desired_tx, desired) = watch::channel(Some((1, 7u32)));
            let (status_tx, mut status) = watch::channel(ControllerStatus::default());
            tokio::spawn(run(Slow, desired, status_tx));
            // The first pass starts at once and blocks for 800 ms: these 500 ms fall inside it.
            let before = ticks.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let during = ticks.load(Ordering::SeqCst) - before;
            assert!(during >= 20, "the loop ticked {during} times in 500 ms while a pass blocked");
            let s = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.converged)).await;
            assert_eq!(s.unwrap().unwrap().generation, Some(1));
        });
    }
}
