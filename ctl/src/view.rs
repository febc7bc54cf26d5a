//! A config as the diff sees it, built the same way from the local file (the validated [`Config`]) and from the
//! node's `GET /v1/config` (the type the node serializes, [`RunningConfig`]), with values normalized (addresses,
//! MACs, modes, machine ids) so that equal configs compare equal. A secret file's content is unknown (the node
//! redacts it); its size is compared.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use keel_config::net::{looks_like_mac, normalize_machine_id, Cidr, MacAddr};
use keel_config::status::{program_text, RunningBody, RunningConfig};
use keel_config::{Config, Timestamp};

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
                ("fs", vol.fs.as_str().into()),
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
                ("restart", s.restart.as_str().into()),
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

    /// The node's side, from `GET /v1/config` (without `config`: the node runs none yet).
    pub fn from_running(r: &RunningConfig) -> View {
        // No config: compared as an empty one, without a generation.
        let empty = RunningBody::default();
        let c = r.config.as_ref().unwrap_or(&empty);
        let generation = r.config.as_ref().map(|c| c.generation);
        let mut v = View { generation, hostname: c.node.hostname.clone(), ..View::default() };
        let n = &c.node;
        let uuid = n.uuid.as_ref().map(|u| normalize_machine_id(u).unwrap_or_else(|| u.clone()));
        let mac = n.mac.as_ref().map(|m| norm(m, |s| s.parse::<MacAddr>().ok()));
        let expires = n.expires.map(|s| Timestamp { unix_seconds: s }.to_string());
        let node = [("uuid", uuid), ("mac", mac), ("expires", expires)];
        v.node = node.into_iter().filter_map(|(k, x)| Some((k, x?))).collect();
        v.sysctl = c.sysctl.clone();
        for f in &c.log.forward {
            let fields =
                [("format", f.format.clone()), ("buffer_lines", f.buffer_lines.to_string()), ("ca", f.ca.clone())];
            v.logs.insert(f.url.clone(), fields.into());
        }
        let net = &c.network;
        let ips = |items: &[String]| list(items.iter().map(|s| norm(s, |s| s.parse::<IpAddr>().ok())));
        v.dns = [("nameservers", ips(&net.nameservers)), ("search", list(&net.search)), ("ntp", ips(&net.ntp))].into();
        for l in &net.link {
            let mac = l.mac.as_ref().map(|m| norm(m, |s| s.parse::<MacAddr>().ok()));
            let Some(key) = l.name.clone().or(mac) else { continue };
            let settings = [
                ("up", l.up.to_string()),
                ("mtu", l.mtu.map_or("default".into(), |m| m.to_string())),
                ("dhcp4", l.dhcp4.to_string()),
            ];
            let addresses = l.addresses.iter().map(|a| norm(a, |s| s.parse::<Cidr>().ok())).collect();
            v.links.insert(key, LinkView { settings: settings.into(), addresses });
        }
        for r in &net.route {
            let to = norm(&r.to, |s| s.parse::<Cidr>().ok());
            let via = r.via.as_ref().map(|s| norm(s, |s| s.parse::<IpAddr>().ok()));
            let link = r.link.as_ref().map(|l| match looks_like_mac(l) {
                true => norm(l, |s| s.parse::<MacAddr>().ok()),
                false => l.clone(),
            });
            let metric = r.metric.map(u64::from);
            v.routes.insert(route_line(&to, via.as_deref(), link.as_deref(), metric, r.onlink));
        }
        for vol in &c.storage.volume {
            let fields = [
                ("device", vol.device.clone()),
                ("fs", vol.fs.to_lowercase()),
                ("mount", vol.mount.clone()),
                ("options", list(&vol.options)),
                ("wipe", vol.wipe.to_string()),
                ("label", vol.label.clone().unwrap_or_default()),
            ];
            v.volumes.insert(vol.name.clone(), fields.into());
        }
        for f in &c.file {
            // The config's default: 0600 for a secret file, 0644 otherwise.
            let default_mode = if f.secret { 0o600 } else { 0o644 };
            let content = match f.secret {
                true => Content::Redacted(Some(f.size)),
                false => Content::Known(f.content.as_bytes().to_vec()),
            };
            let mode = u32::from_str_radix(&f.mode, 8).unwrap_or(default_mode);
            v.files.insert(f.path.clone(), FileView { mode, uid: f.uid, gid: f.gid, secret: f.secret, content });
        }
        for s in &c.service {
            let fields = [
                ("exec", s.exec.clone()),
                ("args", format!("{:?}", s.args)),
                ("uid", s.uid.to_string()),
                ("gid", s.gid.to_string()),
                ("capabilities", list(&s.capabilities)),
                ("devices", list(&s.devices)),
                ("paths", list(&s.paths)),
                // Nodes before keel-api's typed reply spelled it `onfailure`.
                ("restart", if s.restart == "onfailure" { "on-failure".into() } else { s.restart.clone() }),
                // A bare name is a service (`after = ["db"]` means `service:db`), as the config crate reads it.
                (
                    "after",
                    list(s.after.iter().map(|a| match a.contains(':') || a == "network" {
                        true => a.clone(),
                        false => format!("service:{a}"),
                    })),
                ),
            ];
            v.services.insert(s.name.clone(), ServiceView { fields: fields.into(), env: s.env.clone() });
        }
        v
    }
}

/// `s` in its canonical form when `parse` understands it, else as it is.
fn norm<T: ToString>(s: &str, parse: impl Fn(&str) -> Option<T>) -> String {
    parse(s).map_or_else(|| s.to_string(), |t| t.to_string())
}
