//! Finding the device a selector names: every disk and partition the kernel lists, each with what it holds, and
//! the one (exactly one) that the selector picks.

use super::probe::{self, Content, Table};
use super::sysfs::{self, Disk, Part, Roots};
pub use keel_config::storage::Selector;

/// A disk as found: its attributes, what it holds, and what each of its partitions holds.
#[derive(Debug, Clone)]
pub struct Observed {
    pub disk: Disk,
    pub content: Content,
    pub parts: Vec<(Part, Content)>,
}

impl Observed {
    /// The GPT name of partition `part`, when the disk has a GPT.
    pub fn partlabel(&self, part: &Part) -> Option<&str> {
        match &self.content {
            Content::Table(Table::Gpt(t)) => {
                t.entries.iter().find(|e| e.number == part.number).map(|e| e.name.as_str())
            }
            _ => None,
        }
    }
}

fn probe_or_unreadable(path: &std::path::Path, size: u64) -> Content {
    probe::probe(path, size).unwrap_or_else(|e| Content::Unreadable(e.to_string()))
}

/// Scans and probes every disk (`keep` filters by name; empty drives are left out).
pub fn observe(roots: &Roots, keep: &dyn Fn(&str) -> bool) -> Vec<Observed> {
    sysfs::scan(roots, keep)
        .into_iter()
        .filter(|d| d.size > 0)
        .map(|disk| {
            let content = probe_or_unreadable(&disk.node, disk.size);
            let parts = disk.partitions.iter().map(|p| (p.clone(), probe_or_unreadable(&p.node, p.size))).collect();
            Observed { disk, content, parts }
        })
        .collect()
}

/// A disk, or partition `.1` of disk `.0` (indexes into the observed list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Disk(usize),
    Part(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Found(Target),
    /// Nothing matches (yet): the caller waits for it.
    NotFound(String),
    /// More than one device matches: choosing would be a guess, so nothing is chosen.
    Ambiguous(String),
}

fn wwn_key(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    let s = ["wwn-", "naa.", "eui.", "0x"].iter().fold(s, |s, p| s.strip_prefix(p).map(str::to_string).unwrap_or(s));
    s.strip_prefix("0x").map(str::to_string).unwrap_or(s)
}

fn one(found: Vec<Target>, inv: &[Observed], what: &str) -> Resolved {
    match found.as_slice() {
        [] => Resolved::NotFound(format!("no device has {what}")),
        [t] => Resolved::Found(*t),
        many => Resolved::Ambiguous(format!(
            "{} devices have {what}: {}",
            many.len(),
            many.iter().map(|t| name(inv, *t)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The kernel's name of a target (`vdb`, `vdb1`).
pub fn name(inv: &[Observed], t: Target) -> String {
    match t {
        Target::Disk(d) => inv[d].disk.name.clone(),
        Target::Part(d, p) => inv[d].parts[p].0.name.clone(),
    }
}

fn all_parts(inv: &[Observed]) -> impl Iterator<Item = (usize, usize)> + '_ {
    inv.iter().enumerate().flat_map(|(d, o)| (0..o.parts.len()).map(move |p| (d, p)))
}

/// Which device `sel` picks. `own_partlabel` is the GPT name Keel gives this volume's partition: a `blank`
/// selector finds that partition first, so the volume it made on an earlier boot is found again.
pub fn resolve(sel: &Selector, inv: &[Observed], roots: &Roots, own_partlabel: &str) -> Resolved {
    match sel {
        Selector::Path(path) => {
            let node = roots.dev.join(path.strip_prefix("/dev/").unwrap_or(path));
            let disks = inv.iter().enumerate().filter(|(_, o)| o.disk.node == node).map(|(d, _)| Target::Disk(d));
            let parts =
                all_parts(inv).filter(|&(d, p)| inv[d].parts[p].0.node == node).map(|(d, p)| Target::Part(d, p));
            one(disks.chain(parts).collect(), inv, &format!("the path {path}"))
        }
        Selector::Serial(serial) => {
            let found = inv.iter().enumerate().filter(|(_, o)| o.disk.serial.as_deref() == Some(serial.as_str()));
            one(found.map(|(d, _)| Target::Disk(d)).collect(), inv, &format!("serial {serial:?}"))
        }
        Selector::Wwn(wwn) => {
            let key = wwn_key(wwn);
            let found =
                inv.iter().enumerate().filter(|(_, o)| o.disk.wwid.as_deref().map(wwn_key) == Some(key.clone()));
            one(found.map(|(d, _)| Target::Disk(d)).collect(), inv, &format!("WWN {wwn:?}"))
        }
        Selector::Model(model) => {
            let key = keel_config::storage::model_key(model);
            let found = inv
                .iter()
                .enumerate()
                .filter(|(_, o)| o.disk.model.as_deref().map(keel_config::storage::model_key) == Some(key.clone()));
            one(found.map(|(d, _)| Target::Disk(d)).collect(), inv, &format!("model {model:?}"))
        }
        Selector::ByPath(path) => {
            let found = inv.iter().enumerate().filter(|(_, o)| o.disk.by_path.as_deref() == Some(path.as_str()));
            one(found.map(|(d, _)| Target::Disk(d)).collect(), inv, &format!("the path {path:?}"))
        }
        Selector::PartLabel(label) => by_partlabel(inv, label),
        Selector::Label(label) => {
            let has = |c: &Content| matches!(c, Content::Fs(f) if f.label.as_deref() == Some(label.as_str()));
            let disks = inv.iter().enumerate().filter(|(_, o)| has(&o.content)).map(|(d, _)| Target::Disk(d));
            let parts = all_parts(inv).filter(|&(d, p)| has(&inv[d].parts[p].1)).map(|(d, p)| Target::Part(d, p));
            one(disks.chain(parts).collect(), inv, &format!("a filesystem labelled {label:?}"))
        }
        Selector::Blank { min_bytes } => match by_partlabel(inv, own_partlabel) {
            Resolved::NotFound(_) => {
                let blank = inv.iter().position(|o| {
                    let d = &o.disk;
                    o.content == Content::Blank
                        && o.parts.is_empty()
                        && d.size >= *min_bytes
                        && !(d.virtual_dev || d.removable || d.read_only || d.held)
                });
                match blank {
                    Some(d) => Resolved::Found(Target::Disk(d)),
                    None => Resolved::NotFound(format!(
                        "no partition named {own_partlabel:?} and no blank disk{}",
                        if *min_bytes > 0 {
                            format!(" of at least {}", keel_config::storage::format_size(*min_bytes))
                        } else {
                            String::new()
                        }
                    )),
                }
            }
            found_or_ambiguous => found_or_ambiguous,
        },
    }
}

fn by_partlabel(inv: &[Observed], label: &str) -> Resolved {
    let found = all_parts(inv).filter(|&(d, p)| inv[d].partlabel(&inv[d].parts[p].0) == Some(label));
    one(found.map(|(d, p)| Target::Part(d, p)).collect(), inv, &format!("a partition named {label:?}"))
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
