//! The kernel command line: split `/proc/cmdline` the way the kernel does and read Keel's `keel.*` early settings.
//!
//! Everything here is pure: [`Settings::from_cmdline`] never fails. A bad or unknown `keel.*` key becomes a
//! [`Warning`] that the caller logs, and the node boots on the default for that key.

use crate::storage::state::StateChoice;
use std::fmt;
use std::time::Duration;

/// What PID 1 does after it has logged a panic and synced the filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAction {
    Reboot,
    Halt,
}

/// Test hooks that exist only to exercise failure paths end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestHook {
    /// PID 1 panics right after the ready line.
    Panic,
    /// PID 1 wedges (its event loop blocks forever) once the boot is set up: a hung system, for the watchdog.
    Hang,
}

/// The node's early settings, from `keel.*` keys on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub log_level: log::LevelFilter,
    pub panic: PanicAction,
    pub panic_delay: Duration,
    pub shutdown_timeout: Duration,
    pub hostname: Option<String>,
    /// A program inside the image (and its arguments) started once the node is ready.
    pub run: Option<Vec<String>>,
    pub test: Option<TestHook>,
    /// The kernel's `ip=` words, in order (interpreted by the network controller; the kernel itself has no IP
    /// autoconfig). Repeatable, as in dracut: one per interface.
    pub ip: Vec<String>,
    /// `bond=`, `vlan=`, `bridge=` (dracut's syntax), in order; parsed by the network (net/topology.rs).
    pub bond: Vec<String>,
    pub vlan: Vec<String>,
    pub bridge: Vec<String>,
    /// SNTP servers from `keel.ntp=a,b`.
    pub ntp: Vec<String>,
    /// Where to pull the node config from (`${mac}`, `${uuid}`, `${hostname}` substituted); its signature is at
    /// the same URL plus `.sig`.
    pub config_url: Option<String>,
    pub config_interval: Duration,
    /// The state volume (persistent /var): `keel.state=<selector>`, `none`, or unset (automatic).
    pub state: StateChoice,
    /// How long an upgraded slot has, on its trial boot, to converge its config before the node rolls back
    /// (`keel.upgrade_deadline=SECONDS`).
    pub upgrade_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_level: log::LevelFilter::Info,
            panic: PanicAction::Reboot,
            panic_delay: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            hostname: None,
            run: None,
            test: None,
            ip: Vec::new(),
            bond: Vec::new(),
            vlan: Vec::new(),
            bridge: Vec::new(),
            ntp: Vec::new(),
            config_url: None,
            config_interval: Duration::from_secs(30),
            state: StateChoice::Auto,
            upgrade_deadline: Duration::from_secs(120),
        }
    }
}

/// Something on the command line that was not taken as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    UnknownKey(String),
    BadValue { key: String, value: String, expected: &'static str },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownKey(key) => write!(f, "cmdline.unknown key={key}"),
            Warning::BadValue { key, value, expected } => {
                write!(f, "cmdline.invalid key={key} value={value:?} expected={expected:?} using=default")
            }
        }
    }
}

/// Splits a command line into `key[=value]` words, honouring double quotes as the kernel does
/// (`keel.run="/bin/x a b"` is one word whose value is `/bin/x a b`).
pub fn split(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_quotes = false;
    let mut started = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

impl Settings {
    /// Reads every `keel.*` key; later occurrences win, as with kernel parameters.
    pub fn from_cmdline(cmdline: &str) -> (Settings, Vec<Warning>) {
        let mut s = Settings::default();
        let mut warnings = Vec::new();
        for (key, value) in split(cmdline) {
            if key == "ip" {
                s.ip.extend(value);
                continue;
            }
            // dracut's network topology words (net/topology.rs); each may repeat.
            match (key.as_str(), &value) {
                ("bond", v) => s.bond.push(v.clone().unwrap_or_default()),
                ("vlan", Some(v)) => s.vlan.push(v.clone()),
                ("bridge", v) => s.bridge.push(v.clone().unwrap_or_else(|| "br0".into())),
                _ => {}
            }
            if !key.starts_with("keel.") {
                continue;
            }
            let value = value.unwrap_or_default();
            let bad = |expected| Warning::BadValue { key: key.clone(), value: value.clone(), expected };
            match key.as_str() {
                "keel.log" => match parse_level(&value) {
                    Some(level) => s.log_level = level,
                    None => warnings.push(bad("error|warn|info|debug|trace")),
                },
                "keel.panic" => match value.as_str() {
                    "reboot" => s.panic = PanicAction::Reboot,
                    "halt" => s.panic = PanicAction::Halt,
                    _ => warnings.push(bad("reboot|halt")),
                },
                "keel.panic_delay" => match parse_seconds(&value, 0, 3600) {
                    Some(d) => s.panic_delay = d,
                    None => warnings.push(bad("seconds 0..3600")),
                },
                "keel.shutdown_timeout" => match parse_seconds(&value, 1, 3600) {
                    Some(d) => s.shutdown_timeout = d,
                    None => warnings.push(bad("seconds 1..3600")),
                },
                "keel.hostname" => match valid_hostname(&value) {
                    true => s.hostname = Some(value.clone()),
                    false => warnings.push(bad("hostname: 1..64 of a-z A-Z 0-9 - .")),
                },
                "keel.run" => {
                    let argv: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                    match argv.first() {
                        Some(path) if path.starts_with('/') => s.run = Some(argv),
                        _ => warnings.push(bad("absolute path of a program in the image, then arguments")),
                    }
                }
                "keel.ntp" => {
                    let servers: Vec<String> = value.split(',').filter(|v| !v.is_empty()).map(str::to_string).collect();
                    match servers.is_empty() {
                        true => warnings.push(bad("comma-separated NTP server addresses or names")),
                        false => s.ntp = servers,
                    }
                }
                "keel.config" => match value.starts_with("http://") || value.starts_with("https://") {
                    true => s.config_url = Some(value.clone()),
                    false => warnings.push(bad("http:// or https:// URL of the signed node config")),
                },
                "keel.config_interval" => match parse_seconds(&value, 1, 86400) {
                    Some(d) => s.config_interval = d,
                    None => warnings.push(bad("seconds 1..86400")),
                },
                "keel.upgrade_deadline" => match parse_seconds(&value, 5, 3600) {
                    Some(d) => s.upgrade_deadline = d,
                    None => warnings.push(bad("seconds 5..3600")),
                },
                "keel.state" => match value.as_str() {
                    "none" => s.state = StateChoice::Disabled,
                    v => match v.parse() {
                        Ok(sel) => s.state = StateChoice::Select(sel),
                        Err(_) => {
                            warnings.push(bad("none, /dev/NAME, serial:…, wwn:…, partlabel:…, label:…, blank[:>=SIZE]"))
                        }
                    },
                },
                "keel.test" => match value.as_str() {
                    "panic" => s.test = Some(TestHook::Panic),
                    "hang" => s.test = Some(TestHook::Hang),
                    _ => warnings.push(bad("panic|hang")),
                },
                _ => warnings.push(Warning::UnknownKey(key.clone())),
            }
        }
        (s, warnings)
    }
}

fn parse_level(value: &str) -> Option<log::LevelFilter> {
    match value {
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        _ => None,
    }
}

fn parse_seconds(value: &str, min: u64, max: u64) -> Option<Duration> {
    let n: u64 = value.parse().ok()?;
    (min..=max).contains(&n).then(|| Duration::from_secs(n))
}

/// RFC 1123 host name (labels of letters, digits and hyphens), at most 64 bytes as the kernel allows.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_values_and_quotes() {
        let words = split("console=ttyS0  quiet keel.run=\"/bin/x a  b\" ro\n");
        assert_eq!(
            words,
            vec![
                ("console".into(), Some("ttyS0".into())),
                ("quiet".into(), None),
                ("keel.run".into(), Some("/bin/x a  b".into())),
                ("ro".into(), None),
            ]
        );
    }

    #[test]
    fn value_may_contain_equals_sign() {
        assert_eq!(split("a=b=c"), vec![("a".into(), Some("b=c".into()))]);
    }

    #[test]
    fn defaults_without_keel_keys() {
        let (s, w) = Settings::from_cmdline("console=ttyS0 panic=-1 quiet");
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
    }

    #[test]
    fn reads_every_known_key() {
        let (s, w) = Settings::from_cmdline(
            "keel.log=debug keel.panic=halt keel.panic_delay=0 keel.shutdown_timeout=3 \
             keel.hostname=edge-1 keel.run=\"/usr/libexec/t orphans 3\" keel.test=panic \
             ip=10.0.2.15::10.0.2.2:255.255.255.0 keel.ntp=10.0.2.2,pool.example",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.log_level, log::LevelFilter::Debug);
        assert_eq!(s.panic, PanicAction::Halt);
        assert_eq!(s.panic_delay, Duration::ZERO);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(s.hostname.as_deref(), Some("edge-1"));
        assert_eq!(s.run, Some(vec!["/usr/libexec/t".into(), "orphans".into(), "3".into()]));
        assert_eq!(s.test, Some(TestHook::Panic));
        assert_eq!(s.ip, ["10.0.2.15::10.0.2.2:255.255.255.0"]);
        assert_eq!(s.ntp, ["10.0.2.2", "pool.example"]);
    }

    #[test]
    fn state_volume_choice() {
        assert_eq!(Settings::from_cmdline("").0.state, StateChoice::Auto);
        assert_eq!(Settings::from_cmdline("keel.state=none").0.state, StateChoice::Disabled);
        let (s, w) = Settings::from_cmdline("keel.state=serial:disk-1");
        assert!(w.is_empty());
        assert_eq!(s.state, StateChoice::Select(keel_config::storage::Selector::Serial("disk-1".into())));
        let (s, _) = Settings::from_cmdline("keel.state=blank:>=8G");
        assert_eq!(s.state, StateChoice::Select(keel_config::storage::Selector::Blank { min_bytes: 8 << 30 }));
        let (s, w) = Settings::from_cmdline("keel.state=sda");
        assert_eq!(s.state, StateChoice::Auto);
        assert!(w[0].to_string().starts_with("cmdline.invalid key=keel.state value=\"sda\""), "{}", w[0]);
    }

    #[test]
    fn config_url_is_http_or_https() {
        for url in ["http://10.0.2.2:8080/n.toml", "https://cfg.example/${uuid}.toml"] {
            let (s, w) = Settings::from_cmdline(&format!("keel.config={url}"));
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(s.config_url.as_deref(), Some(url));
        }
        let (s, w) = Settings::from_cmdline("keel.config=ftp://cfg.example/n.toml");
        assert_eq!(s.config_url, None);
        assert!(w[0].to_string().contains("http:// or https://"), "{}", w[0]);
    }

    #[test]
    fn later_key_wins() {
        let (s, _) = Settings::from_cmdline("keel.panic=halt keel.panic=reboot");
        assert_eq!(s.panic, PanicAction::Reboot);
    }

    #[test]
    fn unknown_keel_keys_are_reported_not_fatal() {
        let (s, w) = Settings::from_cmdline("keel.frobnicate=1 keel.log=warn");
        assert_eq!(w, vec![Warning::UnknownKey("keel.frobnicate".into())]);
        assert_eq!(s.log_level, log::LevelFilter::Warn);
        assert_eq!(w[0].to_string(), "cmdline.unknown key=keel.frobnicate");
    }

    #[test]
    fn bad_values_fall_back_to_defaults_and_name_the_key() {
        let (s, w) = Settings::from_cmdline(
            "keel.log=loud keel.panic=explode keel.shutdown_timeout=0 keel.hostname=-bad- keel.run=relative",
        );
        assert_eq!(s, Settings::default());
        let keys: Vec<_> = w
            .iter()
            .map(|w| match w {
                Warning::BadValue { key, .. } => key.as_str(),
                Warning::UnknownKey(k) => k.as_str(),
            })
            .collect();
        assert_eq!(keys, ["keel.log", "keel.panic", "keel.shutdown_timeout", "keel.hostname", "keel.run"]);
        assert!(w[1].to_string().contains("expected=\"reboot|halt\""), "{}", w[1]);
    }

    #[test]
    fn hostname_rules() {
        assert!(valid_hostname("keel-0a1b2c3d"));
        assert!(valid_hostname("edge-1.example.org"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname("a..b"));
        assert!(!valid_hostname("under_score"));
        assert!(!valid_hostname(&"a".repeat(65)));
    }
}
