//! Semantic validation: turns the [`raw`](crate::raw) document into a typed [`Config`], collecting every problem
//! with its place in the file rather than stopping at the first.

mod log;
mod network;
mod services;
mod topology;
mod workloads;

use std::collections::BTreeMap;
use std::ops::Range;

use crate::diag::{key, Sink};
use crate::model::{Config, Target};
use crate::net::{hostname_problem, normalize_machine_id, MacAddr};
use crate::raw::{self, At};
use crate::time::Timestamp;

/// Checks `doc` and builds the config. The config is complete only when `sink` collected no errors.
pub(crate) fn document(doc: &raw::Document, sink: &mut Sink) -> Config {
    if *doc.version.get() != 1 {
        sink.error(doc.version.span(), "version", "must be 1 (the only config version this node understands)");
    }
    let generation = int_in(sink, &doc.generation, "generation", 1, i64::MAX).unwrap_or(0);
    let registries = workloads::registries(&doc.registry, sink);
    Config {
        generation: u64::try_from(generation).unwrap_or(0),
        target: doc.node.as_ref().map(|n| target(n.get(), sink)).unwrap_or_default(),
        sysctl: sysctl(&doc.sysctl, sink),
        network: doc.network.as_ref().map(|n| network::network(n, sink)).unwrap_or_default(),
        volumes: doc.storage.as_ref().map(|s| workloads::volumes(&s.volume, sink)).unwrap_or_default(),
        files: workloads::files(&doc.file, sink),
        services: services::services(&doc.service, &volume_mounts(doc), &registries, sink),
        registries,
        upgrade: doc.upgrade.as_ref().and_then(|u| services::artifact(u.get(), "upgrade", sink)),
        install: doc.install.as_ref().and_then(|i| workloads::install(i.get(), sink)),
        log_forward: doc.log.as_ref().map(|l| log::forwards(&l.forward, sink)).unwrap_or_default(),
        rollout: doc.rollout.as_ref().and_then(|r| crate::rollout::validate(r, sink)),
    }
}

/// Each `[[storage.volume]]`'s name and mount point.
fn volume_mounts(doc: &raw::Document) -> BTreeMap<&str, &str> {
    doc.storage
        .iter()
        .flat_map(|s| &s.volume)
        .map(|v| (v.get().name.get().as_str(), v.get().mount.get().as_str()))
        .collect()
}

fn target(node: &raw::Node, sink: &mut Sink) -> Target {
    let machine_id = node.uuid.as_ref().and_then(|uuid| {
        let id = normalize_machine_id(uuid.get());
        if id.is_none() {
            let msg = format!("{:?} is not a UUID (0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9) or 32 hex digits", uuid.get());
            sink.error(uuid.span(), "node.uuid", msg);
        }
        id
    });
    let expires = node.expires.as_ref().and_then(|at| {
        let t = Timestamp::from_toml(at.get());
        if t.is_none() {
            let msg = format!(
                "{} names no single instant; give a date, a time and an offset, e.g. 2026-12-31T00:00:00Z",
                at.get()
            );
            sink.error(at.span(), "node.expires", msg);
        }
        t
    });
    let hostname = node.hostname.as_ref().and_then(|h| match hostname_problem(h.get(), 64) {
        Some(problem) => {
            sink.error(h.span(), "node.hostname", problem);
            None
        }
        None => Some(h.get().clone()),
    });
    Target { machine_id, mac: node.mac.as_ref().and_then(|m| mac(m, "node.mac", sink)), expires, hostname }
}

fn sysctl(map: &BTreeMap<At<String>, At<String>>, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = format!("sysctl.{}", key(name.get()));
        let name_ok = sysctl_key_ok(name.get());
        if !name_ok {
            let msg = "is not a sysctl key: dot-separated parts of [a-z0-9_-] and, after the first, '/' for a dot \
                       inside a name, e.g. \"net.ipv4.ip_forward\", \"net.ipv4.conf.eth0/100.rp_filter\"";
            sink.error(name.span(), &path, msg);
        }
        let value_ok = !value.get().trim().is_empty() && !value.get().chars().any(char::is_control);
        if !value_ok {
            sink.error(value.span(), &path, "value must be non-empty text on one line");
        }
        if name_ok && value_ok {
            out.insert(name.get().clone(), value.get().clone());
        }
    }
    out
}

/// sysctl(8) notation: dots separate levels; below the top level a '/' stands for a dot inside one name (a VLAN
/// interface `eth0.100` is `net.ipv4.conf.eth0/100.rp_filter`), so it may appear inside a part but never at
/// either end of it.
fn sysctl_key_ok(key: &str) -> bool {
    key.split('.').enumerate().all(|(i, part)| {
        let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
        !part.is_empty()
            && part.bytes().all(|b| plain(b) || (i > 0 && b == b'/'))
            && !part.starts_with('/')
            && !part.ends_with('/')
            && !part.contains("//")
    })
}

/// The integer if it lies in `lo..=hi`; else reports `must be lo..hi` (or `must be at least lo`).
pub(crate) fn int_in(sink: &mut Sink, v: &At<i64>, path: &str, lo: i64, hi: i64) -> Option<i64> {
    let n = *v.get();
    if (lo..=hi).contains(&n) {
        return Some(n);
    }
    let msg = if hi == i64::MAX { format!("must be at least {lo}") } else { format!("must be {lo}..{hi}") };
    sink.error(v.span(), path, msg);
    None
}

/// A uid or gid: 0..4294967294 (4294967295 is the kernel's "no id"); absent means 0 (root).
pub(crate) fn id(sink: &mut Sink, v: Option<&At<i64>>, path: &str) -> u32 {
    v.and_then(|v| int_in(sink, v, path, 0, i64::from(u32::MAX - 1))).and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

pub(crate) fn mac(m: &At<String>, path: &str, sink: &mut Sink) -> Option<MacAddr> {
    m.get().parse::<MacAddr>().map_err(|e| sink.error(m.span(), path, e)).ok()
}

/// Remembers the first place each value was used, to report later duplicates against it.
pub(crate) struct Unique<K: Ord> {
    seen: BTreeMap<K, String>,
    what: &'static str,
}

impl<K: Ord> Unique<K> {
    pub fn new(what: &'static str) -> Unique<K> {
        Unique { seen: BTreeMap::new(), what }
    }

    /// Records `k` first used at `path`; a later use is reported at `span`, naming the first.
    pub fn check(&mut self, sink: &mut Sink, k: K, shown: &str, span: Range<usize>, path: &str) {
        if let Some(first) = self.seen.get(&k) {
            sink.error(span, path, format!("{} {shown} is already used by {first}", self.what));
        } else {
            self.seen.insert(k, path.to_string());
        }
    }
}

/// The one of Keel's own records ([`crate::model::KEEL_RECORDS`]) that `p` (a clean absolute path) is or is
/// inside, if any.
pub(crate) fn keel_record(p: &str) -> Option<String> {
    crate::model::KEEL_RECORDS.into_iter().find(|r| is_at_or_under(p, r)).map(str::to_string)
}

/// Is the clean absolute path `p` equal to `root` or below it?
pub(crate) fn is_at_or_under(p: &str, root: &str) -> bool {
    p == root || (p.starts_with(root) && p.as_bytes().get(root.len()) == Some(&b'/'))
}

/// Why `p` is not a clean absolute path (no empty, `.` or `..` components, no trailing `/`), or None.
pub(crate) fn abs_path_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        Some("must be an absolute path")
    } else if p.len() > 1 && p.ends_with('/') {
        Some("must not end with '/'")
    } else if p.len() > 1 && p[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        Some("must not contain empty, '.' or '..' components")
    } else if p.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod image_tests;
#[cfg(test)]
mod isolation_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
