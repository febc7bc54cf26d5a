//! The harness of the root tests ([`super::root_tests`]): each test body in a child process of the test binary, a
//! real reaper and services task there, and test cgroups under a fresh group of the host's cgroup2 mount.

use super::{start_with, Options, ServiceStatus, ServicesHandle, ServicesStatus, State, Timing};
use crate::reaper::Reaper;
use keel_config::model::Service;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const INNER: &str = "KEEL_SERVICES_INNER";

/// Runs `inner_<name>` of root_tests (or `module::inner_…` of another module of services) in a child process and
/// fails with its output if it fails.
pub fn in_child_process(name: &str) {
    let test = match name.contains("::") {
        true => format!("services::{name}"),
        false => format!("services::root_tests::inner_{name}"),
    };
    let _lock = crate::reaper::test_lock();
    let log = std::env::temp_dir().join(format!("keel-services-{name}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &test, "--ignored", "--nocapture"])
        .env(INNER, "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("inner_{name} timed out:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(status.success() && output.contains("1 passed"), "inner_{name} failed:\n{output}");
}

/// Where the host's cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let found = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    });
    found.expect("these tests need a cgroup2 mount")
}

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub network: watch::Sender<bool>,
    /// While false the reaper reaps nothing: every child's exit goes unnoticed, as a process stuck in
    /// uninterruptible sleep never exits.
    pub reaping: Arc<AtomicBool>,
    pub handle: ServicesHandle,
    pub status: watch::Receiver<ServicesStatus>,
    pub mount: PathBuf,
    pub group: PathBuf,
}

impl Harness {
    pub fn new(timing: Timing) -> Harness {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mount = cgroup2_mount();
        let group = PathBuf::from(format!("keel-test-{}", std::process::id()));
        let reaper = Reaper::default();
        let (network, network_rx) = watch::channel(false);
        let artifacts = std::env::temp_dir().join(format!("keel-test-artifacts-{}", std::process::id()));
        let options = Options {
            cgroup_root: mount.clone(),
            cgroup_group: group.join("keel.services"),
            artifacts,
            containers: std::env::temp_dir().join(format!("keel-test-containers-{}", std::process::id())),
            timing,
        };
        let reaping = Arc::new(AtomicBool::new(true));
        let (handle, status) = rt.block_on(async {
            let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).unwrap();
            let r = reaper.clone();
            let on = reaping.clone();
            tokio::spawn(async move {
                loop {
                    if on.load(Ordering::SeqCst) {
                        r.reap_all();
                    }
                    // Also every 100 ms: a SIGCHLD that arrived while reaping was off is not lost.
                    let _ = tokio::time::timeout(Duration::from_millis(100), sigchld.recv()).await;
                }
            });
            let volumes = watch::channel(crate::storage::controller::StorageStatus::default()).1;
            start_with(options, reaper, super::deps::Deps { network: network_rx, volumes })
        });
        Harness { rt, network, reaping, handle, status, mount, group }
    }

    pub fn apply(&self, generation: u64, services: Vec<Service>) {
        self.handle.desired.send_replace(Some(crate::controller::Target::new(generation, services)));
    }

    /// Waits until `test` holds for the status; panics with the status after `secs`.
    pub fn until(&mut self, what: &str, secs: u64, test: impl Fn(&ServicesStatus) -> bool) -> ServicesStatus {
        let status = &mut self.status;
        self.rt.block_on(async {
            let found = tokio::time::timeout(Duration::from_secs(secs), status.wait_for(|s| test(s)))
                .await
                .ok()
                .and_then(|r| r.ok().map(|s| s.clone()));
            found.unwrap_or_else(|| panic!("timed out waiting for {what}: {:#?}", *status.borrow()))
        })
    }

    pub fn service(&mut self, name: &str, state: State) -> ServiceStatus {
        let s = self.until(&format!("{name} {state}"), 20, |s| s.services.get(name).is_some_and(|x| x.state == state));
        s.services[name].clone()
    }

    pub fn cgroup(&self, service: &str) -> PathBuf {
        self.mount.join(&self.group).join("keel.services").join(service)
    }

    pub fn stop_all(&self) {
        self.rt.block_on(self.handle.stop_all());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.rt.block_on(self.handle.stop_all());
        let _ = std::fs::remove_dir(self.mount.join(&self.group).join("keel.services"));
        let _ = std::fs::remove_dir(self.mount.join(&self.group));
    }
}

pub use super::test_service::service as svc;

/// `Key:\tvalue` from /proc/<pid>/status.
pub fn proc_status(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{key} in {text}"));
    line[key.len() + 1..].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Waits until `pid` runs `comm` (the status says running right after the fork, before the exec).
pub fn wait_exec(pid: i32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() != comm).unwrap_or(true) {
        assert!(Instant::now() < deadline, "pid {pid} never ran {comm}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn inner() -> bool {
    let inside = std::env::var_os(INNER).is_some();
    if !inside {
        eprintln!("skipped: runs only in the child process of its root_services_* test");
    }
    inside
}
