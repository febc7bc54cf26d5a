//! `[[storage.volume]]`, `[[file]]` and `[[registry]]` (`[[service]]` is in [`super::services`]).

use base64::Engine;

use super::{abs_path_problem, id, is_at_or_under, keel_record, Unique};
use crate::diag::Sink;
use crate::model::{File, Registry, Volume};
use crate::raw::{self, At};
use crate::storage::Selector;

pub(super) fn volumes(raw_volumes: &[At<raw::Volume>], sink: &mut Sink) -> Vec<Volume> {
    let (mut names, mut mounts) = (Unique::new("name"), Unique::new("mount path"));
    let mut out = Vec::new();
    for (i, at) in raw_volumes.iter().enumerate() {
        let v = at.get();
        let path = format!("storage.volume[{i}]");
        let errors_before = sink.diags.len();
        if name_ok(&v.name, &format!("{path}.name"), sink) {
            names.check(
                sink,
                v.name.get().clone(),
                &format!("{:?}", v.name.get()),
                v.name.span(),
                &format!("{path}.name"),
            );
        }
        if let Err(e) = v.device.get().parse::<Selector>() {
            sink.error(v.device.span(), &format!("{path}.device"), e.0);
        }
        let mount = v.mount.get();
        let problem = abs_path_problem(mount)
            .map(str::to_string)
            .or_else(|| (mount == "/").then(|| "must not be / (the image)".to_string()))
            .or_else(|| mount_problem(mount));
        match problem {
            Some(problem) => sink.error(v.mount.span(), &format!("{path}.mount"), problem),
            None => mounts.check(sink, mount.clone(), &format!("{mount:?}"), v.mount.span(), &format!("{path}.mount")),
        }
        if let Some(label) = v.label.as_ref().filter(|l| l.get().is_empty() || l.get().len() > 16) {
            sink.error(label.span(), &format!("{path}.label"), "must be 1..16 bytes (the ext4 limit)");
        } else if let Some(label) =
            v.label.as_ref().filter(|l| l.get().chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            sink.error(label.span(), &format!("{path}.label"), "must not contain spaces or control characters");
        }
        for option in &v.options {
            if let Some(problem) = mount_option_problem(option) {
                sink.error(at.span(), &format!("{path}.options"), format!("{option:?} {problem}"));
            }
        }
        if sink.diags.len() == errors_before {
            out.push(Volume {
                name: v.name.get().clone(),
                device: v.device.get().clone(),
                fs: v.fs,
                mount: mount.clone(),
                options: v.options.clone(),
                wipe: v.wipe,
                label: v.label.as_ref().map(|l| l.get().clone()),
            });
        }
    }
    out
}

/// `[install]`: a disk selector, the slot image by URL and digest, and `wipe` only with the label it must find.
pub(super) fn install(i: &raw::Install, sink: &mut Sink) -> Option<crate::model::Install> {
    let errors_before = sink.diags.len();
    if let Err(e) = i.disk.get().parse::<Selector>() {
        sink.error(i.disk.span(), "install.disk", e.0);
    }
    let artifact = raw::Artifact { url: i.url.clone(), sha256: i.sha256.clone() };
    let image = super::services::artifact(&artifact, "install", sink);
    match &i.label {
        Some(l) if l.get().is_empty() || l.get().len() > 36 || l.get().chars().any(|c| c.is_control()) => {
            sink.error(l.span(), "install.label", "must be 1..36 characters without control characters")
        }
        None if i.wipe => sink.error(
            i.disk.span(),
            "install.wipe",
            "needs install.label: a disk that is not blank is taken only when it carries that label",
        ),
        _ => {}
    }
    let label = i.label.as_ref().map(|l| l.get().clone());
    (sink.diags.len() == errors_before)
        .then(|| image.map(|image| crate::model::Install { disk: i.disk.get().clone(), image, wipe: i.wipe, label }))
        .flatten()
}

pub(super) fn files(raw_files: &[At<raw::File>], sink: &mut Sink) -> Vec<File> {
    let mut paths = Unique::new("path");
    let mut out = Vec::new();
    for (i, at) in raw_files.iter().enumerate() {
        let (f, path) = (at.get(), format!("file[{i}]"));
        let errors_before = sink.diags.len();
        let p = f.path.get();
        let ppath = format!("{path}.path");
        let under_writable = p.starts_with("/run/") || p.starts_with("/var/");
        let problem = abs_path_problem(p)
            .map(str::to_string)
            .or_else(|| (!under_writable).then(|| "must be under /run/ or /var/ (the root is read-only)".to_string()))
            .or_else(|| {
                keel_record(p).map(|r| format!("is inside {r}, one of Keel's own records, which no [[file]] may write"))
            });
        match problem {
            Some(problem) => sink.error(f.path.span(), &ppath, problem),
            None => paths.check(sink, p.clone(), &format!("{p:?}"), f.path.span(), &ppath),
        }
        let content = match (&f.content, &f.content_base64) {
            (Some(text), None) => Some(text.get().as_bytes().to_vec()),
            (None, Some(b64)) => {
                let compact: String = b64.get().chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let decoded = base64::engine::general_purpose::STANDARD.decode(compact);
                let msg = "is not standard base64 (A-Z a-z 0-9 + /, '=' padding)";
                decoded.map_err(|_| sink.error(b64.span(), &format!("{path}.content_base64"), msg)).ok()
            }
            (Some(_), Some(_)) => {
                sink.error(at.span(), &path, "give exactly one of `content` or `content_base64`, not both");
                None
            }
            (None, None) => {
                sink.error(at.span(), &path, "needs `content` or `content_base64`");
                None
            }
        };
        let default_mode = if f.secret { 0o600 } else { 0o644 };
        let mode = f.mode.as_ref().map_or(Some(default_mode), |m| {
            let text = m.get();
            let ok = (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if !ok {
                sink.error(m.span(), &format!("{path}.mode"), format!("{text:?} is not an octal mode like \"0644\""));
            }
            u32::from_str_radix(text, 8).ok().filter(|_| ok)
        });
        let (uid, gid) =
            (id(sink, f.uid.as_ref(), &format!("{path}.uid")), id(sink, f.gid.as_ref(), &format!("{path}.gid")));
        if let (Some(content), Some(mode), true) = (content, mode, sink.diags.len() == errors_before) {
            out.push(File { path: p.clone(), content, mode, uid, gid, secret: f.secret });
        }
    }
    out
}

/// Mount points a volume may not take: the node's own trees (/etc, Keel's records) and every directory that holds
/// them (/var, /var/lib, /run), since a volume there would hide or replace what the node keeps in them.
const PROTECTED_MOUNTS: [&str; 6] = ["/etc", "/var/lib/keel", "/run/keel", "/var", "/var/lib", "/run"];

/// Why a volume cannot be mounted at `mount` (a clean absolute path), or None.
fn mount_problem(mount: &str) -> Option<String> {
    if let Some(p) = PROTECTED_MOUNTS.iter().find(|p| **p == mount) {
        return Some(format!(
            "must not be {p}: it would hide what the node keeps there (/etc, /var/lib/keel, /run/keel)"
        ));
    }
    if let Some(root) = ["/etc", "/var/lib/keel", "/run/keel"].into_iter().find(|r| is_at_or_under(mount, r)) {
        return Some(format!("must not be inside {root}, which holds the node's own records"));
    }
    None
}

/// Services and volumes are named `[a-z0-9-]+`, at most 64 long.
pub(super) fn name_ok(name: &At<String>, path: &str, sink: &mut Sink) -> bool {
    let n = name.get();
    let ok =
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        sink.error(name.span(), path, format!("{n:?} is not a name: 1..64 of [a-z0-9-]"));
    }
    ok
}

/// Mount options are single words (`noatime`, `ro`, `commit=30`); the ones that would change what the mount is
/// (bind, move, remount, loop) are not options of a volume.
fn mount_option_problem(option: &str) -> Option<&'static str> {
    if option.is_empty() || option.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        Some("must be one word without commas")
    } else if matches!(option, "bind" | "rbind" | "move" | "remount" | "loop" | "defaults") {
        Some("is not a mount option a volume may take")
    } else {
        None
    }
}

/// `[[registry]]`: each host once (host or host:port, as image references name it), a token without whitespace,
/// a CA bundle with at least one certificate.
pub(super) fn registries(raw_registries: &[At<raw::Registry>], sink: &mut Sink) -> Vec<Registry> {
    let mut hosts = Unique::new("host");
    let mut out = Vec::new();
    for (i, r) in raw_registries.iter().map(At::get).enumerate() {
        let path = format!("registry[{i}]");
        let before = sink.diags.len();
        let host = r.host.get();
        if let Some(problem) = registry_host_problem(host) {
            sink.error(r.host.span(), &format!("{path}.host"), problem);
        } else {
            hosts.check(sink, host.clone(), &format!("{host:?}"), r.host.span(), &format!("{path}.host"));
        }
        if let Some(t) = &r.token {
            if t.get().is_empty() || t.get().chars().any(|c| c.is_whitespace() || c.is_control()) {
                // The token itself is a secret: the message never quotes it.
                sink.error(t.span(), &format!("{path}.token"), "must be one word without spaces or control characters");
            }
        }
        if let Some(ca) = &r.ca {
            if !ca.get().contains("-----BEGIN CERTIFICATE-----") {
                sink.error(
                    ca.span(),
                    &format!("{path}.ca"),
                    "must hold PEM certificates (-----BEGIN CERTIFICATE-----)",
                );
            }
        }
        if sink.diags.len() == before {
            out.push(Registry {
                host: host.clone(),
                http: r.http,
                token: r.token.as_ref().map(|t| t.get().clone()),
                ca: r.ca.as_ref().map(|c| c.get().clone()),
            });
        }
    }
    out
}

/// A registry host as image references name it: a host name or IPv4 address, optionally ":port".
fn registry_host_problem(host: &str) -> Option<String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Some(format!("{host:?} has a bad port; give host or host:port, e.g. \"registry.example:5000\""));
        }
    }
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-');
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Some(format!("{host:?} is not a host name; give host or host:port, e.g. \"registry.example:5000\""));
    }
    None
}
