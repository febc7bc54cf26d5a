//! `GET /v1/config`: the running config in the shape of node.toml (so clients diff like with like), inside an
//! envelope that says where it came from; the content of secret files is redacted. The node builds it from its
//! applied config, keelctl reads it for `plan`. Fields are in alphabetical order: the bytes the node sent when
//! this was built with `json!`.

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
