//! End to end, one VM: the node's logs reach a real rsyslog and its metrics a real Prometheus, both Debian's,
//! started by the test as its children on 127.0.0.1 with their own temporary configs (never the host's).
//!
//! rsyslog listens on two ports (imtcp): one gets RFC 5424 octet-counted frames, which rsyslog parses and writes
//! as `app=… host=… sd=… msg=…`; the other JSON lines, written as received. The guest reaches them at 10.0.2.2.
//! A `keel:` line, a kernel line and the demo service's output arrive in both, with the machine id and the host
//! name. Then rsyslog stops, the node logs more than its (small) buffers hold, rsyslog comes back: the lines
//! after recovery arrive, and so does the line saying how many were dropped, which the status shows too.
//! Last, Prometheus scrapes `/metrics` through the hostfwd (TLS pinned to the node's own certificate, a bearer
//! token from `keelctl metrics-token`) and a Keel metric is queryable through its HTTP API.

use keel_config::sshsig::PrivateKey;
use keel_e2e::api_client::Api;
use keel_e2e::http_server::ssh_sign;
use keel_e2e::tls::initrd_with_file;
use keel_e2e::{build_dir, field, free_port, keelctl_cmd, Initrd, Vm, VmConfig, BOOT_TIMEOUT, STEP_TIMEOUT};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UUID: &str = "6b65656c-0000-4000-8000-0000000000f1";
const MACHINE_ID: &str = "6b65656c0000400080000000000000f1";
/// The default host name, keel-<first 8 hex digits of the machine id>.
const HOSTNAME: &str = "keel-6b65656c";
/// Collectors may be in backoff (up to a minute) when they come back.
const ARRIVAL: Duration = Duration::from_secs(150);

/// A child process killed (and waited for) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Rsyslog {
    dir: PathBuf,
    rfc_port: u16,
    json_port: u16,
}

impl Rsyslog {
    fn rfc(&self) -> PathBuf {
        self.dir.join("rfc5424.log")
    }

    fn json(&self) -> PathBuf {
        self.dir.join("json.log")
    }

    fn start(&self) -> Proc {
        let conf = self.dir.join("rsyslog.conf");
        let text = format!(
            "global(workDirectory=\"{dir}\")\nmodule(load=\"imtcp\")\n\
             template(name=\"fields\" type=\"string\" string=\"app=%app-name% host=%hostname% sd=%structured-data% msg=%msg%\\n\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"rfc\") {{ action(type=\"omfile\" file=\"{rfc}\" template=\"fields\") }}\n\
             ruleset(name=\"json\") {{ action(type=\"omfile\" file=\"{json}\" template=\"raw\") }}\n\
             input(type=\"imtcp\" port=\"{rp}\" address=\"127.0.0.1\" ruleset=\"rfc\")\n\
             input(type=\"imtcp\" port=\"{jp}\" address=\"127.0.0.1\" ruleset=\"json\")\n",
            dir = self.dir.display(),
            rfc = self.rfc().display(),
            json = self.json().display(),
            rp = self.rfc_port,
            jp = self.json_port,
        );
        std::fs::write(&conf, text).expect("write rsyslog.conf");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rsyslogd (make setup installs Debian's rsyslog)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.rfc_port)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd did not listen on 127.0.0.1:{} within 30s", self.rfc_port);
            std::thread::sleep(Duration::from_millis(100));
        }
        Proc(child)
    }
}

/// Waits until a line of `file` satisfies `ok`; the message names what was awaited and shows the file's tail.
fn wait_line(file: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| ok(l)) {
            return line.to_string();
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            panic!("{what}: not in {} within {}s; last lines: {tail:#?}", file.display(), ARRIVAL.as_secs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn json_line(file: &Path, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let line = wait_line(file, what, |l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| ok(&v)));
    serde_json::from_str(&line).unwrap_or_default()
}

/// One GET to the demo service (its answer does not matter: the demo logs every request); true when it answered.
fn poke(port: u16, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    !answer.is_empty()
}

fn config(generation: u64, rfc_port: u16, json_port: u16, buffer: &str) -> String {
    let demo = include_str!("../../../image/default-node.toml");
    let demo = &demo[demo.find("[[service]]\nname = \"demo\"").expect("the default config has the demo")..];
    format!(
        "version = 1\ngeneration = {generation}\n\n{demo}\n\
         [[log.forward]]\nurl = \"tcp://10.0.2.2:{rfc_port}\"\nformat = \"rfc5424\"\n{buffer}\n\
         [[log.forward]]\nurl = \"tcp://10.0.2.2:{json_port}\"\nformat = \"json\"\n{buffer}\n"
    )
}

fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in der.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { B64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    let lines: Vec<&str> = out.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

fn dest<'a>(status: &'a serde_json::Value, url: &str) -> &'a serde_json::Value {
    let all = status["logs"]["forward"].as_array().unwrap_or_else(|| panic!("no logs.forward in the status: {status}"));
    all.iter().find(|d| d["url"] == url).unwrap_or_else(|| panic!("no collector {url} in {all:?}"))
}

#[test]
fn qemu_logs_reach_rsyslog_in_both_formats_across_an_outage_and_prometheus_scrapes_metrics() {
    let dir = std::env::temp_dir().join(format!("keel-e2e-fleetlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dev_key = build_dir().join("keys/dev_ed25519");
    let scraper = PrivateKey::from_seed([0x6d; 32], "scraper");
    let scraper_path = dir.join("scraper");
    std::fs::write(&scraper_path, scraper.to_openssh()).expect("write the scraper key");
    std::fs::set_permissions(&scraper_path, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    let trusted =
        std::fs::read_to_string(build_dir().join("keys/allowed_signers")).expect("build/keys/allowed_signers");
    let signers = format!("{trusted}scraper namespaces=\"keel-metrics\" {}\n", scraper.public_key().to_openssh());
    let initrd = initrd_with_file("/etc/keel/allowed_signers", signers.as_bytes(), &dir.join("initramfs.cpio.zst"));

    let rs = Rsyslog { dir: dir.clone(), rfc_port: free_port(), json_port: free_port() };
    let rsyslog = rs.start();
    let (api_port, demo_port) = (free_port(), free_port());
    let cfg = VmConfig {
        initrd: Initrd::Custom(initrd),
        uuid: Some(UUID.into()),
        hostfwd: vec![(api_port, 7443), (demo_port, 8080)],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("fleet_logs", &cfg);
    vm.expect_ready();
    let listening = vm.expect("keel: api.listening ", BOOT_TIMEOUT);
    let api = Api::new(api_port, field(&listening, "fingerprint")).with_key(&dev_key);
    let push = |text: &str| {
        let sig = String::from_utf8(ssh_sign(text, &dev_key, "keel-config")).expect("an armored signature");
        let (code, body) = api.push(text, &sig).unwrap_or_else(|e| panic!("PUT /v1/config: {e}"));
        assert_eq!(code, 200, "{body}");
    };
    let rss = |what: &str| {
        let st = api.status().unwrap_or_else(|e| panic!("status ({what}): {e}"));
        st["rss_kib"].as_u64().unwrap_or_else(|| panic!("no rss_kib in the status: {st}"))
    };
    let rss_before = rss("before forwarding");
    push(&config(2, rs.rfc_port, rs.json_port, ""));
    vm.expect_anywhere("keel: logfwd.connected destination=tcp://10.0.2.2:", STEP_TIMEOUT);
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !poke(demo_port, "/before-outage") {
        assert!(Instant::now() < deadline, "the demo service did not answer on its hostfwd within 90s");
        std::thread::sleep(Duration::from_secs(1));
    }

    // Both formats: a keel: line, a kernel line (the boot's, kept for a collector configured later) and the
    // demo's output, each with the machine id and the host name.
    let sd = format!("machine_id=\"{MACHINE_ID}\"");
    for (app, needle) in
        [("keel", "config.accepted generation=2"), ("kernel", "Linux version"), ("demo", "/before-outage")]
    {
        let line = wait_line(&rs.rfc(), &format!("an rfc5424 {app} line with {needle:?}"), |l| {
            l.starts_with(&format!("app={app} host={HOSTNAME} sd=[keel@32473 {sd}")) && l.contains(needle)
        });
        assert!(line.contains("msg="), "{line}");
        let v = json_line(&rs.json(), &format!("a json {app} line with {needle:?}"), |v| {
            v["app"] == app && v["msg"].as_str().is_some_and(|m| m.contains(needle))
        });
        assert_eq!((v["machine_id"].as_str(), v["hostname"].as_str()), (Some(MACHINE_ID), Some(HOSTNAME)), "{v}");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    }

    // The outage: rsyslog stops; a config with 5-line buffers comes (replacing both collectors), and the demo
    // logs far more than 5 lines while nobody listens.
    drop(rsyslog);
    push(&config(3, rs.rfc_port, rs.json_port, "buffer_lines = 5"));
    for i in 0..20 {
        assert!(poke(demo_port, &format!("/during-outage-{i}")), "the demo stopped answering");
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    let rfc_url = format!("tcp://10.0.2.2:{}", rs.rfc_port);
    let json_url = format!("tcp://10.0.2.2:{}", rs.json_port);
    loop {
        let st = api.status().unwrap_or_else(|e| panic!("status: {e}"));
        let (r, j) = (dest(&st, &rfc_url), dest(&st, &json_url));
        if r["dropped"].as_u64() > Some(0) && j["dropped"].as_u64() > Some(0) {
            assert_eq!((r["connected"].as_bool(), r["buffer_lines"].as_u64()), (Some(false), Some(5)), "{r}");
            assert!(r["buffered"].as_u64() <= Some(5), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "no drops counted in the status during the outage: {}", st["logs"]);
        std::thread::sleep(Duration::from_secs(1));
    }

    let restarted = Instant::now();
    let _rsyslog = rs.start();
    assert!(poke(demo_port, "/after-recovery"), "the demo stopped answering");
    for (file, url) in [(rs.rfc(), &rfc_url), (rs.json(), &json_url)] {
        let line = wait_line(&file, "the dropped-lines notice", |l| {
            l.contains(&format!("logfwd.dropped destination={url} lines="))
        });
        assert!(line.contains(MACHINE_ID), "{line}");
    }
    wait_line(&rs.rfc(), "an rfc5424 line logged after recovery", |l| l.contains("/after-recovery"));
    let recovery = restarted.elapsed();
    json_line(&rs.json(), "a json line logged after recovery", |v| {
        v["msg"].as_str().is_some_and(|m| m.contains("/after-recovery"))
    });
    // The status catches up within a couple of seconds (the forwarder publishes every second).
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let st = api.status().unwrap_or_else(|e| panic!("status: {e}"));
        let ok = [&rfc_url, &json_url].iter().all(|url| {
            let d = dest(&st, url);
            d["connected"] == true && d["dropped"].as_u64() > Some(0) && d["sent"].as_u64() > Some(0)
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status does not show the collectors back with their drops: {}",
            st["logs"]
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    eprintln!(
        "fleet_logs: pid1 rss_kib before forwarding={rss_before} after the outage={} collector back -> lines \
         arrive in {:.1}s",
        rss("after the outage"),
        recovery.as_secs_f64()
    );

    // Prometheus, scraping through the hostfwd with a metrics token, TLS verified against the node's own
    // certificate (fetched here, pinned by the fingerprint the console printed) under its SAN keel-<id>.
    let stream = api.connect().unwrap_or_else(|e| panic!("connect: {e}"));
    let cert = stream.conn.peer_certificates().and_then(|c| c.first()).expect("the node's certificate").to_vec();
    std::fs::write(dir.join("node.pem"), pem(&cert)).expect("write node.pem");
    let token = keelctl_cmd()
        .args(["metrics-token", "--key"])
        .arg(&scraper_path)
        .args(["--days", "1"])
        .output()
        .expect("run keelctl metrics-token");
    assert!(token.status.success(), "keelctl metrics-token: {}", String::from_utf8_lossy(&token.stderr));
    std::fs::write(dir.join("keel.token"), String::from_utf8_lossy(&token.stdout).trim()).expect("write the token");
    let prom_port = free_port();
    let prom_conf = format!(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: keel\n    scheme: https\n\
         \x20   authorization:\n      type: Bearer\n      credentials_file: {dir}/keel.token\n\
         \x20   tls_config:\n      ca_file: {dir}/node.pem\n      server_name: keel-{id8}\n\
         \x20   static_configs:\n      - targets: [\"127.0.0.1:{api_port}\"]\n",
        dir = dir.display(),
        id8 = &MACHINE_ID[..8],
    );
    std::fs::write(dir.join("prometheus.yml"), prom_conf).expect("write prometheus.yml");
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}/prometheus.yml", dir.display()))
            .arg(format!("--storage.tsdb.path={}/tsdb", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("run prometheus (make setup installs Debian's prometheus)"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let q = "/api/v1/query?query=keel_log_forward_sent_total";
        if let Ok(body) = keel_e2e::http_get(prom_port, q, Duration::from_secs(5)) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
            let sent = results.iter().find(|r| r["metric"]["destination"] == rfc_url.as_str());
            if let Some(s) = sent {
                let value: f64 = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(0.0);
                assert!(value > 0.0, "{s}");
                break;
            }
            last = body;
        }
        if Instant::now() > deadline {
            let targets = keel_e2e::http_get(prom_port, "/api/v1/targets", Duration::from_secs(5)).unwrap_or_default();
            panic!("Prometheus has no keel_log_forward_sent_total after 120s; last answer {last}; targets: {targets}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let rss =
        keel_e2e::http_get(prom_port, "/api/v1/query?query=keel_pid1_rss_bytes", STEP_TIMEOUT).unwrap_or_default();
    assert!(rss.contains("\"keel_pid1_rss_bytes\""), "{rss}");
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
}
