//! Helpers for the services tests and benchmarks: the node's status through keelctl, printk timestamps of console
//! lines, service definitions, and host-side digests of artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// keelctl against one node (pinned on first use into a throwaway known-nodes file).
pub struct Ctl {
    pub node: String,
    pub known: PathBuf,
}

impl Ctl {
    /// For a node whose API port 7443 is forwarded to `port` on the host's loopback.
    pub fn new(port: u16, tag: &str) -> Ctl {
        let dir = std::env::temp_dir().join(format!("keel-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let known = dir.join("known_nodes");
        let _ = std::fs::remove_file(&known);
        Ctl { node: format!("127.0.0.1:{port}"), known }
    }

    /// `GET /v1/status` as JSON (`keelctl status -o json`); panics with keelctl's output when it fails.
    pub fn status(&self) -> serde_json::Value {
        let out = crate::keelctl_cmd()
            .args(["status", "-o", "json", "--node", &self.node, "--known-nodes"])
            .arg(&self.known)
            .output()
            .expect("run keelctl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "keelctl status: {text}{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("keelctl status -o json is not JSON ({e}): {text}"))
    }

    /// PID 1's VmRSS in KiB, as the status reports it.
    pub fn rss_kib(&self) -> u64 {
        let st = self.status();
        st["rss_kib"].as_u64().unwrap_or_else(|| panic!("no rss_kib in the status: {st}"))
    }
}

/// GET `path` from the node API forwarded to 127.0.0.1:`port`, over TLS with `openssl s_client` (no pinning: for
/// the unauthenticated reads such as `/healthz`). Returns (status line, body).
pub fn api_get(port: u16, path: &str) -> Result<(String, String), String> {
    use std::io::Write;
    // coreutils' timeout bounds the exchange: a node that never answers fails the call instead of hanging it.
    let mut child = Command::new("timeout")
        .args(["30", "openssl", "s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("run openssl (make setup installs it): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let request = format!("GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n");
        // Closing stdin does not end the exchange: -quiet implies -ign_eof, so s_client reads until the node closes.
        stdin.write_all(request.as_bytes()).map_err(|e| format!("send to openssl: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
}

/// The kernel's timestamp of a console line (`[   12.345678] keel: …`), in seconds.
pub fn printk_secs(line: &str) -> f64 {
    line.trim_start()
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no printk timestamp in {line:?} (CONFIG_PRINTK_TIME)"))
}

/// The test helper as built for the image (`make image`), to serve as an artifact.
pub fn testhelper_binary() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/x86_64-unknown-linux-musl/image/keel-testhelper");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run 'make image' first", path.display()))
}

/// SHA-256 of `bytes`, lowercase hex (with the host's sha256sum).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(bytes).expect("feed sha256sum");
    }
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// A `[[service]]` table running `exec` with `args` as nobody, plus `extra` TOML lines.
pub fn service(name: &str, exec: &str, args: &[&str], extra: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nexec = \"{exec}\"\nargs = [{}]\nuid = 65534\ngid = 65534\n{extra}\n",
        args.join(", ")
    )
}

/// The demo's definition exactly as in the image's default config, so a config that repeats it leaves it alone.
pub fn default_demo() -> &'static str {
    const DEFAULT_CONFIG: &str = include_str!("../../../image/default-node.toml");
    let start = DEFAULT_CONFIG.find("[[service]]\nname = \"demo\"").expect("the default config defines the demo");
    &DEFAULT_CONFIG[start..]
}

/// Every console line containing all of `needles`, in order.
pub fn lines_with(transcript: &[String], needles: &[&str]) -> Vec<String> {
    transcript.iter().filter(|l| needles.iter().all(|n| l.contains(n))).cloned().collect()
}
