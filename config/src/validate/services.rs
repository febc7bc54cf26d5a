//! `[[service]]`: what runs, as whom, with which privileges and limits, and after what. Value parsers (sizes,
//! cpu.max, rlimits, signals, `after`) are pure functions, tested on their own.

use std::collections::{BTreeMap, BTreeSet};

use super::workloads::name_ok;
use super::{abs_path_problem, int_in, keel_record, Unique};
use crate::diag::{key, Sink};
use crate::model::{
    After, CgroupLimits, CpuMax, Image, Program, Registry, Rlimit, Service, CAPABILITIES, DEFAULT_SERVICE_ID,
    INIT_REAL_UID, STOP_SIGNALS,
};
use crate::raw::{self, At};

/// The cgroup's cpu.max period when the config gives a fraction of a CPU.
pub(crate) const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
const DEFAULT_STOP_TIMEOUT_S: i64 = 10;

pub(super) fn services(
    raw_services: &[At<raw::Service>],
    volumes: &BTreeMap<&str, &str>,
    registries: &[Registry],
    sink: &mut Sink,
) -> Vec<Service> {
    let mut names = Unique::new("name");
    for (i, s) in raw_services.iter().map(At::get).enumerate() {
        let p = format!("service[{i}].name");
        if name_ok(&s.name, &p, sink) {
            names.check(sink, s.name.get().clone(), &format!("{:?}", s.name.get()), s.name.span(), &p);
        }
    }
    let known: BTreeSet<&str> = raw_services.iter().map(|s| s.get().name.get().as_str()).collect();
    let mut out = Vec::new();
    for (i, at) in raw_services.iter().enumerate() {
        let (s, path) = (at.get(), format!("service[{i}]"));
        let errors_before = sink.diags.len();
        let program = program(at, &path, sink);
        for (j, arg) in s.args.iter().enumerate() {
            if arg.get().contains('\0') {
                sink.error(arg.span(), &format!("{path}.args[{j}]"), "must not contain NUL");
            }
        }
        let env = env(&s.env, &path, sink);
        let workdir = match &s.workdir {
            Some(w) => {
                if let Some(problem) = abs_path_problem(w.get()) {
                    sink.error(w.span(), &format!("{path}.workdir"), problem);
                } else if let Some(record) = hidden_record(w.get()) {
                    let msg = format!("is inside {record}, which services do not see");
                    sink.error(w.span(), &format!("{path}.workdir"), msg);
                }
                w.get().clone()
            }
            None => "/".to_string(),
        };
        let mut caps = Unique::new("capability");
        for (j, cap) in s.capabilities.iter().enumerate() {
            let p = format!("{path}.capabilities[{j}]");
            if !CAPABILITIES.contains(&cap.get().as_str()) {
                let msg = format!("{:?} is not a Linux capability (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, …)", cap.get());
                sink.error(cap.span(), &p, msg);
            } else if let (Some(_), Some(why)) = (&s.image, root_escape(cap.get())) {
                sink.error(cap.span(), &p, format!("{} is refused for an `image` service: {why}", cap.get()));
            } else {
                caps.check(sink, cap.get().clone(), cap.get(), cap.span(), &p);
            }
        }
        let mut rlimits = BTreeMap::new();
        for (name, value) in &s.rlimits {
            let p = format!("{path}.rlimits.{}", key(name.get()));
            match (Rlimit::from_name(name.get()), limit(value.get())) {
                (None, _) => {
                    let all: Vec<&str> = Rlimit::ALL.iter().map(|r| r.name()).collect();
                    sink.error(name.span(), &p, format!("is not a resource limit (one of {})", all.join(", ")));
                }
                (Some(_), Err(msg)) => sink.error(value.span(), &p, msg),
                (Some(r), Ok(v)) => {
                    rlimits.insert(r, v);
                }
            }
        }
        let devices = grants(&s.devices, &format!("{path}.devices"), device_problem, sink);
        let paths = grants(&s.paths, &format!("{path}.paths"), writable_path_problem, sink);
        let cgroup = cgroup_limits(s, &path, sink);
        let stop_signal = match &s.stop_signal {
            Some(sig) => signal(sig.get())
                .map_err(|msg| sink.error(sig.span(), &format!("{path}.stop_signal"), msg))
                .unwrap_or_default(),
            None => "SIGTERM".to_string(),
        };
        let stop_timeout = s
            .stop_timeout
            .as_ref()
            .map_or(Some(DEFAULT_STOP_TIMEOUT_S), |t| int_in(sink, t, &format!("{path}.stop_timeout"), 1, 3600));
        let mut after = Vec::new();
        for (j, a) in s.after.iter().enumerate() {
            let p = format!("{path}.after[{j}]");
            match parse_after(a.get()) {
                Err(msg) => sink.error(a.span(), &p, msg),
                Ok(After::Service(name)) if name == *s.name.get() => {
                    sink.error(a.span(), &p, "a service cannot start after itself")
                }
                Ok(After::Service(name)) if !known.contains(name.as_str()) => {
                    sink.error(a.span(), &p, format!("{name:?} names no [[service]]"))
                }
                Ok(After::Volume(name)) if !volumes.contains_key(name.as_str()) => {
                    sink.error(a.span(), &p, format!("{name:?} names no [[storage.volume]]"))
                }
                Ok(dep) if after.contains(&dep) => sink.error(a.span(), &p, format!("{dep} is listed twice")),
                Ok(dep) => after.push(dep),
            }
        }
        let (uid, gid) = (
            service_id(sink, s.uid.as_ref(), &format!("{path}.uid")),
            service_id(sink, s.gid.as_ref(), &format!("{path}.gid")),
        );
        let program = program.map(|p| match p {
            Program::Image(mut image) => {
                image.registry = registry_for(&image.reference, registries);
                image.binds = after_binds(&after, volumes);
                Program::Image(image)
            }
            other => other,
        });
        if let (Some(program), Some(stop_timeout), true) = (program, stop_timeout, sink.diags.len() == errors_before) {
            out.push(Service {
                name: s.name.get().clone(),
                program,
                args: s.args.iter().map(|a| a.get().clone()).collect(),
                env,
                workdir,
                uid,
                gid,
                capabilities: s.capabilities.iter().map(|c| c.get().clone()).collect(),
                devices,
                paths,
                rlimits,
                cgroup,
                restart: s.restart,
                stop_signal,
                stop_timeout_s: u32::try_from(stop_timeout).unwrap_or(10),
                after,
                log_level: s.log_level,
            });
        }
    }
    report_cycle(raw_services, sink);
    out
}

/// A service's uid or gid: 0..4294967293; absent means 65534 (nobody), so root is always asked for by name.
/// 4294967294 is PID 1's real uid ([`INIT_REAL_UID`]): a service with it could signal PID 1.
fn service_id(sink: &mut Sink, v: Option<&At<i64>>, path: &str) -> u32 {
    let Some(v) = v else { return DEFAULT_SERVICE_ID };
    let n = int_in(sink, v, path, 0, i64::from(INIT_REAL_UID - 1));
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_SERVICE_ID)
}

/// The hidden one of Keel's records (/var/lib/keel, /etc/keel) `p` is in or above, if any.
fn hidden_record(p: &str) -> Option<&'static str> {
    ["/var/lib/keel", "/etc/keel"].into_iter().find(|r| keel_record(p).as_deref() == Some(*r))
}

/// Checks a list of granted paths with `problem`, each once; returns the good ones.
fn grants(list: &[At<String>], path: &str, problem: fn(&str) -> Option<String>, sink: &mut Sink) -> Vec<String> {
    let mut seen = Unique::new("path");
    let mut out = Vec::new();
    for (j, g) in list.iter().enumerate() {
        let p = format!("{path}[{j}]");
        match abs_path_problem(g.get()).map(str::to_string).or_else(|| problem(g.get())) {
            Some(msg) => sink.error(g.span(), &p, msg),
            None => {
                let before = sink.diags.len();
                seen.check(sink, g.get().clone(), &format!("{:?}", g.get()), g.span(), &p);
                if sink.diags.len() == before {
                    out.push(g.get().clone());
                }
            }
        }
    }
    out
}

/// A device grant: a node under /dev, not one of those every service already has, not a directory of them.
pub(crate) fn device_problem(p: &str) -> Option<String> {
    let Some(name) = p.strip_prefix("/dev/") else {
        return Some("must be a device node under /dev/, e.g. \"/dev/kvm\"".into());
    };
    if matches!(name, "null" | "zero" | "full" | "random" | "urandom" | "tty") {
        return Some("every service has it already".into());
    }
    if name == "pts" || name == "shm" || name.starts_with("pts/") || name.starts_with("shm/") {
        return Some("is the service's own (a private devpts and /dev/shm)".into());
    }
    None
}

/// A writable path grant: under /sys or /proc/sys (what services see read-only), never Keel's own records.
pub(crate) fn writable_path_problem(p: &str) -> Option<String> {
    if let Some(record) = keel_record(p) {
        return Some(format!("is {record}, one of Keel's own records, which no service is granted"));
    }
    let under = |root: &str| p.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'));
    if !(under("/sys") || under("/proc/sys")) {
        return Some("must be under /sys/ or /proc/sys/ (the rest of the node is writable or hidden as it is)".into());
    }
    None
}

/// A download by URL and digest (a service's artifact, the upgrade or install image): an http:// or https:// URL
/// with a host and 64 hex digits, lower-cased.
pub(crate) fn artifact(a: &raw::Artifact, path: &str, sink: &mut Sink) -> Option<crate::model::Upgrade> {
    let url = a.url.get();
    let url_ok = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or("");
        !host.is_empty() && !rest.contains(char::is_whitespace)
    });
    if !url_ok {
        let msg = format!("{:?} is not an http:// or https:// URL with a host", a.url.get());
        sink.error(a.url.span(), &format!("{path}.url"), msg);
    }
    let digest = a.sha256.get();
    let digest_ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    if !digest_ok {
        sink.error(a.sha256.span(), &format!("{path}.sha256"), "must be 64 hex digits");
    }
    (url_ok && digest_ok)
        .then(|| crate::model::Upgrade { url: a.url.get().clone(), sha256: digest.to_ascii_lowercase() })
}

/// The `[[registry]]` entry an image reference names (the part before the first '/'), or the default: HTTPS,
/// anonymous, the image's CA bundle.
fn registry_for(reference: &str, registries: &[Registry]) -> Registry {
    let host = reference.split('/').next().unwrap_or("");
    registries
        .iter()
        .find(|r| r.host == host)
        .cloned()
        .unwrap_or_else(|| Registry { host: host.to_string(), ..Registry::default() })
}

/// The mount points of the volumes a service starts after: bound into an image service at the same path.
fn after_binds(after: &[After], volumes: &BTreeMap<&str, &str>) -> Vec<String> {
    after
        .iter()
        .filter_map(|a| match a {
            After::Volume(name) => volumes.get(name.as_str()).map(|m| m.to_string()),
            _ => None,
        })
        .collect()
}

/// Why a capability would let an image service climb out of its root, if it would. Keel's own root is the
/// initramfs, which pivot_root cannot move, so the image's root sits below host mounts in the container's mount
/// namespace: whoever may chroot, mount, pivot_root, setns or open files by handle can reach the host's files.
/// (The real fix, PID 1 moving its own root to a tmpfs at boot, would lift this.)
fn root_escape(cap: &str) -> Option<&'static str> {
    match cap {
        "CAP_SYS_CHROOT" => Some("chroot into a subdirectory then `..` from outside it climbs out of the image's root"),
        "CAP_SYS_ADMIN" => Some("mount, pivot_root, setns and unshare can reach the host's root below the image's"),
        "CAP_DAC_READ_SEARCH" => {
            Some("open_by_handle_at opens any file of a filesystem the image's root is on, outside that root")
        }
        _ => None,
    }
}

/// `image = "…"`: a reference pinned by digest; a tag is refused with the form to use.
fn image(at: &At<raw::Service>, image: &At<String>, path: &str, sink: &mut Sink) -> Option<Program> {
    let s = at.get();
    if let Err(e) = keel_oci::Reference::parse(image.get()) {
        sink.error(image.span(), &format!("{path}.image"), e.why);
        return None;
    }
    let exec = match &s.exec {
        Some(exec) if exec.get().contains('\0') || !exec.get().starts_with('/') => {
            sink.error(exec.span(), &format!("{path}.exec"), "must be an absolute path inside the image");
            return None;
        }
        e => e.as_ref().map(|e| e.get().clone()),
    };
    Some(Program::Image(Box::new(Image {
        reference: image.get().clone(),
        registry: Registry::default(),
        exec,
        args_given: !s.args.is_empty(),
        workdir_given: s.workdir.is_some(),
        uid_given: s.uid.is_some(),
        gid_given: s.gid.is_some(),
        binds: Vec::new(),
    })))
}

fn program(at: &At<raw::Service>, path: &str, sink: &mut Sink) -> Option<Program> {
    let s = at.get();
    if let Some(i) = &s.image {
        if s.artifact.is_some() {
            sink.error(at.span(), path, "give exactly one of `exec`, `artifact` or `image`; `artifact` with `image`");
            return None;
        }
        return image(at, i, path, sink);
    }
    match (&s.exec, &s.artifact) {
        (Some(exec), None) => match abs_path_problem(exec.get()) {
            Some(problem) => {
                sink.error(exec.span(), &format!("{path}.exec"), problem);
                None
            }
            None => Some(Program::Path(exec.get().clone())),
        },
        (None, Some(a)) => artifact(a.get(), &format!("{path}.artifact"), sink)
            .map(|u| Program::Artifact { url: u.url, sha256: u.sha256 }),
        (Some(_), Some(_)) => {
            sink.error(at.span(), path, "give exactly one of `exec` or `artifact`, not both");
            None
        }
        (None, None) => {
            let msg = "needs `exec` (a path in the image), `artifact` (a URL and its sha256) or `image` (an OCI \
                       image by digest)";
            sink.error(at.span(), path, msg);
            None
        }
    }
}

fn env(raw_env: &BTreeMap<At<String>, String>, path: &str, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (name, value) in raw_env {
        let n = name.get();
        let ok = n.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            let msg = "is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
            sink.error(name.span(), &format!("{path}.env.{}", key(n)), msg);
        } else if value.contains('\0') {
            sink.error(name.span(), &format!("{path}.env.{}", key(n)), "value must not contain NUL");
        }
        env.insert(n.clone(), value.clone());
    }
    env
}

fn cgroup_limits(s: &raw::Service, path: &str, sink: &mut Sink) -> CgroupLimits {
    let memory_max = s.memory_max.as_ref().and_then(|m| {
        size(m.get()).map_err(|msg| sink.error(m.span(), &format!("{path}.memory_max"), msg)).ok().flatten()
    });
    let cpu_max = s.cpu_max.as_ref().and_then(|c| {
        cpu_max(c.get()).map_err(|msg| sink.error(c.span(), &format!("{path}.cpu_max"), msg)).ok().flatten()
    });
    let pids_max = s
        .pids_max
        .as_ref()
        .and_then(|p| int_in(sink, p, &format!("{path}.pids_max"), 1, 4_194_304))
        .and_then(|n| u64::try_from(n).ok());
    CgroupLimits { memory_max, cpu_max, pids_max }
}

/// memory.max: bytes, or digits with a binary suffix K, M, G or T (optionally followed by "iB" or "B"); "max"
/// is no limit. At least one page.
pub(crate) fn size(value: &raw::Size) -> Result<Option<u64>, String> {
    let bytes = match value {
        raw::Size::Bytes(n) => u64::try_from(*n).ok(),
        raw::Size::Text(t) if t == "max" => return Ok(None),
        raw::Size::Text(t) => {
            let t = t.trim_end_matches("iB").trim_end_matches('B');
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, suffix) = t.split_at(split);
            let shift = match suffix.to_ascii_uppercase().as_str() {
                "" => Some(0),
                "K" => Some(10),
                "M" => Some(20),
                "G" => Some(30),
                "T" => Some(40),
                _ => None,
            };
            match (digits.parse::<u64>(), shift) {
                (Ok(n), Some(shift)) => n.checked_mul(1 << shift),
                _ => return Err(format!("{value} is not a size like \"512M\" (K, M, G, T are powers of 1024)")),
            }
        }
    };
    match bytes {
        Some(n) if n >= 4096 => Ok(Some(n)),
        _ => Err(format!("{value} is out of range: at least 4096 bytes")),
    }
}

/// cpu.max: a fraction of one CPU (0.5; 2 for two CPUs) over a 100 ms period, or "quota period" in
/// microseconds, or "max" / "max period" for no limit. The kernel takes quotas from 1 ms and periods of 1 ms..1 s.
pub(crate) fn cpu_max(value: &raw::CpuMax) -> Result<Option<CpuMax>, String> {
    let bad = || format!("{value} is not a fraction of a CPU like 0.5 or \"quota period\" like \"50000 100000\"");
    let (quota, period) = match value {
        raw::CpuMax::Fraction(f) if f.is_finite() && *f > 0.0 && *f <= 4096.0 => {
            ((f * DEFAULT_CPU_PERIOD_US as f64).round() as u64, DEFAULT_CPU_PERIOD_US)
        }
        raw::CpuMax::Fraction(_) => return Err(bad()),
        raw::CpuMax::Text(t) => {
            let mut words = t.split_whitespace();
            let (q, p) = (words.next().ok_or_else(bad)?, words.next());
            if words.next().is_some() {
                return Err(bad());
            }
            let period = match p {
                Some(p) => p.parse::<u64>().map_err(|_| bad())?,
                None if q == "max" => DEFAULT_CPU_PERIOD_US,
                None => return Err(bad()),
            };
            if !(1000..=1_000_000).contains(&period) {
                return Err(format!("{value}: the period must be 1000..1000000 microseconds"));
            }
            if q == "max" {
                return Ok(None);
            }
            (q.parse::<u64>().map_err(|_| bad())?, period)
        }
    };
    if quota < 1000 {
        return Err(format!("{value}: the quota must be at least 1000 microseconds (0.01 of a CPU)"));
    }
    Ok(Some(CpuMax { quota_us: quota, period_us: period }))
}

/// An rlimit: a non-negative number, or "unlimited" (`None`).
pub(crate) fn limit(value: &raw::Limit) -> Result<Option<u64>, String> {
    match value {
        raw::Limit::Number(n) => u64::try_from(*n).map(Some).map_err(|_| "must be at least 0".to_string()),
        raw::Limit::Text(t) if t == "unlimited" || t == "infinity" => Ok(None),
        raw::Limit::Text(t) => Err(format!("{t:?} is not a number or \"unlimited\"")),
    }
}

/// A stop signal by name, with or without `SIG`: "TERM" and "SIGTERM" are both `SIGTERM`.
pub(crate) fn signal(name: &str) -> Result<String, String> {
    let full = if name.starts_with("SIG") { name.to_string() } else { format!("SIG{name}") };
    if STOP_SIGNALS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!("{name:?} is not a stop signal (one of {})", STOP_SIGNALS.join(", ")))
    }
}

/// `network`, `volume:<name>`, `service:<name>`, or a bare `<name>` for a service.
pub(crate) fn parse_after(text: &str) -> Result<After, String> {
    let bad = || format!("{text:?} is not \"network\", \"volume:<name>\" or \"service:<name>\"");
    match text.split_once(':') {
        None if text == "network" => Ok(After::Network),
        None if !text.is_empty() => Ok(After::Service(text.to_string())),
        Some(("volume", name)) if !name.is_empty() => Ok(After::Volume(name.to_string())),
        Some(("service", name)) if !name.is_empty() => Ok(After::Service(name.to_string())),
        _ => Err(bad()),
    }
}

impl std::fmt::Display for raw::Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            raw::Size::Bytes(n) => write!(f, "{n}"),
            raw::Size::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl std::fmt::Display for raw::CpuMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            raw::CpuMax::Fraction(x) => write!(f, "{x}"),
            raw::CpuMax::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Reports one `after` cycle among services (at the service where the walk closes it), so a start order exists.
fn report_cycle(raw_services: &[At<raw::Service>], sink: &mut Sink) {
    let index: BTreeMap<&str, usize> =
        raw_services.iter().enumerate().map(|(i, s)| (s.get().name.get().as_str(), i)).collect();
    let deps: Vec<Vec<usize>> = raw_services
        .iter()
        .map(|s| {
            let after = s.get().after.iter().filter_map(|a| match parse_after(a.get()) {
                Ok(After::Service(name)) => index.get(name.as_str()).copied(),
                _ => None,
            });
            after.collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; raw_services.len()];
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8]) -> Option<usize> {
        state[i] = 1;
        for &j in &deps[i] {
            match state[j] {
                1 if j != i => return Some(j),
                0 => {
                    if let Some(c) = visit(j, deps, state) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        state[i] = 2;
        None
    }
    for i in 0..raw_services.len() {
        if state[i] == 0 {
            if let Some(j) = visit(i, &deps, &mut state) {
                let name = raw_services[j].get().name.get();
                let msg = format!("service {name:?} is part of an `after` cycle; no start order exists");
                sink.error(raw_services[j].get().name.span(), &format!("service[{j}].after"), msg);
                return;
            }
        }
    }
}
