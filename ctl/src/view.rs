//! A config as the diff sees it, built the same way from the local file (the validated [`Config`]) and from the
//! node's `GET /v1/config` JSON, with values normalized (addresses, MACs, modes, defaults) so that equal configs
//! compare equal. The JSON reader is tolerant: it takes the node.toml shape (`node.hostname`, `network.link`,
//! `file`, `service`, `storage.volume`) or the plural model names (`links`, `files`, …), ignores unknown keys,
//! and treats a secret file's `"<redacted>"` content as unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use keel_config::model::{Filesystem, Restart};
use keel_config::net::{looks_like_mac, normalize_machine_id, Cidr, MacAddr};
use keel_config::{Config, Timestamp};
use serde_json::Value;

pub type Fields = BTreeMap<&'static str, String>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct View {
    pub generation: Option<u64>,
    pub hostname: Option<String>,
    /// Targeting: `uuid`, `mac`, `expires`.
    pub node: Fields,
    pub sysctl: BTreeMap<String, String>,
    /// `nameservers`, `search`, `ntp`, each rendered as a list.
    pub dns: Fields,
    pub links: BTreeMap<String, LinkView>,
    /// One rendered line per route.
    pub routes: BTreeSet<String>,
    pub volumes: BTreeMap<String, Fields>,
    pub files: BTreeMap<String, FileView>,
    pub services: BTreeMap<String, ServiceView>,
    /// Log collectors by URL: `format`, `buffer_lines`, `ca` (`config` or `image`).
    pub logs: BTreeMap<String, Fields>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// `up`, `mtu`, `dhcp4`.
    pub settings: Fields,
    pub addresses: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Known(Vec<u8>),
    /// Redacted by the node; its size when the node says.
    Redacted(Option<u64>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub secret: bool,
    pub content: Content,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// `exec`, `args`, `uid`, `gid`, `capabilities`, `devices`, `paths` (the grants), `restart`, `after`.
    pub fields: Fields,
    pub env: BTreeMap<String, String>,
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

pub fn route_line(to: &str, via: Option<&str>, link: Option<&str>, metric: Option<u64>, onlink: bool) -> String {
    let mut line = to.to_string();
    if let Some(via) = via {
        line.push_str(&format!(" via {via}"));
    }
    if let Some(link) = link {
        line.push_str(&format!(" link {link}"));
    }
    if let Some(metric) = metric {
        line.push_str(&format!(" metric {metric}"));
    }
    if onlink {
        line.push_str(" onlink");
    }
    line
}

fn restart_name(r: Restart) -> &'static str {
    match r {
        Restart::Always => "always",
        Restart::OnFailure => "on-failure",
        Restart::Never => "never",
    }
}

fn fs_name(f: Filesystem) -> &'static str {
    match f {
        Filesystem::Ext4 => "ext4",
    }
}

impl View {
    /// The local side: a config that passed validation.
    pub fn from_config(c: &Config) -> View {
        let mut v = View { generation: Some(c.generation), hostname: c.target.hostname.clone(), ..View::default() };
        let t = &c.target;
        let node = [
            ("uuid", t.machine_id.clone()),
            ("mac", t.mac.map(|m| m.to_string())),
            ("expires", t.expires.map(|e| e.to_string())),
        ];
        v.node = node.into_iter().filter_map(|(k, x)| Some((k, x?))).collect();
        v.sysctl = c.sysctl.clone();
        let n = &c.network;
        v.dns = [("nameservers", list(&n.nameservers)), ("search", list(&n.search)), ("ntp", list(&n.ntp))].into();
        for l in &n.links {
            let settings = [
                ("up", l.up.to_string()),
                ("mtu", l.mtu.map_or("default".into(), |m| m.to_string())),
                ("dhcp4", l.dhcp4.to_string()),
            ];
            let addresses = l.addresses.iter().map(ToString::to_string).collect();
            v.links.insert(l.selector.to_string(), LinkView { settings: settings.into(), addresses });
        }
        for r in &n.routes {
            let (via, link) = (r.via.map(|v| v.to_string()), r.link.as_ref().map(ToString::to_string));
            let line =
                route_line(&r.to.to_string(), via.as_deref(), link.as_deref(), r.metric.map(u64::from), r.onlink);
            v.routes.insert(line);
        }
        for vol in &c.volumes {
            let fields = [
                ("device", vol.device.clone()),
                ("fs", fs_name(vol.fs).into()),
                ("mount", vol.mount.clone()),
                ("options", list(&vol.options)),
                ("wipe", vol.wipe.to_string()),
                ("label", vol.label.clone().unwrap_or_default()),
            ];
            v.volumes.insert(vol.name.clone(), fields.into());
        }
        for f in &c.files {
            let content = Content::Known(f.content.clone());
            let file = FileView { mode: f.mode, uid: f.uid, gid: f.gid, secret: f.secret, content };
            v.files.insert(f.path.clone(), file);
        }
        for s in &c.services {
            let fields = [
                ("exec", program_text(&s.program)),
                ("args", format!("{:?}", s.args)),
                ("uid", s.uid.to_string()),
                ("gid", s.gid.to_string()),
                ("capabilities", list(&s.capabilities)),
                ("devices", list(&s.devices)),
                ("paths", list(&s.paths)),
                ("restart", restart_name(s.restart).into()),
                ("after", list(&s.after)),
            ];
            v.services.insert(s.name.clone(), ServiceView { fields: fields.into(), env: s.env.clone() });
        }
        for f in &c.log_forward {
            let ca = if f.ca.is_some() { "config" } else { "image" };
            let fields = [
                ("format", f.format.as_str().to_string()),
                ("buffer_lines", f.buffer_lines.to_string()),
                ("ca", ca.into()),
            ];
            v.logs.insert(f.url.clone(), fields.into());
        }
        v
    }

    /// The node's side, from `GET /v1/config` (Null: the node runs no config yet).
    pub fn from_json(j: &Value) -> View {
        // Tolerate an envelope: {"config": {...}, ...}.
        let j = match j.get("config") {
            Some(inner) if inner.is_object() && j.get("version").is_none() && j.get("sysctl").is_none() => inner,
            _ => j,
        };
        let mut v = View { generation: j.get("generation").and_then(Value::as_u64), ..View::default() };
        let node = pick(j, &["node", "target"]);
        v.hostname = node.and_then(|n| text(n.get("hostname")?)).or_else(|| text(j.get("hostname")?));
        if let Some(n) = node {
            let uuid = pick(n, &["uuid", "machine_id"]).and_then(text).map(|u| normalize_machine_id(&u).unwrap_or(u));
            let mac = n.get("mac").and_then(text).map(|m| norm(&m, |s| s.parse::<MacAddr>().ok()));
            let expires = n.get("expires").and_then(expires_text);
            let node = [("uuid", uuid), ("mac", mac), ("expires", expires)];
            v.node = node.into_iter().filter_map(|(k, x)| Some((k, x?))).collect();
        }
        if let Some(Value::Object(m)) = j.get("sysctl") {
            v.sysctl = m.iter().filter_map(|(k, x)| Some((k.clone(), text(x)?))).collect();
        }
        for f in items(j.get("log").unwrap_or(&Value::Null), &["forward"]) {
            let Some(url) = f.get("url").and_then(text) else { continue };
            let fields = [
                ("format", f.get("format").and_then(text).unwrap_or_else(|| "rfc5424".into())),
                ("buffer_lines", f.get("buffer_lines").and_then(text).unwrap_or_default()),
                ("ca", f.get("ca").and_then(text).unwrap_or_else(|| "image".into())),
            ];
            v.logs.insert(url, fields.into());
        }
        let net = j.get("network").unwrap_or(&Value::Null);
        let ips = |key: &str| list(strings(net.get(key)).iter().map(|s| norm(s, |s| s.parse::<IpAddr>().ok())));
        let ntp = list(strings(net.get("ntp")).iter().map(|s| norm(s, |s| s.parse::<IpAddr>().ok())));
        v.dns =
            [("nameservers", ips("nameservers")), ("search", list(strings(net.get("search")))), ("ntp", ntp)].into();
        for l in items(net, &["link", "links"]) {
            let name = l.get("name").and_then(text);
            let mac = l.get("mac").and_then(text).map(|m| norm(&m, |s| s.parse::<MacAddr>().ok()));
            let Some(key) = name.or(mac).or_else(|| l.get("selector").and_then(text)) else { continue };
            let settings = [
                ("up", flag(l.get("up"), true).to_string()),
                ("mtu", l.get("mtu").and_then(text).unwrap_or_else(|| "default".into())),
                ("dhcp4", flag(l.get("dhcp4"), false).to_string()),
            ];
            let addresses = strings(l.get("addresses")).iter().map(|a| norm(a, |s| s.parse::<Cidr>().ok())).collect();
            v.links.insert(key, LinkView { settings: settings.into(), addresses });
        }
        for r in items(net, &["route", "routes"]) {
            let Some(to) = r.get("to").and_then(text) else { continue };
            let to = match to.as_str() {
                "default" => "0.0.0.0/0".to_string(),
                "default6" => "::/0".to_string(),
                _ => norm(&to, |s| s.parse::<Cidr>().ok()),
            };
            let via = r.get("via").and_then(text).map(|s| norm(&s, |s| s.parse::<IpAddr>().ok()));
            let link = r.get("link").and_then(text).map(|l| {
                if looks_like_mac(&l) {
                    norm(&l, |s| s.parse::<MacAddr>().ok())
                } else {
                    l
                }
            });
            let metric = r.get("metric").and_then(Value::as_u64);
            v.routes.insert(route_line(&to, via.as_deref(), link.as_deref(), metric, flag(r.get("onlink"), false)));
        }
        let storage = j.get("storage").unwrap_or(&Value::Null);
        for vol in items(storage, &["volume", "volumes"]).into_iter().chain(items(j, &["volumes"])) {
            let Some(name) = vol.get("name").and_then(text) else { continue };
            let get = |k: &str| vol.get(k).and_then(text).unwrap_or_default();
            let fields = [
                ("device", get("device")),
                ("fs", vol.get("fs").and_then(text).unwrap_or_else(|| "ext4".into()).to_lowercase()),
                ("mount", get("mount")),
                ("options", list(strings(vol.get("options")))),
                ("wipe", flag(vol.get("wipe"), false).to_string()),
                ("label", get("label")),
            ];
            v.volumes.insert(name, fields.into());
        }
        for f in items(j, &["file", "files"]) {
            let Some(path) = f.get("path").and_then(text) else { continue };
            // The config's default: 0600 for a secret file, 0644 otherwise.
            let default_mode = if flag(f.get("secret"), false) { 0o600 } else { 0o644 };
            let mode = match f.get("mode") {
                Some(Value::String(s)) => u32::from_str_radix(s, 8).unwrap_or(default_mode),
                Some(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(default_mode),
                None => default_mode,
            };
            let id = |k: &str| f.get(k).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            let file = FileView {
                mode,
                uid: id("uid"),
                gid: id("gid"),
                secret: flag(f.get("secret"), false),
                content: content(f),
            };
            v.files.insert(path, file);
        }
        for s in items(j, &["service", "services"]) {
            let Some(name) = s.get("name").and_then(text) else { continue };
            let fields = [
                ("exec", s.get("exec").and_then(text).unwrap_or_default()),
                ("args", format!("{:?}", strings(s.get("args")))),
                ("uid", s.get("uid").and_then(text).unwrap_or_else(|| "65534".into())),
                ("gid", s.get("gid").and_then(text).unwrap_or_else(|| "65534".into())),
                ("capabilities", list(strings(s.get("capabilities")))),
                ("devices", list(strings(s.get("devices")))),
                ("paths", list(strings(s.get("paths")))),
                ("restart", s.get("restart").and_then(text).unwrap_or_else(|| "on-failure".into())),
                // A bare name is a service (`after = ["db"]` means `service:db`), as the config crate reads it.
                (
                    "after",
                    list(strings(s.get("after")).into_iter().map(|a| match a.contains(':') || a == "network" {
                        true => a,
                        false => format!("service:{a}"),
                    })),
                ),
            ];
            let env = match s.get("env") {
                Some(Value::Object(m)) => m.iter().filter_map(|(k, x)| Some((k.clone(), text(x)?))).collect(),
                _ => BTreeMap::new(),
            };
            v.services.insert(name, ServiceView { fields: fields.into(), env });
        }
        v
    }
}

/// The first of `keys` present in `v`.
fn pick<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()))
}

fn items<'a>(v: &'a Value, keys: &[&str]) -> Vec<&'a Value> {
    pick(v, keys).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// A scalar as text (strings as they are, numbers and booleans printed).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(text).collect()).unwrap_or_default()
}

fn flag(v: Option<&Value>, default: bool) -> bool {
    v.and_then(Value::as_bool).unwrap_or(default)
}

/// `s` in its canonical form when `parse` understands it, else as it is.
fn norm<T: ToString>(s: &str, parse: impl Fn(&str) -> Option<T>) -> String {
    parse(s).map_or_else(|| s.to_string(), |t| t.to_string())
}

fn expires_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_i64().map(|s| Timestamp { unix_seconds: s }.to_string()),
        // toml's serde form of a date-time, should a node pass its TOML through unchanged.
        Value::Object(m) => m.values().next().and_then(text),
        other => text(other),
    }
}

const REDACTED: &str = "<redacted>";

fn content(f: &Value) -> Content {
    let size = pick(f, &["size", "content_size", "length"]).and_then(Value::as_u64);
    match (f.get("content"), f.get("content_base64")) {
        (Some(Value::String(s)), _) if s != REDACTED => Content::Known(s.as_bytes().to_vec()),
        (_, Some(Value::String(b))) if b != REDACTED => match base64_decode(b) {
            Some(bytes) => Content::Known(bytes),
            None => Content::Redacted(size),
        },
        (None, None) if size.is_none() && !flag(f.get("secret"), false) => Content::Known(Vec::new()),
        _ => Content::Redacted(size),
    }
}

/// Standard base64 with padding (what `content_base64` holds); None for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for quad in bytes.chunks(4) {
        let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || quad[..4 - pad].contains(&b'=') {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | u32::from(digit(c)?);
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// A service's program as one string: its path in the image, `<url> sha256:<hex>` for an artifact, or
/// `image <reference>` (and the entrypoint it replaces with `exec`) for an OCI image (the node's `GET /v1/config`
/// answers the same). Never a registry token.
pub fn program_text(p: &keel_config::model::Program) -> String {
    match p {
        keel_config::model::Program::Path(path) => path.clone(),
        keel_config::model::Program::Artifact { url, sha256 } => format!("{url} sha256:{sha256}"),
        keel_config::model::Program::Image(i) => match &i.exec {
            Some(exec) => format!("image {} exec {exec}", i.reference),
            None => format!("image {}", i.reference),
        },
    }
}
