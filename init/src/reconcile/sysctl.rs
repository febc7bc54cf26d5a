//! Kernel parameters under /proc/sys. Keys use sysctl(8) notation: dots separate levels, and a '/' stands for a
//! dot inside one level (`net.ipv4.conf.eth0/100.forwarding` → `net/ipv4/conf/eth0.100/forwarding`).

use super::{ItemState, Resource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

impl Resource for Sysctl {
    type Desired = BTreeMap<String, String>;
    type Op = SetSysctl;
    const NAME: &'static str = "sysctl";

    fn plan(&mut self, desired: &Self::Desired) -> (Vec<SetSysctl>, Vec<(String, ItemState)>) {
        let mut ops = Vec::new();
        let mut items = Vec::new();
        for (key, value) in desired {
            match std::fs::read_to_string(key_path(&self.root, key)) {
                Ok(current) if same_value(&current, value) => items.push((key.clone(), ItemState::Converged)),
                Ok(current) => ops.push(SetSysctl { key: key.clone(), value: value.clone(), was: current }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    items.push((key.clone(), ItemState::Failed("no such sysctl in this kernel".into())))
                }
                Err(e) => items.push((key.clone(), ItemState::Failed(format!("cannot read: {e}")))),
            }
        }
        (ops, items)
    }

    fn apply(&mut self, op: &SetSysctl) -> Result<String, (String, String)> {
        let path = key_path(&self.root, &op.key);
        std::fs::write(&path, format!("{}\n", op.value)).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(nix::libc::EINVAL) => "the kernel refused the value".to_string(),
                Some(nix::libc::EPERM) | Some(nix::libc::EACCES) => "read-only or not permitted".to_string(),
                _ => e.to_string(),
            };
            (op.key.clone(), why)
        })?;
        Ok(op.key.clone())
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
        let mut s = Sysctl::new(&root);
        let desired = BTreeMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("net.ipv4.tcp_rmem".to_string(), "4096 131072 6291456".to_string()),
            ("net.ipv4.conf.eth0/100.forwarding".to_string(), "1".to_string()),
            ("kernel.no_such_knob".to_string(), "1".to_string()),
        ]);
        let (ops, items) = s.plan(&desired);
        let keys: Vec<_> = ops.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["net.ipv4.conf.eth0/100.forwarding", "net.ipv4.ip_forward"]);
        assert!(items.contains(&("net.ipv4.tcp_rmem".into(), ItemState::Converged)));
        assert!(
            items.contains(&("kernel.no_such_knob".into(), ItemState::Failed("no such sysctl in this kernel".into())))
        );
        for op in &ops {
            s.apply(op).unwrap();
        }
        assert_eq!(std::fs::read_to_string(root.join("net/ipv4/ip_forward")).unwrap(), "1\n");
        let (ops, _) = s.plan(&desired);
        assert!(ops.is_empty(), "a converged host plans nothing");
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
            let mut s = Sysctl::new("/proc/sys");
            let desired = BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]);
            let (ops, _) = s.plan(&desired);
            assert_eq!(ops.len(), 1);
            s.apply(&ops[0]).unwrap();
            assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), "1\n");
            let bad = BTreeMap::from([("net.ipv4.ip_forward".to_string(), "banana".to_string())]);
            let (ops, _) = s.plan(&bad);
            assert_eq!(s.apply(&ops[0]).unwrap_err().1, "the kernel refused the value");
        })
        .join()
        .unwrap();
    }
}
