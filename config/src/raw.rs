//! The node config as written in TOML: what serde reads, every field that validation reports on wrapped in [`At`]
//! so its error can name a line and column. Values stay close to the text here (addresses are strings, numbers are
//! `i64`) so that one bad value becomes one collected validation error instead of stopping the parse;
//! [`crate::validate`] turns this into the typed [`crate::Config`]. The JSON Schema is derived from these types.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::value::Datetime;

/// A value and the byte range it came from in the TOML text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct At<T>(toml::Spanned<T>);

impl<T> At<T> {
    pub fn get(&self) -> &T {
        self.0.get_ref()
    }

    pub fn span(&self) -> Range<usize> {
        self.0.span()
    }
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema> schemars::JsonSchema for At<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

fn yes() -> bool {
    true
}

/// A Keel node config (`version = 1`). Unknown keys are errors everywhere.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(title = "Keel node config"))]
pub struct Document {
    /// Schema version of this file; must be 1.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1)))]
    pub version: At<i64>,
    /// Increases with every config for the node; a node applies only a generation newer than the one it runs.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub generation: At<i64>,
    /// Which node the config is for, and until when. A node refuses a config that targets another node.
    pub node: Option<At<Node>>,
    /// Kernel parameters: dotted sysctl key to value, e.g. "net.ipv4.ip_forward" = "1".
    #[serde(default)]
    pub sysctl: BTreeMap<At<String>, At<String>>,
    pub network: Option<Network>,
    pub storage: Option<Storage>,
    /// Files written at apply time, under /run/ or /var/ (the root is read-only).
    #[serde(default)]
    pub file: Vec<At<File>>,
    /// Long-running programs the init supervises.
    #[serde(default)]
    pub service: Vec<At<Service>>,
    /// OCI registries that `image` services pull from: how to reach each (TLS CA, plain HTTP, a bearer token).
    /// A registry not listed here is reached over HTTPS, anonymously, trusting the image's CA bundle.
    #[serde(default)]
    pub registry: Vec<At<Registry>>,
    /// An A/B upgrade: the slot image (`make upgrade-image`) at `url`, whose SHA-256 is `sha256`, signed for the
    /// `keel-image` namespace at `url` + ".sig". The node installs it once, unless its last upgrade was this image.
    pub upgrade: Option<At<Artifact>>,
    /// Where the node sends its log lines (its own, the kernel's, its services').
    pub log: Option<Log>,
    /// A staged rollout: how fast this generation reaches the fleet (see config/README.md, "Staged rollouts").
    pub rollout: Option<crate::rollout::RawRollout>,
    /// Install to disk: a node booted from the network partitions this disk as `make disk` does (ESP, slots A
    /// and B, state), writes the signed slot image at `url` to slot A, carries its identity over and reboots into it.
    pub install: Option<At<Install>>,
}

/// `[install]`: which disk a network-booted node installs itself to, and the slot image it writes there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Install {
    /// Which disk, as volumes name one: "/dev/vda", "serial:…", "wwn:…", "model:…", "path:…", "blank", …
    pub disk: At<String>,
    /// The slot image (`make upgrade-image`), http:// or https://; its `keel-image` signature is at url + ".sig".
    pub url: At<String>,
    /// The slot image's SHA-256, 64 hex digits.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9a-fA-F]{64}$")))]
    pub sha256: At<String>,
    /// Take a disk that is not blank, but only when it carries `label` (a filesystem label or GPT partition name).
    #[serde(default)]
    pub wipe: bool,
    /// The label a non-blank disk must carry for `wipe` to take it.
    pub label: Option<At<String>>,
}

/// Targeting: every key given must match the node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Node {
    /// The node's machine id (its SMBIOS UUID), dashed UUID or 32 hex digits; compared case-insensitively.
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"))
    )]
    pub uuid: Option<At<String>>,
    /// One of the node's MAC addresses, e.g. "52:54:00:12:34:56".
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")))]
    pub mac: Option<At<String>>,
    /// The config is refused from this instant on. A TOML offset date-time, e.g. 2026-12-31T00:00:00Z.
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub expires: Option<At<Datetime>>,
    /// Host name (RFC 1123, at most 64 characters); replaces the default keel-<id>.
    pub hostname: Option<At<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Network {
    /// DNS servers, IP addresses.
    #[serde(default)]
    pub nameservers: Vec<At<String>>,
    /// DNS search domains.
    #[serde(default)]
    pub search: Vec<At<String>>,
    /// NTP servers, IP addresses or host names.
    #[serde(default)]
    pub ntp: Vec<At<String>>,
    #[serde(default)]
    pub link: Vec<At<Link>>,
    #[serde(default)]
    pub route: Vec<At<Route>>,
    /// Bonds Keel makes; give their addresses, DHCP and MTU with a [[network.link]] of the same name.
    #[serde(default)]
    pub bond: Vec<At<Bond>>,
    /// Tagged VLANs on a NIC or bond.
    #[serde(default)]
    pub vlan: Vec<At<Vlan>>,
    /// Bridges over NICs or bonds.
    #[serde(default)]
    pub bridge: Vec<At<Bridge>>,
}

/// A bond (link aggregation): its members are enslaved to it and carry no address of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Bond {
    /// Interface name of the bond, e.g. "bond0".
    pub name: At<String>,
    /// Interface names of its members, e.g. ["eno1", "eno2"].
    pub members: Vec<At<String>>,
    /// "802.3ad" (LACP), "active-backup", "balance-rr", "balance-xor", "broadcast", "balance-tlb" or "balance-alb".
    pub mode: At<String>,
    /// Link monitoring interval in milliseconds (default 100; 0 turns it off).
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967295_i64)))]
    pub miimon: Option<At<i64>>,
    /// 802.3ad only: "slow" (every 30 s, the default) or "fast" (every second) LACPDUs.
    pub lacp_rate: Option<At<String>>,
    /// "layer2", "layer2+3", "layer3+4", "encap2+3" or "encap3+4": which headers choose a flow's member.
    pub xmit_hash_policy: Option<At<String>>,
    /// Milliseconds a member must be up before it is used.
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967295_i64)))]
    pub updelay: Option<At<i64>>,
    /// Milliseconds a member must be down before it is dropped.
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967295_i64)))]
    pub downdelay: Option<At<i64>>,
    /// 802.3ad: members that must be up for the bond to have carrier.
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967295_i64)))]
    pub min_links: Option<At<i64>>,
}

/// An 802.1Q VLAN on `parent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Vlan {
    /// Interface name of the VLAN, e.g. "bond0.100".
    pub name: At<String>,
    /// The NIC or bond it is tagged on.
    pub parent: At<String>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 4094)))]
    pub id: At<i64>,
}

/// A Linux bridge over `members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Bridge {
    /// Interface name of the bridge, e.g. "br0".
    pub name: At<String>,
    /// Interface names of its ports.
    #[serde(default)]
    pub members: Vec<At<String>>,
}

/// One network interface, selected by exactly one of `name` or `mac`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Link {
    /// Kernel interface name, e.g. "eth0".
    pub name: Option<At<String>>,
    /// The interface's MAC address.
    pub mac: Option<At<String>>,
    /// Bring the link up.
    #[serde(default = "yes")]
    pub up: bool,
    #[cfg_attr(feature = "schema", schemars(range(min = 68, max = 65535)))]
    pub mtu: Option<At<i64>>,
    /// Ask DHCPv4 for an address.
    #[serde(default)]
    pub dhcp4: bool,
    /// Static addresses in CIDR form, IPv4 or IPv6, e.g. "10.0.2.15/24".
    #[serde(default)]
    pub addresses: Vec<At<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Route {
    /// "default" (0.0.0.0/0), "default6" (::/0), or a network in CIDR form with no host bits set.
    pub to: At<String>,
    /// Gateway address; it must lie in a subnet of the link's addresses unless `onlink` or the link uses DHCP.
    pub via: Option<At<String>>,
    /// The link, by the `name` or `mac` that selects it in [[network.link]].
    pub link: Option<At<String>>,
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967295_i64)))]
    pub metric: Option<At<i64>>,
    /// Treat the gateway as directly reachable on the link even outside its subnets.
    #[serde(default)]
    pub onlink: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Storage {
    #[serde(default)]
    pub volume: Vec<At<Volume>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Filesystem {
    #[default]
    Ext4,
}

impl Filesystem {
    /// As node.toml spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
        }
    }
}

/// A block-device volume: found by its selector, partitioned and formatted only when blank, then mounted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Volume {
    /// Unique name, [a-z0-9-]+.
    pub name: At<String>,
    /// Which block device: "/dev/vdb", "serial:…", "wwn:…", "model:…", "path:…", "partlabel:…", "label:…", "blank" or "blank:>=4G".
    pub device: At<String>,
    #[serde(default)]
    pub fs: Filesystem,
    /// Absolute mount path.
    pub mount: At<String>,
    /// Mount options, one word each: "ro", "noatime", "commit=30", …
    #[serde(default)]
    pub options: Vec<String>,
    /// Reformat a filesystem that carries this volume's label but is not the wanted kind (never anything else).
    #[serde(default)]
    pub wipe: bool,
    /// Filesystem label.
    pub label: Option<At<String>>,
}

/// A file written when the config is applied; exactly one of `content` / `content_base64`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct File {
    /// Absolute path under /run/ or /var/, outside Keel's own records (/run/keel, /var/lib/keel).
    pub path: At<String>,
    /// Text content.
    pub content: Option<At<String>>,
    /// Binary content, standard base64.
    pub content_base64: Option<At<String>>,
    /// Octal permission bits as a string; default "0644", or "0600" for a `secret` file.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-7]{3,4}$")))]
    pub mode: Option<At<String>>,
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967294_i64)))]
    pub uid: Option<At<i64>>,
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967294_i64)))]
    pub gid: Option<At<i64>>,
    /// Redact the content wherever the config is shown.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Restart {
    /// After every exit.
    Always,
    /// After a non-zero exit status or a death by signal.
    #[default]
    OnFailure,
    /// Runs once per start of its definition.
    Never,
}

impl Restart {
    /// As node.toml spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

/// The level a service's stdout/stderr lines are logged at; `off` keeps them out of the console (they still go
/// into the node's log buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// A program fetched by URL and run only if its SHA-256 is the one given here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Artifact {
    /// http:// or https:// URL (the digest, not the transport, makes it trustworthy).
    pub url: At<String>,
    /// 64 hex digits.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9a-fA-F]{64}$")))]
    pub sha256: At<String>,
}

/// How the node reaches one OCI registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Registry {
    /// The registry as image references name it: host or host:port, e.g. "registry.example:5000".
    pub host: At<String>,
    /// Plain HTTP instead of HTTPS (for a registry on a trusted link only); default false.
    #[serde(default)]
    pub http: bool,
    /// A bearer token sent to this registry (a secret: never shown by the API, the logs, status or `keelctl plan`).
    pub token: Option<At<String>>,
    /// PEM CA certificates the registry's TLS certificate must chain to (instead of the image's bundle).
    pub ca: Option<At<String>>,
}

/// Bytes, or a size with a binary suffix: "512M", "2G", "64K"; "max" for no limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a number of bytes or a size like \"512M\"")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Size {
    Bytes(i64),
    Text(String),
}

/// A share of one CPU (0.5, 2) or the cgroup's own "quota period" in microseconds ("50000 100000"); "max" for none.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a fraction of a CPU like 0.5 or \"quota period\" like \"50000 100000\"")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CpuMax {
    Fraction(f64),
    Text(String),
}

/// An rlimit value (soft = hard): a number or "unlimited".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a number or \"unlimited\"")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Limit {
    Number(i64),
    Text(String),
}

/// A long-running program the init supervises with least privilege: its own cgroup, only the capabilities listed,
/// no_new_privs always set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Service {
    /// Unique name, [a-z0-9-]+.
    pub name: At<String>,
    /// Absolute path of the program in the image; exactly one of `exec`, `artifact` or `image`. With `image`,
    /// it replaces the image's entrypoint (a path inside the image).
    pub exec: Option<At<String>>,
    /// A downloaded program, verified by its SHA-256 before it ever runs; exactly one of `exec`, `artifact` or
    /// `image`.
    pub artifact: Option<At<Artifact>>,
    /// An OCI image pinned by digest, "registry.example/ns/app@sha256:<64 hex>" (a tag is refused): pulled, then
    /// run in its own mount, PID, IPC and UTS namespaces on the image's read-only root. `exec`, `args`, `env`,
    /// `workdir`, `uid` and `gid` override the image config's entrypoint, cmd, env, working dir and user.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[^@]+@sha256:[0-9a-f]{64}$")))]
    pub image: Option<At<String>>,
    #[serde(default)]
    pub args: Vec<At<String>>,
    /// Environment variables (the only ones the service gets).
    #[serde(default)]
    pub env: BTreeMap<At<String>, String>,
    /// Working directory, absolute; default "/".
    pub workdir: Option<At<String>>,
    /// User id; default 65534 (nobody). 0 (root) must be asked for; 4294967294 is kept for PID 1.
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967293_i64)))]
    pub uid: Option<At<i64>>,
    /// Group id; default 65534 (nogroup).
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 4294967293_i64)))]
    pub gid: Option<At<i64>>,
    /// Capabilities kept, by name, e.g. "CAP_NET_BIND_SERVICE"; every other one is dropped from all five sets.
    #[serde(default)]
    pub capabilities: Vec<At<String>>,
    /// Device nodes the service may use, e.g. "/dev/kvm", "/dev/net/tun": each is bound into its private /dev,
    /// which otherwise holds only the basic character devices (zero, full, random, tty, …), pts and shm, and no
    /// block device.
    #[serde(default)]
    pub devices: Vec<At<String>>,
    /// Host paths under /sys or /proc/sys the service may write (its view of both is read-only otherwise),
    /// e.g. "/proc/sys/net/ipv4/ip_forward". Keel's own records are never granted.
    #[serde(default)]
    pub paths: Vec<At<String>>,
    /// setrlimit values (soft = hard) by name: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile,
    /// nproc, rss, rtprio, rttime, sigpending, stack; e.g. { nofile = 1024, core = 0 }.
    #[serde(default)]
    pub rlimits: BTreeMap<At<String>, At<Limit>>,
    /// cgroup memory.max.
    pub memory_max: Option<At<Size>>,
    /// cgroup cpu.max.
    pub cpu_max: Option<At<CpuMax>>,
    /// cgroup pids.max.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 4194304)))]
    pub pids_max: Option<At<i64>>,
    /// When to start it again after it exits; default "on-failure".
    #[serde(default)]
    pub restart: Restart,
    /// The signal that asks it to stop, e.g. "SIGTERM" (the default) or "SIGINT".
    pub stop_signal: Option<At<String>>,
    /// Seconds between the stop signal and SIGKILL; default 10.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 3600)))]
    pub stop_timeout: Option<At<i64>>,
    /// What must be up first: "network", "volume:<name>", "service:<name>" (or just "<name>").
    #[serde(default)]
    pub after: Vec<At<String>>,
    /// The level its stdout/stderr lines are logged at; default "info".
    #[serde(default)]
    pub log_level: LogLevel,
}

/// The `[log]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Log {
    /// Collectors that get every `keel:` line, kernel message and service output line, each over its own
    /// connection with its own bounded buffer.
    #[serde(default)]
    pub forward: Vec<At<LogForward>>,
}

/// One log collector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogForward {
    /// "tcp://host:port" (plain TCP) or "tls://host:port" (TLS, RFC 5425); host is an IP address or a DNS name,
    /// IPv6 in brackets.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^(tcp|tls)://.+:[0-9]+$")))]
    pub url: At<String>,
    /// "rfc5424" (syslog, octet-counted as RFC 6587 frames it) or "json" (one JSON object per line); default
    /// "rfc5424".
    pub format: Option<At<String>>,
    /// For tls:// only: the PEM CA certificates to trust instead of the image's bundle (/etc/keel/ca.pem).
    pub ca: Option<At<String>>,
    /// Lines kept while the collector is unreachable (the oldest go first); default 10000.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000000)))]
    pub buffer_lines: Option<At<i64>>,
}
