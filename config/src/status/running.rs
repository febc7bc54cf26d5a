//! `GET /v1/config`: the running config in the shape of node.toml (so clients diff like with like), inside an
//! envelope that says where it came from; the content of secret files is redacted. The node builds it from its
//! applied config, keelctl reads it for `plan`. Fields are in alphabetical order: the bytes the node sent when
//! this was built with `json!`.

use crate::model::{Config, LinkSelector, Program};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a secret file's `content` says instead.
pub const REDACTED: &str = "<redacted>";

/// The whole of `GET /v1/config`; `config` and `generation` are null while the node runs no config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningConfig {
    pub config: Option<RunningBody>,
    pub generation: Option<u64>,
    /// Who signed it (the allowed_signers principal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Where it came from: `api`, a pull URL, the boot medium.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The config itself, table by table as node.toml names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningBody {
    pub file: Vec<RunningFile>,
    pub generation: u64,
    pub log: RunningLog,
    pub network: RunningNetwork,
    pub node: RunningNode,
    pub service: Vec<RunningService>,
    pub storage: RunningStorage,
    pub sysctl: BTreeMap<String, String>,
    pub version: u32,
}

/// `[node]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningNode {
    /// Seconds since 1970.
    pub expires: Option<i64>,
    pub hostname: Option<String>,
    pub mac: Option<String>,
    /// The machine id the config targets.
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningNetwork {
    pub link: Vec<RunningLink>,
    pub nameservers: Vec<String>,
    pub ntp: Vec<String>,
    pub route: Vec<RunningRoute>,
    pub search: Vec<String>,
}

/// `[[network.link]]`: selected by `name` or by `mac` (one of the two is present).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningLink {
    pub addresses: Vec<String>,
    pub dhcp4: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub up: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningRoute {
    pub link: Option<String>,
    pub metric: Option<u32>,
    pub onlink: bool,
    pub to: String,
    pub via: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningStorage {
    pub volume: Vec<RunningVolume>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningVolume {
    pub device: String,
    pub fs: String,
    pub label: Option<String>,
    pub mount: String,
    pub name: String,
    pub options: Vec<String>,
    pub wipe: bool,
}

/// `[[file]]`: `content` is the text ([`REDACTED`] for a secret file), `size` its length in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningFile {
    pub content: String,
    pub gid: u32,
    /// Octal, four digits (`0644`).
    pub mode: String,
    pub path: String,
    pub secret: bool,
    pub size: u64,
    pub uid: u32,
}

/// `[[service]]`: `exec` is the path, `URL sha256:HEX` for an artifact, or `image REF [exec ENTRYPOINT]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningService {
    pub after: Vec<String>,
    pub args: Vec<String>,
    pub capabilities: Vec<String>,
    pub devices: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub exec: String,
    pub gid: u32,
    pub name: String,
    pub paths: Vec<String>,
    pub restart: String,
    pub uid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningLog {
    pub forward: Vec<RunningForward>,
}

/// `[[log.forward]]`: `ca` says whose CA bundle it trusts, `config` or `image` (never the certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningForward {
    pub buffer_lines: u64,
    pub ca: String,
    pub format: String,
    pub url: String,
}

/// A service's program as one string: its path in the image, `<url> sha256:<hex>` for an artifact, or
/// `image <reference>` (and the entrypoint it replaces with `exec`) for an OCI image. Never a registry token.
pub fn program_text(p: &Program) -> String {
    match p {
        Program::Path(path) => path.clone(),
        Program::Artifact { url, sha256 } => format!("{url} sha256:{sha256}"),
        Program::Image(i) => match &i.exec {
            Some(exec) => format!("image {} exec {exec}", i.reference),
            None => format!("image {}", i.reference),
        },
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

impl RunningBody {
    /// `c` as the node shows it: secret files' content redacted, the registry's token left out.
    pub fn of(c: &Config, generation: u64) -> RunningBody {
        let link = |l: &crate::model::Link| {
            let (name, mac) = match &l.selector {
                LinkSelector::Name(n) => (Some(n.clone()), None),
                LinkSelector::Mac(m) => (None, Some(m.to_string())),
            };
            RunningLink { addresses: strings(&l.addresses), dhcp4: l.dhcp4, mac, mtu: l.mtu, name, up: l.up }
        };
        let route = |r: &crate::model::Route| RunningRoute {
            link: r.link.as_ref().map(|l| l.to_string()),
            metric: r.metric,
            onlink: r.onlink,
            to: r.to.to_string(),
            via: r.via.map(|v| v.to_string()),
        };
        let file = |f: &crate::model::File| RunningFile {
            content: if f.secret { REDACTED.into() } else { String::from_utf8_lossy(&f.content).into_owned() },
            gid: f.gid,
            mode: format!("{:04o}", f.mode),
            path: f.path.clone(),
            secret: f.secret,
            size: f.content.len() as u64,
            uid: f.uid,
        };
        let service = |s: &crate::model::Service| RunningService {
            after: strings(&s.after),
            args: s.args.clone(),
            capabilities: s.capabilities.clone(),
            devices: s.devices.clone(),
            env: s.env.clone(),
            exec: program_text(&s.program),
            gid: s.gid,
            name: s.name.clone(),
            paths: s.paths.clone(),
            restart: s.restart.as_str().into(),
            uid: s.uid,
        };
        let volume = |v: &crate::model::Volume| RunningVolume {
            device: v.device.clone(),
            fs: v.fs.as_str().into(),
            label: v.label.clone(),
            mount: v.mount.clone(),
            name: v.name.clone(),
            options: v.options.clone(),
            wipe: v.wipe,
        };
        let forward = |f: &crate::model::LogForward| RunningForward {
            buffer_lines: f.buffer_lines as u64,
            ca: if f.ca.is_some() { "config" } else { "image" }.into(),
            format: f.format.as_str().into(),
            url: f.url.clone(),
        };
        RunningBody {
            file: c.files.iter().map(file).collect(),
            generation,
            log: RunningLog { forward: c.log_forward.iter().map(forward).collect() },
            network: RunningNetwork {
                link: c.network.links.iter().map(link).collect(),
                nameservers: strings(&c.network.nameservers),
                ntp: strings(&c.network.ntp),
                route: c.network.routes.iter().map(route).collect(),
                search: c.network.search.clone(),
            },
            node: RunningNode {
                expires: c.target.expires.map(|t| t.unix_seconds),
                hostname: c.target.hostname.clone(),
                mac: c.target.mac.map(|m| m.to_string()),
                uuid: c.target.machine_id.clone(),
            },
            service: c.services.iter().map(service).collect(),
            storage: RunningStorage { volume: c.volumes.iter().map(volume).collect() },
            sysctl: c.sysctl.clone(),
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_content_never_leaves_and_the_shape_is_node_toml() {
        let text = "version = 1\ngeneration = 5\n[[file]]\npath = \"/run/k\"\ncontent = \"hunter2\"\nsecret = true\n\
                    [[service]]\nname = \"a\"\nexec = \"/a\"\n[[storage.volume]]\nname = \"d\"\ndevice = \"/dev/vdb\"\n\
                    mount = \"/var/d\"\n";
        let body = RunningBody::of(&crate::parse("node.toml", text).unwrap(), 5);
        let shown = serde_json::to_string(&body).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!((body.file[0].content.as_str(), body.file[0].size), (REDACTED, 7));
        // The spellings node.toml takes, so a client can read them back as it reads a config.
        assert_eq!((body.service[0].restart.as_str(), body.storage.volume[0].fs.as_str()), ("on-failure", "ext4"));
        let back: RunningBody = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, body);
    }
}
