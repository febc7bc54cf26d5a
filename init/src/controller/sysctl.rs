//! Kernel parameters under /proc/sys. Keys use sysctl(8) notation: dots separate levels, and a '/' stands for a
//! dot inside one level (`net.ipv4.conf.eth0/100.forwarding` → `net/ipv4/conf/eth0.100/forwarding`).

use super::{Controller, ItemState, Plan, Target};
use crate::registry::Kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Sysctl {
    root: PathBuf,
}

impl Sysctl {
    pub fn new(root: impl Into<PathBuf>) -> Sysctl {
        Sysctl { root: root.into() }
    }
}

/// The file under the sysctl root for a key.
pub fn key_path(root: &Path, key: &str) -> PathBuf {
    let rel: String = key
        .chars()
        .map(|c| {
            if c == '.' {
                '/'
            } else if c == '/' {
                '.'
            } else {
                c
            }
        })
        .collect();
    root.join(rel)
}

/// Values compare by their whitespace-separated words (the kernel prints "4096\t87380\t6291456\n").
pub fn same_value(current: &str, wanted: &str) -> bool {
    current.split_whitespace().eq(wanted.split_whitespace())
}

pub struct SetSysctl {
    pub key: String,
    pub value: String,
    pub was: String,
}

impl std::fmt::Display for SetSysctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key={} value={} was={}",
            self.key,
            crate::logging::q(&self.value),
            crate::logging::q(self.was.trim())
        )
    }
}

/// What a key reads now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    Value(String),
    /// This kernel has no such sysctl.
    Missing,
    Unreadable(String),
}

/// Reads each desired key (blocking: the runner calls it off the loop).
pub fn read(root: &Path, keys: impl Iterator<Item = String>) -> BTreeMap<String, Current> {
    keys.map(|key| {
        let current = match std::fs::read_to_string(key_path(root, &key)) {
            Ok(v) => Current::Value(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Current::Missing,
            Err(e) => Current::Unreadable(e.to_string()),
        };
        (key, current)
    })
    .collect()
}

/// Writes one value; the error says why in the operator's terms.
fn write(root: &Path, op: &SetSysctl) -> Result<(), String> {
    std::fs::write(key_path(root, &op.key), format!("{}\n", op.value)).map_err(|e| match e.raw_os_error() {
        Some(nix::libc::EINVAL) => "the kernel refused the value".to_string(),
        Some(nix::libc::EPERM) | Some(nix::libc::EACCES) => "read-only or not permitted".to_string(),
        _ => e.to_string(),
    })
}

impl Controller for Sysctl {
    const KIND: Kind = Kind::Sysctl;
    const AREA: &'static str = "sysctl";
    const RESYNC: Duration = Duration::from_secs(30);
    type Desired = BTreeMap<String, String>;
    type Observed = BTreeMap<String, Current>;
    type Op = SetSysctl;
    type Event = ();

    async fn observe(&mut self, target: &Target<Self::Desired>) -> Result<Self::Observed, String> {
        // /proc/sys is the kernel's memory, not a disk: reading it never blocks, so it is read in place.
        Ok(read(&self.root, target.desired.keys().cloned()))
    }

    fn plan(desired: &Self::Desired, observed: &Self::Observed) -> Plan<SetSysctl> {
        let mut plan = Plan::default();
        for (key, value) in desired {
            match observed.get(key) {
                Some(Current::Value(v)) if same_value(v, value) => plan.item(key, ItemState::Converged),
                Some(Current::Value(v)) => {
                    plan.op(key, SetSysctl { key: key.clone(), value: value.clone(), was: v.clone() })
                }
                Some(Current::Missing) => plan.item(key, ItemState::Failed("no such sysctl in this kernel".into())),
                Some(Current::Unreadable(e)) => plan.item(key, ItemState::Failed(format!("cannot read: {e}"))),
                None => plan.item(key, ItemState::Waiting("not observed yet".into())),
            }
        }
        plan
    }

    async fn apply(&mut self, op: SetSysctl, _generation: Option<u64>) -> Result<(), String> {
        let root = self.root.clone();
        crate::fsutil::off_loop("sysctl write", move || write(&root, &op)).await?
    }

    async fn apply_all(&mut self, ops: Vec<SetSysctl>, _generation: Option<u64>) -> Vec<Result<(), String>> {
        let (root, n) = (self.root.clone(), ops.len());
        let done = crate::fsutil::off_loop("sysctl write", move || ops.iter().map(|op| write(&root, op)).collect());
        done.await.unwrap_or_else(|e| vec![Err(e); n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("keel-sysctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("net/ipv4/conf/eth0.100")).unwrap();
        std::fs::write(root.join("net/ipv4/ip_forward"), "0\n").unwrap();
        std::fs::write(root.join("net/ipv4/tcp_rmem"), "4096\t131072\t6291456\n").unwrap();
        std::fs::write(root.join("net/ipv4/conf/eth0.100/forwarding"), "0\n").unwrap();
        root
    }

    #[test]
    fn key_notation_follows_sysctl() {
        let root = Path::new("/proc/sys");
        assert_eq!(key_path(root, "net.ipv4.ip_forward"), Path::new("/proc/sys/net/ipv4/ip_forward"));
        assert_eq!(
            key_path(root, "net.ipv4.conf.eth0/100.forwarding"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert!(same_value("4096\t131072\t6291456\n", "4096 131072  6291456"));
        assert!(!same_value("1\n", "0"));
    }

    #[test]
    fn plans_only_what_differs_and_reports_unknown_keys() {
        let root = fake_root("plan");
        let desired = BTreeMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("net.ipv4.tcp_rmem".to_string(), "4096 131072 6291456".to_string()),
            ("net.ipv4.conf.eth0/100.forwarding".to_string(), "1".to_string()),
            ("kernel.no_such_knob".to_string(), "1".to_string()),
        ]);
        let plan = Sysctl::plan(&desired, &read(&root, desired.keys().cloned()));
        let (ops, items) = (plan.ops, plan.items);
        let keys: Vec<_> = ops.iter().map(|(_, o)| o.key.as_str()).collect();
        assert_eq!(keys, ["net.ipv4.conf.eth0/100.forwarding", "net.ipv4.ip_forward"]);
        assert!(items.contains(&("net.ipv4.tcp_rmem".into(), ItemState::Converged)));
        assert!(
            items.contains(&("kernel.no_such_knob".into(), ItemState::Failed("no such sysctl in this kernel".into())))
        );
        for (_, op) in &ops {
            write(&root, op).unwrap();
        }
        assert_eq!(std::fs::read_to_string(root.join("net/ipv4/ip_forward")).unwrap(), "1\n");
        let plan = Sysctl::plan(&desired, &read(&root, desired.keys().cloned()));
        assert!(plan.ops.is_empty(), "a converged host plans nothing");
        let _ = std::fs::remove_dir_all(root);
    }

    /// Against the real kernel, inside a throwaway network namespace (net.* sysctls are per namespace).
    #[test]
    fn root_netns_sets_a_real_sysctl() {
        let ns = crate::net::netns_tests::Netns::new("sysctl");
        let path = format!("/var/run/netns/{}", ns.name);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let root = Path::new("/proc/sys");
            let desired = BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]);
            let ops = Sysctl::plan(&desired, &read(root, desired.keys().cloned())).ops;
            assert_eq!(ops.len(), 1);
            write(root, &ops[0].1).unwrap();
            assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), "1\n");
            let bad = BTreeMap::from([("net.ipv4.ip_forward".to_string(), "banana".to_string())]);
            let ops = Sysctl::plan(&bad, &read(root, bad.keys().cloned())).ops;
            assert_eq!(write(root, &ops[0].1).unwrap_err(), "the kernel refused the value");
        })
        .join()
        .unwrap();
    }
}
