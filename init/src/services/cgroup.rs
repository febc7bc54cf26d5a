//! Each service in its own cgroup v2 group, `<root>/keel.services/<name>`, with its limits written before the
//! service's process joins it. PID 1 stays in the root cgroup (exempt from the "no internal processes" rule);
//! `keel.services` holds no process itself, only the services' groups, so controllers can be enabled for them.

use keel_config::model::CgroupLimits;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup controller {controller} is not available in {path} (a limit needs it)")]
    Unavailable { controller: &'static str, path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// The cgroup v2 tree the services live in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The cgroup2 mount (`/sys/fs/cgroup`).
    root: PathBuf,
    /// The services' parent group, relative to `root` (`keel.services`).
    group: PathBuf,
}

/// The controllers a set of limits needs.
pub fn controllers(limits: &CgroupLimits) -> Vec<&'static str> {
    let mut c = Vec::new();
    if limits.cpu_max.is_some() {
        c.push("cpu");
    }
    if limits.memory_max.is_some() {
        c.push("memory");
    }
    if limits.pids_max.is_some() {
        c.push("pids");
    }
    c
}

/// The files and values that set `limits`; "max" where a limit is absent but its controller is on (a cgroup
/// left from an earlier run of the service could otherwise keep an old value).
pub fn limit_files(limits: &CgroupLimits) -> [(&'static str, &'static str, String); 3] {
    let max = || "max".to_string();
    [
        (
            "cpu",
            "cpu.max",
            limits.cpu_max.map_or_else(|| "max 100000".into(), |c| format!("{} {}", c.quota_us, c.period_us)),
        ),
        ("memory", "memory.max", limits.memory_max.map_or_else(max, |m| m.to_string())),
        ("pids", "pids.max", limits.pids_max.map_or_else(max, |p| p.to_string())),
    ]
}

/// Does a `cgroup.controllers` / `cgroup.subtree_control` text list `controller`?
fn lists(text: &str, controller: &str) -> bool {
    text.split_whitespace().any(|c| c == controller)
}

/// A service's group, ready for its process to join.
#[derive(Debug)]
pub struct ServiceCgroup {
    pub path: PathBuf,
    /// `cgroup.procs`, open for writing: the child writes "0" to it between fork and exec.
    pub procs: File,
}

impl Cgroups {
    pub fn new(root: impl Into<PathBuf>, group: impl Into<PathBuf>) -> Cgroups {
        Cgroups { root: root.into(), group: group.into() }
    }

    pub fn path(&self, service: &str) -> PathBuf {
        self.root.join(&self.group).join(service)
    }

    /// Turns `controller` on for the children of every group from the root down to the services' parent.
    fn enable(&self, controller: &'static str) -> Result<(), CgroupError> {
        // The root, each group on the way down, and the services' parent itself (for the services' groups).
        let mut dir = self.root.clone();
        let mut levels = vec![dir.clone()];
        for part in self.group.components() {
            dir.push(part);
            levels.push(dir.clone());
        }
        for level in levels {
            let available = std::fs::read_to_string(level.join("cgroup.controllers")).map_err(io(&level))?;
            if !lists(&available, controller) {
                return Err(CgroupError::Unavailable { controller, path: level });
            }
            let control = level.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).map_err(io(&control))?;
            if !lists(&enabled, controller) {
                std::fs::write(&control, format!("+{controller}")).map_err(io(&control))?;
                log::debug!("services.cgroup_enable controller={controller} at={}", level.display());
            }
        }
        Ok(())
    }

    /// Creates (or reuses, emptied) the service's group, writes its limits and opens its `cgroup.procs`.
    pub fn prepare(&self, service: &str, limits: &CgroupLimits) -> Result<ServiceCgroup, CgroupError> {
        let parent = self.root.join(&self.group);
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        for controller in controllers(limits) {
            self.enable(controller)?;
        }
        let path = self.path(service);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => kill(&path),
            Err(e) => return Err(io(&path)(e)),
        }
        let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        let wanted = controllers(limits);
        for (controller, file, value) in limit_files(limits) {
            if wanted.contains(&controller) || lists(&enabled, controller) {
                let p = path.join(file);
                std::fs::write(&p, &value).map_err(io(&p))?;
            }
        }
        let procs_path = path.join("cgroup.procs");
        let procs = OpenOptions::new().write(true).open(&procs_path).map_err(io(&procs_path))?;
        Ok(ServiceCgroup { path, procs })
    }
}

/// The pids in a group.
pub fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILLs every process in the group: `cgroup.kill` where the kernel has it (5.14+), else each pid in turn.
pub fn kill(path: &Path) {
    let done = OpenOptions::new().write(true).open(path.join("cgroup.kill")).and_then(|mut f| f.write_all(b"1"));
    if done.is_err() {
        for pid in pids(path) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Removes an emptied group, waiting up to `wait` for the kernel to finish tearing its processes down.
pub async fn remove(path: &Path, wait: Duration) -> Result<(), std::io::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {
                kill(path);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::model::CpuMax;

    fn limits() -> CgroupLimits {
        CgroupLimits {
            memory_max: Some(64 << 20),
            cpu_max: Some(CpuMax { quota_us: 50_000, period_us: 100_000 }),
            pids_max: Some(32),
        }
    }

    #[test]
    fn limits_become_cgroup_file_values() {
        let files = limit_files(&limits());
        assert_eq!(files[0], ("cpu", "cpu.max", "50000 100000".to_string()));
        assert_eq!(files[1], ("memory", "memory.max", "67108864".to_string()));
        assert_eq!(files[2], ("pids", "pids.max", "32".to_string()));
        let none = limit_files(&CgroupLimits::default());
        assert_eq!([&none[0].2, &none[1].2, &none[2].2], ["max 100000", "max", "max"]);
        assert_eq!(controllers(&limits()), ["cpu", "memory", "pids"]);
        assert!(controllers(&CgroupLimits::default()).is_empty());
        assert!(lists("cpuset cpu io memory", "cpu") && !lists("cpuset io", "cpu"));
    }

    /// A directory tree shaped like cgroupfs (plain files), to check what `prepare` writes where.
    #[test]
    fn prepare_enables_controllers_top_down_and_writes_limits() {
        let root = std::env::temp_dir().join(format!("keel-fake-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("keel.services/web")).unwrap();
        for dir in [root.clone(), root.join("keel.services")] {
            std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
            std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        }
        std::fs::write(root.join("keel.services/web/cgroup.procs"), "").unwrap();
        let cgroups = Cgroups::new(&root, "keel.services");
        let only_memory = CgroupLimits { memory_max: Some(1 << 20), ..Default::default() };
        let cg = cgroups.prepare("web", &only_memory).unwrap();
        assert_eq!(cg.path, root.join("keel.services/web"));
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        // Plain files keep only the last write; the kernel would list every enabled controller.
        assert_eq!(read("cgroup.subtree_control"), "+memory");
        assert_eq!(read("keel.services/cgroup.subtree_control"), "+memory");
        assert_eq!(read("keel.services/web/memory.max"), "1048576");
        assert!(!root.join("keel.services/web/pids.max").exists());

        std::fs::write(root.join("keel.services/cgroup.controllers"), "memory\n").unwrap();
        match cgroups.prepare("web", &limits()) {
            Err(CgroupError::Unavailable { controller: "cpu", path }) => assert_eq!(path, root.join("keel.services")),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
