//! Node addresses and the `known_nodes` file: one `host:port sha256:<64 hex>` per line (`#` comments and blank
//! lines allowed), like ssh's known_hosts. A node is pinned on first use; a changed certificate is refused with the
//! file and line to remove.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The node API's port.
pub const DEFAULT_PORT: u16 = 7443;

/// A node as given with `--node`: `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn parse(text: &str) -> Result<NodeAddr, String> {
        let bad = || format!("--node {text:?}: not HOST[:PORT]; e.g. 10.0.2.15 or 10.0.2.15:{DEFAULT_PORT}");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else if let Some((host, port)) = text.split_once(':') {
            (host, Some(port))
        } else {
            (text, None)
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        };
        let host = host.to_ascii_lowercase();
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '%');
        if host.is_empty() || !host.chars().all(ok) {
            return Err(bad());
        }
        Ok(NodeAddr { host, port })
    }

    /// `host:port`, IPv6 hosts in brackets: the known_nodes key and what is dialled.
    pub fn key(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `sha256:<64 lowercase hex>`, as the node prints it; uppercase hex is accepted and lowercased.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{}", hex.to_lowercase()))
}

/// A pin found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub fingerprint: String,
    /// 1-based.
    pub line: usize,
}

/// The known_nodes file, read once.
#[derive(Debug)]
pub struct KnownNodes {
    pub path: PathBuf,
    text: String,
}

impl KnownNodes {
    /// `--known-nodes`, else `$KEEL_KNOWN_NODES`, else `~/.config/keel/known_nodes`.
    pub fn default_path(flag: Option<PathBuf>) -> Result<PathBuf, String> {
        if let Some(p) = flag.or_else(|| std::env::var_os("KEEL_KNOWN_NODES").filter(|v| !v.is_empty()).map(Into::into))
        {
            return Ok(p);
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".config/keel/known_nodes")),
            None => Err("no HOME for ~/.config/keel/known_nodes; set KEEL_KNOWN_NODES or pass --known-nodes".into()),
        }
    }

    /// A missing file is an empty one.
    pub fn load(path: &Path) -> Result<KnownNodes, String> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: cannot read: {e}; fix it or pass --known-nodes", path.display())),
        };
        Ok(KnownNodes { path: path.to_path_buf(), text })
    }

    /// The first pin for `key`; a malformed line anywhere is an error naming it.
    pub fn find(&self, key: &str) -> Result<Option<Pin>, String> {
        let mut found = None;
        for (i, line) in self.text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (node, fp, extra) = (words.next(), words.next().and_then(parse_fingerprint), words.next());
            let (Some(node), Some(fingerprint), None) = (node, fp, extra) else {
                return Err(format!(
                    "{}:{}: not `host:port sha256:<64 hex>`; fix or delete that line",
                    self.path.display(),
                    i + 1
                ));
            };
            if found.is_none() && node.eq_ignore_ascii_case(key) {
                found = Some(Pin { fingerprint, line: i + 1 });
            }
        }
        Ok(found)
    }

    /// Pins `key` to `fingerprint`: appends a line, or rewrites the line of an older pin (`replace`).
    pub fn pin(&mut self, key: &str, fingerprint: &str, replace: Option<usize>) -> Result<(), String> {
        let entry = format!("{key} {fingerprint}");
        let text = match replace {
            Some(n) => {
                let lines: Vec<&str> = self.text.lines().collect();
                let mut out = String::new();
                for (i, line) in lines.iter().enumerate() {
                    out.push_str(if i + 1 == n { &entry } else { line });
                    out.push('\n');
                }
                out
            }
            None => {
                let sep = if self.text.is_empty() || self.text.ends_with('\n') { "" } else { "\n" };
                format!("{}{sep}{entry}\n", self.text)
            }
        };
        self.write(&text)?;
        self.text = text;
        Ok(())
    }

    /// Replaces the file atomically, creating its directory.
    fn write(&self, text: &str) -> Result<(), String> {
        let fail = |e: std::io::Error| {
            format!("{}: cannot write: {e}; pass --known-nodes FILE somewhere writable", self.path.display())
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut f = fs::File::create(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            fail(e)
        })
    }

    /// The refusal for a node whose certificate is not the pinned one.
    pub fn mismatch_message(&self, key: &str, pin: &Pin, seen: &str) -> String {
        format!(
            "{key}: certificate {seen} does not match the pinned {} ({}:{}); \
             if the node was reinstalled and its console shows the new fingerprint, delete line {} of {} \
             or pass --fingerprint {seen}",
            pin.fingerprint,
            self.path.display(),
            pin.line,
            pin.line,
            self.path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keelctl-known-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("sub/known_nodes")
    }

    #[test]
    fn node_addresses() {
        let key = |t: &str| NodeAddr::parse(t).map(|a| a.key());
        assert_eq!(key("10.0.2.15").unwrap(), "10.0.2.15:7443");
        assert_eq!(key("Edge-1.Example.org:8443").unwrap(), "edge-1.example.org:8443");
        assert_eq!(key("[fd00::15]:9000").unwrap(), "[fd00::15]:9000");
        assert_eq!(key("[fd00::15]").unwrap(), "[fd00::15]:7443");
        assert_eq!(key("fd00::15").unwrap(), "[fd00::15]:7443");
        for bad in ["", "host:", "host:0", "host:99999", "[fd00::1", "[::1]x", "a b", "http://x"] {
            let e = key(bad).unwrap_err();
            assert!(e.contains("not HOST[:PORT]"), "{bad}: {e}");
        }
    }

    #[test]
    fn fingerprints() {
        assert_eq!(parse_fingerprint(&A.to_uppercase().replace("SHA256", "sha256")).as_deref(), Some(A));
        assert_eq!(parse_fingerprint("sha256:abc"), None);
        assert_eq!(parse_fingerprint(&A.replace("sha256", "sha1")), None);
    }

    #[test]
    fn pin_then_match_then_mismatch() {
        let path = scratch("pin");
        let mut known = KnownNodes::load(&path).unwrap();
        assert_eq!(known.find("10.0.2.15:7443").unwrap(), None);
        known.pin("10.0.2.15:7443", A, None).unwrap();
        known.pin("10.0.2.16:7443", B, None).unwrap();
        let known = KnownNodes::load(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("10.0.2.15:7443 {A}\n10.0.2.16:7443 {B}\n"));
        let pin = known.find("10.0.2.16:7443").unwrap().unwrap();
        assert_eq!(pin, Pin { fingerprint: B.into(), line: 2 });
        let msg = known.mismatch_message("10.0.2.16:7443", &pin, A);
        assert!(msg.contains(&format!("certificate {A} does not match the pinned {B}")), "{msg}");
        assert!(msg.contains(&format!("delete line 2 of {}", path.display())), "{msg}");
        assert!(msg.contains(&format!("--fingerprint {A}")) && !msg.contains('\n'), "{msg}");
        let _ = fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn explicit_repin_replaces_the_line_and_keeps_comments() {
        let path = scratch("repin");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("# lab nodes\n\nedge:7443 {A}\nother:7443 {A}")).unwrap();
        let mut known = KnownNodes::load(&path).unwrap();
        let pin = known.find("EDGE:7443").unwrap().unwrap();
        assert_eq!(pin.line, 3);
        known.pin("edge:7443", B, Some(pin.line)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("# lab nodes\n\nedge:7443 {B}\nother:7443 {A}\n"));
        known.pin("new:7443", B, None).unwrap();
        assert!(fs::read_to_string(&path).unwrap().ends_with(&format!("{A}\nnew:7443 {B}\n")));
        let _ = fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn malformed_lines_are_named() {
        let path = scratch("bad");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("ok:7443 {A}\nbroken:7443 md5:00\n")).unwrap();
        let e = KnownNodes::load(&path).unwrap().find("ok:7443").unwrap_err();
        assert_eq!(e, format!("{}:2: not `host:port sha256:<64 hex>`; fix or delete that line", path.display()));
        let _ = fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn default_path_prefers_the_flag() {
        assert_eq!(KnownNodes::default_path(Some("x".into())).unwrap(), PathBuf::from("x"));
    }
}
