//! What applying a config would change on a node, section by section: a pure function of two [`View`]s.
//! Lines start with `+` (added), `~` (changed) or `-` (removed). File contents and environment values are never
//! printed, only sizes and names: they may be secret.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::view::{Content, Fields, FileView, View};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub lines: Vec<String>,
    /// Secret files whose content the node redacts and whose size it does not say: not compared.
    pub uncompared_secrets: usize,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            writeln!(f, "no changes")?;
        }
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        if self.uncompared_secrets > 0 {
            let n = self.uncompared_secrets;
            writeln!(f, "note: the content of {n} secret file{} is not compared (the node redacts it)", plural(n))?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn show(v: Option<&String>) -> &str {
    v.map_or("(none)", String::as_str)
}

/// `key a → b` for every key whose value differs, joined with `; `.
fn field_changes(old: &Fields, new: &Fields) -> Vec<String> {
    let keys: BTreeSet<&&str> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(**k) != new.get(**k))
        .map(|k| format!("{k} {} → {}", show(old.get(*k)), show(new.get(*k))))
        .collect()
}

/// Added, changed and removed entries of two maps.
struct Changes<'a, T> {
    added: Vec<(&'a String, &'a T)>,
    changed: Vec<(&'a String, &'a T, &'a T)>,
    removed: Vec<(&'a String, &'a T)>,
}

fn keyed<'a, T: PartialEq>(old: &'a BTreeMap<String, T>, new: &'a BTreeMap<String, T>) -> Changes<'a, T> {
    Changes {
        added: new.iter().filter(|(k, _)| !old.contains_key(*k)).collect(),
        changed: new.iter().filter_map(|(k, n)| old.get(k).filter(|o| *o != n).map(|o| (k, o, n))).collect(),
        removed: old.iter().filter(|(k, _)| !new.contains_key(*k)).collect(),
    }
}

fn section(out: &mut Vec<String>, title: &str, lines: Vec<String>) {
    if !lines.is_empty() {
        out.push(format!("{title}:"));
        out.extend(lines.into_iter().map(|l| format!("  {l}")));
    }
}

fn size(c: &Content) -> Option<u64> {
    match c {
        Content::Known(bytes) => Some(bytes.len() as u64),
        Content::Redacted(size) => *size,
    }
}

fn bytes(n: Option<u64>) -> String {
    n.map_or("? bytes".into(), |n| format!("{n} byte{}", plural(usize::try_from(n).unwrap_or(2))))
}

fn file_summary(f: &FileView) -> String {
    let secret = if f.secret { ", secret" } else { "" };
    format!("{:04o}, {}:{}, {}{secret}", f.mode, f.uid, f.gid, bytes(size(&f.content)))
}

/// How `running` would become `new`.
pub fn diff(running: &View, new: &View) -> Diff {
    let mut d = Diff::default();
    let out = &mut d.lines;
    if running.generation != new.generation {
        let g = |g: Option<u64>| g.map_or("(none)".into(), |g| g.to_string());
        out.push(format!("generation: {} → {}", g(running.generation), g(new.generation)));
    }
    if running.hostname != new.hostname {
        let h = |h: &Option<String>| h.clone().unwrap_or_else(|| "(default)".into());
        out.push(format!("hostname: {} → {}", h(&running.hostname), h(&new.hostname)));
    }
    section(out, "node", field_changes(&running.node, &new.node));

    let Changes { added, changed, removed } = keyed(&running.sysctl, &new.sysctl);
    let mut lines: Vec<String> = added.iter().map(|(k, v)| format!("+ {k} = {v:?}")).collect();
    lines.extend(changed.iter().map(|(k, o, n)| format!("~ {k}: {o:?} → {n:?}")));
    lines.extend(removed.iter().map(|(k, v)| format!("- {k} (was {v:?})")));
    section(out, "sysctl", lines);

    let mut lines = field_changes(&running.dns, &new.dns).into_iter().map(|c| format!("~ {c}")).collect::<Vec<_>>();
    let Changes { added, changed, removed } = keyed(&running.links, &new.links);
    for (name, l) in added {
        let addrs: Vec<&str> = l.addresses.iter().map(String::as_str).collect();
        let settings: Vec<String> = l.settings.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(format!("+ link {name}: {}; addresses [{}]", settings.join(", "), addrs.join(", ")));
    }
    for (name, o, n) in changed {
        let mut c = field_changes(&o.settings, &n.settings);
        c.extend(n.addresses.difference(&o.addresses).map(|a| format!("+ address {a}")));
        c.extend(o.addresses.difference(&n.addresses).map(|a| format!("- address {a}")));
        lines.push(format!("~ link {name}: {}", c.join("; ")));
    }
    lines.extend(removed.iter().map(|(name, _)| format!("- link {name}")));
    lines.extend(new.routes.difference(&running.routes).map(|r| format!("+ route {r}")));
    lines.extend(running.routes.difference(&new.routes).map(|r| format!("- route {r}")));
    section(out, "network", lines);

    let Changes { added, changed, removed } = keyed(&running.volumes, &new.volumes);
    let mut lines: Vec<String> = added
        .iter()
        .map(|(name, v)| {
            format!("+ volume {name}: {} at {} ({})", show(v.get("device")), show(v.get("mount")), show(v.get("fs")))
        })
        .collect();
    lines.extend(changed.iter().map(|(name, o, n)| format!("~ volume {name}: {}", field_changes(o, n).join("; "))));
    lines.extend(removed.iter().map(|(name, _)| format!("- volume {name}")));
    section(out, "storage", lines);

    let mut lines: Vec<String> = (new.files.iter().filter(|(p, _)| !running.files.contains_key(*p)))
        .map(|(path, f)| format!("+ {path} ({})", file_summary(f)))
        .collect();
    for (path, new_file) in &new.files {
        let Some(old) = running.files.get(path) else { continue };
        let mut c = Vec::new();
        if old.mode != new_file.mode {
            c.push(format!("mode {:04o} → {:04o}", old.mode, new_file.mode));
        }
        if (old.uid, old.gid) != (new_file.uid, new_file.gid) {
            c.push(format!("owner {}:{} → {}:{}", old.uid, old.gid, new_file.uid, new_file.gid));
        }
        if old.secret != new_file.secret {
            c.push(format!("secret {} → {}", old.secret, new_file.secret));
        }
        match (&old.content, &new_file.content) {
            (Content::Known(a), Content::Known(b)) if a == b => {}
            (Content::Known(a), Content::Known(b)) if a.len() == b.len() => {
                c.push(format!("content changed ({})", bytes(Some(b.len() as u64))));
            }
            // Different sizes are a change even when one side is redacted; anything else redacted is unknown.
            (a, b) => match (size(a), size(b)) {
                (Some(x), Some(y)) if x != y => c.push(format!("content {x} → {}", bytes(Some(y)))),
                _ => d.uncompared_secrets += 1,
            },
        }
        if !c.is_empty() {
            lines.push(format!("~ {path}: {}", c.join("; ")));
        }
    }
    lines.extend(running.files.iter().filter(|(p, _)| !new.files.contains_key(*p)).map(|(p, _)| format!("- {p}")));
    section(&mut d.lines, "files", lines);

    let Changes { added, changed, removed } = keyed(&running.services, &new.services);
    let mut lines: Vec<String> = added.iter().map(|(name, s)| format!("+ {name} ({})", service_access(s))).collect();
    for (name, o, n) in changed {
        let mut c = field_changes(&o.fields, &n.fields);
        let Changes { added, changed, removed } = keyed(&o.env, &n.env);
        let env: Vec<String> = added
            .iter()
            .map(|(k, _)| format!("+{k}"))
            .chain(changed.iter().map(|(k, _, _)| format!("~{k}")))
            .chain(removed.iter().map(|(k, _)| format!("-{k}")))
            .collect();
        if !env.is_empty() {
            c.push(format!("env {}", env.join(" ")));
        }
        lines.push(format!("~ {name}: {}", c.join("; ")));
    }
    lines.extend(removed.iter().map(|(name, _)| format!("- {name}")));
    section(&mut d.lines, "services", lines);

    let Changes { added, changed, removed } = keyed(&running.logs, &new.logs);
    let mut lines: Vec<String> = added
        .iter()
        .map(|(url, f)| format!("+ {url} ({}, buffer {} lines)", show(f.get("format")), show(f.get("buffer_lines"))))
        .collect();
    lines.extend(changed.iter().map(|(url, o, n)| format!("~ {url}: {}", field_changes(o, n).join("; "))));
    lines.extend(removed.iter().map(|(url, _)| format!("- {url}")));
    section(&mut d.lines, "log collectors", lines);
    d
}

/// A new service's program, identity and what it is granted of the node: `/usr/bin/app, uid 0:0, capabilities
/// [CAP_NET_ADMIN], devices [/dev/net/tun]` (grants that are empty are left out).
fn service_access(s: &crate::view::ServiceView) -> String {
    let mut parts = vec![
        show(s.fields.get("exec")).to_string(),
        format!("uid {}:{}", show(s.fields.get("uid")), show(s.fields.get("gid"))),
    ];
    for grant in ["capabilities", "devices", "paths"] {
        if let Some(v) = s.fields.get(grant).filter(|v| v.as_str() != "[]") {
            parts.push(format!("{grant} {v}"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
