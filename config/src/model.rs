//! The validated, typed node config: what [`crate::parse`] returns and the init applies. Every value here has
//! passed validation, so the init never re-checks or re-parses text.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::net::{Cidr, Host, MacAddr};
pub use crate::raw::{Filesystem, LogLevel, Restart};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Newer configs have higher generations; see [`crate::check_generation`].
    pub generation: u64,
    pub target: Target,
    /// Dotted sysctl key (e.g. `net.ipv4.ip_forward`) to value.
    pub sysctl: BTreeMap<String, String>,
    pub network: Network,
    pub volumes: Vec<Volume>,
    pub files: Vec<File>,
    pub services: Vec<Service>,
    /// `[[registry]]`: how to reach the OCI registries image services name (each also copied into its services).
    pub registries: Vec<Registry>,
    /// The `[upgrade]` table: a signed slot image to install (A/B upgrade).
    pub upgrade: Option<Upgrade>,
    /// The `[[log.forward]]` collectors.
    pub log_forward: Vec<LogForward>,
    /// The `[rollout]` table: when this node applies the generation (see [`crate::rollout`]).
    pub rollout: Option<crate::rollout::Rollout>,
    /// The `[install]` table: install to disk from a network boot.
    pub install: Option<Install>,
}

/// Where a network-booted node installs itself, and the slot image it writes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// A storage selector (validated).
    pub disk: String,
    pub image: Upgrade,
    pub wipe: bool,
    pub label: Option<String>,
}

/// A slot image by URL and SHA-256 (64 lowercase hex digits); its `keel-image` signature is at `url` + ".sig".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub url: String,
    pub sha256: String,
}

/// The `[node]` table: which node the config is for and until when (see [`crate::check_target`]), and its host name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// 32 lowercase hex digits.
    pub machine_id: Option<String>,
    pub mac: Option<MacAddr>,
    pub expires: Option<Timestamp>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ntp: Vec<Host>,
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub bonds: Vec<Bond>,
    pub vlans: Vec<Vlan>,
    pub bridges: Vec<Bridge>,
}

/// A bond; `mode`, `lacp_rate` and `xmit_hash_policy` hold one of the names validation accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: String,
    pub members: Vec<String>,
    pub mode: String,
    pub miimon: Option<u32>,
    pub lacp_rate: Option<String>,
    pub xmit_hash_policy: Option<String>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub min_links: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub members: Vec<String>,
}

/// How a link (and a route's `link`) picks its interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkSelector {
    Name(String),
    Mac(MacAddr),
}

impl fmt::Display for LinkSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkSelector::Name(name) => f.write_str(name),
            LinkSelector::Mac(mac) => mac.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub selector: LinkSelector,
    pub up: bool,
    pub mtu: Option<u32>,
    pub dhcp4: bool,
    /// Interface addresses; host bits are the address itself.
    pub addresses: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network, host bits zero; `default` is 0.0.0.0/0 and `default6` is ::/0.
    pub to: Cidr,
    pub via: Option<IpAddr>,
    /// The selector of one of [`Network::links`].
    pub link: Option<LinkSelector>,
    pub metric: Option<u32>,
    pub onlink: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub device: String,
    pub fs: Filesystem,
    pub mount: String,
    pub options: Vec<String>,
    pub wipe: bool,
    pub label: Option<String>,
}

/// A file to write. Its `Debug` output leaves out the content of a `secret` file.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// Absolute, normalized, under /run/ or /var/.
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub secret: bool,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted;
        let content: &dyn fmt::Debug = if self.secret {
            redacted = format!("<secret, {} bytes>", self.content.len());
            &redacted
        } else {
            &String::from_utf8_lossy(&self.content)
        };
        f.debug_struct("File")
            .field("path", &self.path)
            .field("content", content)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("secret", &self.secret)
            .finish()
    }
}

/// A supervised program. Everything here was validated; two services with equal values run the same way, so a
/// changed value (and only that) means the service must be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub program: Program,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; "/" unless given.
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    /// `CAP_*` names, each a known Linux capability, each once, in the order given.
    pub capabilities: Vec<String>,
    /// Device nodes (absolute paths under /dev) bound into the service's private /dev.
    pub devices: Vec<String>,
    /// Paths under /sys or /proc/sys the service may write (read-only for it otherwise).
    pub paths: Vec<String>,
    /// setrlimit values, soft = hard; `None` is unlimited.
    pub rlimits: BTreeMap<Rlimit, Option<u64>>,
    pub cgroup: CgroupLimits,
    pub restart: Restart,
    /// A signal name as the kernel headers spell it, e.g. `SIGTERM`.
    pub stop_signal: String,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout_s: u32,
    pub after: Vec<After>,
    pub log_level: LogLevel,
}

/// What a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// An absolute path in the image.
    Path(String),
    /// Downloaded from `url`; runs only if its SHA-256 is `sha256` (64 lowercase hex digits).
    Artifact { url: String, sha256: String },
    /// An OCI image pulled by digest and run in its own namespaces on its read-only root.
    Image(Box<Image>),
}

/// An image service's image, and which of the image config's values the service's own keys replace.
///
/// The rule: `exec` replaces the entrypoint; `args`, when given, replace the cmd; `env` is the image's env with
/// the config's names replacing the same names; `workdir`, `uid` and `gid`, when given, replace the image's
/// working dir and user. The image's user 0 (root) is not taken: root must be asked for with `uid = 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `host[:port]/repository@sha256:<64 hex>`, as the config gave it (a digest reference, checked).
    pub reference: String,
    /// How to reach the registry the reference names: its `[[registry]]` entry, or HTTPS anonymously.
    pub registry: Registry,
    /// The service's `exec`: replaces the image's entrypoint.
    pub exec: Option<String>,
    /// The config gave `args` (they replace the image's cmd, even when empty).
    pub args_given: bool,
    /// The config gave `workdir` (else the image's working dir, else "/").
    pub workdir_given: bool,
    /// The config gave `uid` / `gid` (else the image's user, never root; else 65534).
    pub uid_given: bool,
    pub gid_given: bool,
    /// Host directories bound read-write at the same path inside: the mount points of the `[[storage.volume]]`s
    /// the service starts after.
    pub binds: Vec<String>,
}

/// A `[[registry]]` entry. Its `Debug` output never shows the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// host or host:port, as image references name it.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub http: bool,
    /// Bearer token (a secret).
    pub token: Option<String>,
    /// PEM CA certificates for the registry's TLS.
    pub ca: Option<String>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("http", &self.http)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .field("ca", &self.ca.as_ref().map(|c| format!("<{} bytes of PEM>", c.len())))
            .finish()
    }
}

/// Something a service starts after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum After {
    /// The network controller reports the network ready.
    Network,
    /// A `[[storage.volume]]` of this config, by name.
    Volume(String),
    /// Another `[[service]]` of this config, by name.
    Service(String),
}

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            After::Network => f.write_str("network"),
            After::Volume(v) => write!(f, "volume:{v}"),
            After::Service(s) => write!(f, "service:{s}"),
        }
    }
}

/// The service's cgroup limits; `None` leaves the kernel's default ("max").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// memory.max, bytes.
    pub memory_max: Option<u64>,
    /// cpu.max.
    pub cpu_max: Option<CpuMax>,
    /// pids.max.
    pub pids_max: Option<u64>,
}

/// cpu.max: at most `quota_us` of CPU time in every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota_us: u64,
    pub period_us: u64,
}

/// A resource limit a service may set (the `RLIMIT_*` of setrlimit(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rlimit {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl Rlimit {
    pub const ALL: [Rlimit; 16] = [
        Rlimit::As,
        Rlimit::Core,
        Rlimit::Cpu,
        Rlimit::Data,
        Rlimit::Fsize,
        Rlimit::Locks,
        Rlimit::Memlock,
        Rlimit::Msgqueue,
        Rlimit::Nice,
        Rlimit::Nofile,
        Rlimit::Nproc,
        Rlimit::Rss,
        Rlimit::Rtprio,
        Rlimit::Rttime,
        Rlimit::Sigpending,
        Rlimit::Stack,
    ];

    /// The config key: `nofile` for `RLIMIT_NOFILE`.
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::As => "as",
            Rlimit::Core => "core",
            Rlimit::Cpu => "cpu",
            Rlimit::Data => "data",
            Rlimit::Fsize => "fsize",
            Rlimit::Locks => "locks",
            Rlimit::Memlock => "memlock",
            Rlimit::Msgqueue => "msgqueue",
            Rlimit::Nice => "nice",
            Rlimit::Nofile => "nofile",
            Rlimit::Nproc => "nproc",
            Rlimit::Rss => "rss",
            Rlimit::Rtprio => "rtprio",
            Rlimit::Rttime => "rttime",
            Rlimit::Sigpending => "sigpending",
            Rlimit::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Rlimit> {
        Rlimit::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// The uid and gid a service runs as when its config names none: nobody / nogroup.
pub const DEFAULT_SERVICE_ID: u32 = 65534;

/// PID 1's real and saved user id (its effective uid stays 0). A process may signal another only if their user
/// ids match or it holds CAP_KILL, so a service running as root without CAP_KILL cannot signal PID 1. No service
/// may run as this uid.
pub const INIT_REAL_UID: u32 = 4_294_967_294;

/// Keel's own records: the config, its keys, the API identity, the upgrade state (/var/lib/keel), the image's
/// trust (/etc/keel) and the node's run-time state (/run/keel). `[[file]]` entries cannot write there, volumes
/// cannot mount over them, and services do not see the first two.
pub const KEEL_RECORDS: [&str; 3] = ["/var/lib/keel", "/etc/keel", "/run/keel"];

/// The signals a service may be stopped with.
pub const STOP_SIGNALS: [&str; 10] =
    ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGPWR", "SIGWINCH", "SIGALRM"];

/// The Linux capabilities a service may keep, indexed by their number (`CAP_CHOWN` is 0).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_content_is_not_in_debug_output() {
        let file = File {
            path: "/run/keel/token".into(),
            content: b"hunter2".to_vec(),
            mode: 0o600,
            uid: 0,
            gid: 0,
            secret: true,
        };
        let shown = format!("{file:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<secret, 7 bytes>") && shown.contains("0600"), "{shown}");
        let open = File { secret: false, ..file };
        assert!(format!("{open:?}").contains("hunter2"));
    }
}

/// A log collector (`[[log.forward]]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogForward {
    /// What the config said, e.g. `tcp://10.0.2.2:5514`: the destination's name in status and metrics.
    pub url: String,
    pub tls: bool,
    /// An IP address or a DNS name (without brackets).
    pub host: String,
    pub port: u16,
    pub format: LogFormat,
    /// PEM CA certificates for TLS; `None` is the image's bundle.
    pub ca: Option<String>,
    pub buffer_lines: usize,
}

/// How a line is written to a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogFormat {
    /// RFC 5424 syslog, each message framed by octet counting (RFC 6587 section 3.4.1).
    Rfc5424,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Rfc5424 => "rfc5424",
            LogFormat::Json => "json",
        }
    }
}

/// Lines a collector's buffer holds unless `buffer_lines` says otherwise.
pub const DEFAULT_LOG_BUFFER_LINES: usize = 10_000;
