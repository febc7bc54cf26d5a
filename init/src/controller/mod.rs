//! The one reconcile model. Every resource kind is a [`Controller`]: it **observes** the host, computes a **pure
//! plan** from the desired and the observed state, and **applies** the plan's operations idempotently. The one
//! runner ([`runner::run`]) drives every kind the same way: a pass on every new desired state, on the kind's own
//! events (netlink notifications, child exits, a lease), while an item waits (a disk not there yet) every
//! [`Controller::POLL`], after failures with the init's one backoff ([`crate::retry::Backoff`]), and every
//! [`Controller::RESYNC`] as the safety net against drift no event reports. Each pass publishes the same
//! [`ControllerStatus`]: the generation it worked for, each item's state, writes and runs; the registry
//! (`registry.rs`) computes "converged" from it in one place for every kind.

pub mod files;
pub mod runner;
pub mod sysctl;

use crate::registry::Kind;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// One desired state and the config generation it came from (`None`: before any config, e.g. the boot network
/// from the kernel command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<D> {
    pub generation: Option<u64>,
    pub desired: D,
}

impl<D> Target<D> {
    pub fn new(generation: u64, desired: D) -> Target<D> {
        Target { generation: Some(generation), desired }
    }
}

/// Where the config task publishes a kind's desired state (None until there is one).
pub type DesiredTx<D> = watch::Sender<Option<Target<D>>>;
pub type DesiredRx<D> = watch::Receiver<Option<Target<D>>>;

/// The state of one item of a kind (a sysctl key, a file, a link, a volume, a service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemState {
    /// As desired.
    Converged,
    /// Not yet, and nothing is wrong: it waits for something on its way (a disk, a lease, a dependency, a
    /// service starting). Looked at again every [`Controller::POLL`] and on every event.
    Waiting(String),
    /// Tried and failed, with why; retried with backoff.
    Failed(String),
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemState::Converged => f.write_str("converged"),
            ItemState::Waiting(r) => write!(f, "waiting: {r}"),
            ItemState::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// What a pure plan says: the operations to apply, each with the item it converges, and the state of the
/// items that need no operation (already as desired, waiting, or impossible).
#[derive(Debug)]
pub struct Plan<Op> {
    pub ops: Vec<(String, Op)>,
    pub items: Vec<(String, ItemState)>,
}

impl<Op> Default for Plan<Op> {
    fn default() -> Plan<Op> {
        Plan { ops: Vec::new(), items: Vec::new() }
    }
}

impl<Op> Plan<Op> {
    pub fn op(&mut self, item: impl Into<String>, op: Op) {
        self.ops.push((item.into(), op));
    }

    pub fn item(&mut self, item: impl Into<String>, state: ItemState) {
        self.items.push((item.into(), state));
    }
}

/// What an event asks of the runner. When several events are coalesced, the largest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Nothing to do now (the event only updated the controller's state).
    Later,
    /// Observe and plan now: something on the host changed (writes on this pass are repairs).
    Now,
    /// Observe and plan now: one of the kind's own inputs changed (a DHCP lease); its writes follow that input
    /// and are not repairs.
    Input,
    /// The controller is done (shutdown): the runner returns.
    Stop,
}

/// Why a pass runs; logged with every operation, and a write on a `Retry`, `Resync` or `Event` pass is a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A new desired state (a config, the boot network).
    Desired,
    /// The kind's own event reporting a change on the host (a kernel notification, a child exit).
    Event,
    /// The kind's own input changed (a DHCP lease).
    Input,
    /// An item was waiting, or a failure's backoff ran out.
    Retry,
    /// The periodic look for drift.
    Resync,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Desired => "config",
            Reason::Event => "event",
            Reason::Input => "input",
            Reason::Retry => "retry",
            Reason::Resync => "resync",
        })
    }
}

/// One resource kind. Implementations keep their kernel side effects in `apply` (and whatever `event` must do
/// to follow its own sources, such as starting a DHCP client); `plan` is pure and unit-tested.
pub trait Controller: Send + 'static {
    /// The kind, as the registry and the status name it.
    const KIND: Kind;
    /// The area of its log lines (`net.apply …`, `sysctl.apply …`).
    const AREA: &'static str;
    /// How often a converged kind looks again.
    const RESYNC: Duration;
    /// How often a kind with a waiting item looks again.
    const POLL: Duration = Duration::from_secs(1);
    /// Host changes come in bursts (one change notifies several netlink groups): after a [`Wake::Now`] event,
    /// gather them this long first. A [`Wake::Input`] passes at once.
    const SETTLE: Duration = Duration::ZERO;
    /// The first delay after a failure, doubled up to [`Controller::BACKOFF_CAP`] (jittered ±20%).
    const BACKOFF_FIRST: Duration = Duration::from_secs(1);
    const BACKOFF_CAP: Duration = Duration::from_secs(60);

    type Desired: Clone + Send + Sync + 'static;
    type Observed: Send;
    type Op: fmt::Display + Send;
    /// The kind's own wake-ups; `()` for kinds that have none.
    type Event: Send + 'static;

    /// Reads the host. Blocking reads go off the event loop ([`crate::fsutil::off_loop`]); every wait is bounded.
    /// An error means the host could not be read at all (the pass is retried with backoff).
    fn observe(
        &mut self,
        target: &Target<Self::Desired>,
    ) -> impl Future<Output = Result<Self::Observed, String>> + Send;

    /// Pure: what to do to go from `observed` to `desired`.
    fn plan(desired: &Self::Desired, observed: &Self::Observed) -> Plan<Self::Op>;

    /// Applies one operation, idempotently. Blocking work goes off the event loop.
    fn apply(&mut self, op: Self::Op, generation: Option<u64>) -> impl Future<Output = Result<(), String>> + Send;

    /// Applies one round's operations in order and returns each one's outcome, in the same order. The default
    /// awaits [`Controller::apply`] for each; a kind whose operations are small blocking file writes overrides it
    /// to make the whole round one trip off the event loop (one thread hand-off instead of one per operation).
    fn apply_all(
        &mut self,
        ops: Vec<Self::Op>,
        generation: Option<u64>,
    ) -> impl Future<Output = Vec<Result<(), String>>> + Send {
        async move {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(self.apply(op, generation).await);
            }
            out
        }
    }

    /// How long to wait before looking again while an item waits: [`Controller::POLL`] unless the kind looks
    /// faster for a while (storage: every 200 ms in the first 30 s of a config, for a disk that is appearing).
    fn poll(&self) -> Duration {
        Self::POLL
    }

    /// How long to wait before looking again once everything converged: [`Controller::RESYNC`] unless the kind
    /// adapts it (time: the SNTP poll interval grows while the clock stays close).
    fn resync(&self) -> Duration {
        Self::RESYNC
    }

    /// Folds one of the kind's events into its state.
    fn event(&mut self, _event: Self::Event) -> impl Future<Output = Wake> + Send {
        async { Wake::Now }
    }

    /// Whether applying `op` on a pass that no new desired state caused counts as repairing drift (logged
    /// `AREA.repair`, counted). Kinds whose plans also remove what a lease or a timer let lapse say no for those.
    fn repairs(_op: &Self::Op) -> bool {
        true
    }

    /// After each pass, with the status the runner just published: a kind with a typed detail status (the
    /// network's leases, the volumes' devices) publishes it here.
    fn passed(&mut self, _target: &Target<Self::Desired>, _status: &ControllerStatus) {}
}

/// What every controller publishes after each pass: the one status "converged" is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerStatus {
    pub area: &'static str,
    /// The config generation whose desired state this status describes.
    pub generation: Option<u64>,
    /// True when the last pass found nothing to do and every item converged.
    pub converged: bool,
    pub items: Vec<(String, ItemState)>,
    /// Why the host could not be observed at all on the last pass.
    pub error: Option<String>,
    /// Failed passes in a row.
    pub failures: u32,
    pub writes: u64,
    pub repairs: u64,
    pub runs: u64,
}

impl ControllerStatus {
    /// The items that are not converged, as `name: state`.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.error.iter().map(|e| format!("observe: {e}")).collect();
        out.extend(
            self.items
                .iter()
                .filter(|(_, s)| *s != ItemState::Converged)
                .map(|(name, state)| format!("{name}: {state}")),
        );
        out
    }

    /// Some item is still on its way.
    pub fn waiting(&self) -> bool {
        self.items.iter().any(|(_, s)| matches!(s, ItemState::Waiting(_)))
    }
}
