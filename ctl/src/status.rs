//! `keelctl status`: a human summary of `GET /v1/status`. The server is evolving, so every field is optional:
//! what is missing is left out, what is unknown is ignored, and sections of unknown shape are summarized.

use std::fmt::Write;

use serde_json::Value;

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A scalar as text; objects and arrays as compact JSON, cut short.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => {
            let t = other.to_string();
            if t.chars().count() > 100 {
                format!("{}…", t.chars().take(100).collect::<String>())
            } else {
                t
            }
        }
    }
}

pub fn uptime(secs: f64) -> String {
    let whole = secs.max(0.0) as u64;
    let (d, h, m, s) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs:.1}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// An item of a `pending`/`failed`/`items` list: a string, or an object with a name and some detail.
fn item(v: &Value) -> String {
    let Some(obj) = v.as_object() else { return scalar(v) };
    let name = ["name", "item", "path", "link", "key"].iter().find_map(|k| obj.get(*k).and_then(Value::as_str));
    let detail = ["detail", "error", "reason", "message"].iter().find_map(|k| obj.get(*k).and_then(Value::as_str));
    let state = obj.get("state").and_then(Value::as_str);
    match (name, state, detail) {
        (Some(n), Some(st), Some(d)) => format!("{n} ({st}): {d}"),
        (Some(n), None, Some(d)) => format!("{n}: {d}"),
        (Some(n), Some(st), None) => format!("{n} ({st})"),
        (Some(n), None, None) => n.to_string(),
        _ => scalar(v),
    }
}

fn items(v: Option<&Value>) -> Vec<&Value> {
    v.and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// UEFI Secure Boot (README, "Secure Boot"): whether the firmware verified the running image, and its signer.
pub fn secure_boot(st: &Value) -> Option<String> {
    let boot = st.get("boot")?;
    let on = boot.get("secure_boot").and_then(Value::as_bool)?;
    let mut text = format!("secure_boot: {on}");
    if boot.get("setup_mode").and_then(Value::as_bool) == Some(true) {
        text.push_str(" (firmware in setup mode: no platform key, nothing enforced)");
    } else if !on && boot.get("uefi").and_then(Value::as_bool) == Some(false) {
        text.push_str(" (not booted by UEFI firmware)");
    }
    if let Some(signer) = s(boot, "signer") {
        let _ = write!(text, ", image signed for {signer}");
        if let Some(fp) = s(boot, "signer_sha256") {
            let _ = write!(text, " (sha256 {}…)", &fp[..fp.len().min(16)]);
        }
        match boot.get("signer_enrolled").and_then(Value::as_bool) {
            Some(true) => text.push_str(", enrolled in db"),
            Some(false) => text.push_str(", NOT in the firmware's db"),
            None => {}
        }
    }
    Some(text)
}

/// The A/B boot slots (README, "Upgrades"): which runs, which waits for its trial, how the last upgrade ended.
pub fn slots(st: &Value) -> Option<String> {
    let boot = st.get("boot")?;
    let last = boot.get("last_upgrade").filter(|l| l.is_object());
    let running = s(boot, "slot");
    if running.is_none() && last.is_none() {
        return None;
    }
    let mut text = format!("running {}", running.unwrap_or("?"));
    if let Some(p) = s(boot, "pending_slot") {
        let _ = write!(text, "; slot {p} waits for its trial boot");
    }
    if let Some(l) = last {
        let _ = write!(text, "; last upgrade {} (slot {})", s(l, "result").unwrap_or("?"), s(l, "slot").unwrap_or("?"));
        if let Some(r) = s(l, "reason") {
            let _ = write!(text, ": {r}");
        }
    }
    Some(text)
}

/// The kinds not converged to the applied generation (`config.convergence`, the node's own
/// [`keel_config::status::KindConvergence`] list): `waiting for storage (stuck: data: blocked: …), services`.
fn waiting_for(config: &Value) -> Option<String> {
    use keel_config::status::{ConvergenceState, KindConvergence};
    let kinds: Vec<KindConvergence> = serde_json::from_value(config.get("convergence")?.clone()).ok()?;
    let open: Vec<String> = kinds
        .iter()
        .filter(|k| k.state != ConvergenceState::Converged)
        .map(|k| match k.state {
            ConvergenceState::Stuck => format!("{} (stuck: {})", k.kind, k.problems.join("; ")),
            _ => k.kind.clone(),
        })
        .collect();
    (!open.is_empty()).then(|| format!("waiting for {}", open.join(", ")))
}

pub fn render(st: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{}", format!("{label:<11}{text}").trim_end());
    };
    let mut head = Vec::new();
    if let Some(h) = s(st, "hostname") {
        head.push(h.to_string());
    }
    if let Some(id) = s(st, "machine_id") {
        head.push(format!("machine {id}"));
    }
    if let Some(v) = s(st, "version") {
        head.push(format!("keel {v}"));
    }
    if let Some(u) = st.get("uptime_s").and_then(Value::as_f64) {
        head.push(format!("up {}", uptime(u)));
    }
    line("node", head.join("  "));
    if let Some(fp) = st.get("api").and_then(|a| s(a, "fingerprint")) {
        line("api", fp.to_string());
    }

    let config = st.get("config").unwrap_or(&Value::Null);
    let generation = config.get("generation").and_then(Value::as_u64);
    let converged = config.get("converged_generation").and_then(Value::as_u64);
    let mut text = match (generation, converged) {
        (None, _) => "none applied".to_string(),
        (Some(g), Some(c)) if c == g => format!("generation {g} (converged)"),
        (Some(g), Some(c)) => format!("generation {g} (converging; generation {c} converged)"),
        (Some(g), None) => format!("generation {g} (converging)"),
    };
    if let Some(src) = s(config, "source") {
        let _ = write!(text, " from {src}");
    }
    if let Some(signer) = s(config, "signer") {
        let _ = write!(text, " signed by {signer}");
    }
    line("config", text);
    if let Some(i) = st.get("install").filter(|i| i.is_object()) {
        let mut text = format!("{} on {}", s(i, "phase").unwrap_or("?"), s(i, "disk").unwrap_or("?"));
        if let Some(code) = s(i, "code") {
            let _ = write!(text, " ({code})");
        }
        if let Some(why) = s(i, "reason") {
            let _ = write!(text, ": {why}");
        }
        line("install", text);
    }
    if let Some(text) = waiting_for(config) {
        line("", text);
    }
    if let Some(w) = config.get("rollout").filter(|r| r.is_object()) {
        let generation = w.get("generation").and_then(Value::as_u64).map_or("?".to_string(), |g| g.to_string());
        let at = s(w, "applies_at").unwrap_or("?");
        line("", format!("waiting-rollout: generation {generation} applies at {at}"));
    }
    if let Some(rej) = config.get("last_rejection").filter(|r| r.is_object()) {
        let mut text = format!("last rejection: {}", s(rej, "reason").unwrap_or("?"));
        if let Some(d) = s(rej, "detail") {
            let _ = write!(text, ": {d}");
        }
        if let Some(src) = s(rej, "source") {
            let _ = write!(text, " (from {src})");
        }
        line("", text);
    }
    if let Some(pull) = config.get("pull").filter(|p| p.is_object()) {
        let url = s(pull, "url").unwrap_or("?");
        let text = match pull.get("failures").and_then(Value::as_u64) {
            Some(n) if n > 0 => {
                format!("pull from {url} FAILING ({n} in a row): {}", s(pull, "last_error").unwrap_or("?"))
            }
            _ => format!("pull from {url}: ok"),
        };
        line("", text);
    }

    if let Some(text) = secure_boot(st) {
        line("trust", text);
    }
    if let Some(text) = slots(st) {
        line("slots", text);
    }

    if let Some(net) = st.get("network").filter(|n| n.is_object()) {
        let mut text = match net.get("ready").and_then(Value::as_bool) {
            Some(true) => "ready".to_string(),
            Some(false) => "NOT ready".to_string(),
            None => String::new(),
        };
        let ns: Vec<String> = items(net.get("nameservers")).into_iter().map(scalar).collect();
        if !ns.is_empty() {
            let _ = write!(text, "{}nameservers {}", if text.is_empty() { "" } else { "; " }, ns.join(", "));
        }
        line("network", text);
        for l in items(net.get("links")) {
            let mut t = s(l, "name").unwrap_or("?").to_string();
            if let Some(mac) = s(l, "mac") {
                let _ = write!(t, " {mac}");
            }
            let up = l.get("up").and_then(Value::as_bool);
            t.push_str(match up {
                Some(true) => " up",
                Some(false) => " down",
                None => "",
            });
            if l.get("carrier").and_then(Value::as_bool) == Some(false) {
                t.push_str(" no-carrier");
            }
            if let Some(mtu) = l.get("mtu").and_then(Value::as_u64) {
                let _ = write!(t, " mtu {mtu}");
            }
            line("  link", t);
        }
        for a in items(net.get("addresses")) {
            let mut t = s(a, "address").map_or_else(|| scalar(a), str::to_string);
            if let Some(l) = s(a, "link") {
                let _ = write!(t, " on {l}");
            }
            if let Some(o) = s(a, "origin") {
                let _ = write!(t, " ({o})");
            }
            line("  address", t);
        }
        for r in items(net.get("routes")) {
            let mut t = s(r, "to").map_or_else(|| scalar(r), str::to_string);
            if let Some(via) = s(r, "via") {
                let _ = write!(t, " via {via}");
            }
            if let Some(l) = s(r, "link") {
                let _ = write!(t, " on {l}");
            }
            if let Some(m) = r.get("metric").and_then(Value::as_u64) {
                let _ = write!(t, " metric {m}");
            }
            if let Some(o) = s(r, "origin") {
                let _ = write!(t, " ({o})");
            }
            line("  route", t);
        }
        for p in items(net.get("pending")) {
            line("  pending", item(p));
        }
        for f in items(net.get("failed")) {
            line("  FAILED", item(f));
        }
    }

    if let Some(time) = st.get("time").filter(|t| t.is_object()) {
        let mut t = match time.get("synced").and_then(Value::as_bool) {
            Some(true) => "synced".to_string(),
            Some(false) => "not synced".to_string(),
            None => "?".to_string(),
        };
        if let Some(src) = s(time, "source") {
            let _ = write!(t, " (source {src}");
            if let Some(server) = s(time, "server") {
                let _ = write!(t, " {server}");
            }
            t.push(')');
        }
        if let Some(off) = time.get("offset_ms").and_then(Value::as_f64) {
            let _ = write!(t, " offset {off:.1} ms");
        }
        line("time", t);
    }

    if let Some(Value::Object(ctrls)) = st.get("controllers") {
        line("controllers", String::new());
        for (name, c) in ctrls {
            let mut t = match c.get("converged").and_then(Value::as_bool) {
                Some(true) => "converged".to_string(),
                Some(false) => "NOT converged".to_string(),
                None => c.get("state").map_or_else(|| "?".into(), scalar),
            };
            if let Some(g) = c.get("generation").and_then(Value::as_u64) {
                let _ = write!(t, " (generation {g})");
            }
            let bad: Vec<String> = items(c.get("items"))
                .into_iter()
                .filter(|i| s(i, "state").is_some_and(|st| st != "converged"))
                .map(item)
                .collect();
            if !bad.is_empty() {
                let _ = write!(t, "; {}", bad.join("; "));
            }
            line(&format!("  {name}"), t);
        }
    }

    for section in ["storage", "services"] {
        if let Some(Value::Object(m)) = st.get(section) {
            if m.is_empty() {
                continue;
            }
            line(section, String::new());
            for (name, v) in m {
                let mut t = match v {
                    Value::Object(_) => ["state", "status", "converged"]
                        .iter()
                        .find_map(|k| v.get(*k))
                        .map_or_else(|| scalar(v), scalar),
                    other => scalar(other),
                };
                if section == "services" {
                    service_detail(&mut t, v);
                }
                line(&format!("  {name}"), t);
            }
        }
    }
    out
}

/// An image service's pull progress and manifest digest, and why a service is not running.
fn service_detail(t: &mut String, v: &Value) {
    if let Some(p) = v.get("pull_percent").and_then(Value::as_u64) {
        let _ = write!(t, " {p}%");
    }
    if let Some(image) = s(v, "image") {
        let _ = write!(t, " image {image}");
    }
    if let Some(reason) = s(v, "reason") {
        let _ = write!(t, ": {reason}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_failing_config_pull_shows_its_reason() {
        let reason = "https://10.0.2.2:8443/n.toml: untrusted certificate: its issuer is not a CA in /etc/keel/ca.pem";
        let st = json!({"config": {"generation": 1, "converged_generation": 1, "source": "image",
                                   "pull": {"url": "https://10.0.2.2:8443/n.toml", "polls": 4, "failures": 3,
                                            "last_error": reason}}});
        let want = format!(
            "node\nconfig     generation 1 (converged) from image\n           \
             pull from https://10.0.2.2:8443/n.toml FAILING (3 in a row): {reason}\n"
        );
        assert_eq!(render(&st), want);
        let ok = json!({"config": {"pull": {"url": "http://h/n", "polls": 4, "failures": 0, "last_error": "old"}}});
        assert_eq!(render(&ok), "node\nconfig     none applied\n           pull from http://h/n: ok\n");
    }

    #[test]
    fn a_config_held_for_its_rollout_turn_shows_when_it_applies() {
        let st = json!({"config": {"generation": 4, "converged_generation": 4, "source": "http://h/n",
            "rollout": {"state": "waiting-rollout", "generation": 5, "applies_at": "2026-12-02T18:00:00Z",
                        "applies_at_unix": 1_796_234_400, "slot": 0.41, "source": "http://h/n"}}});
        assert_eq!(
            render(&st),
            "node\nconfig     generation 4 (converged) from http://h/n\n           \
             waiting-rollout: generation 5 applies at 2026-12-02T18:00:00Z\n"
        );
    }

    #[test]
    fn the_kinds_not_yet_converged_are_named() {
        let st = json!({"config": {"generation": 4, "converged_generation": 3, "source": "api",
            "convergence": [{"kind": "network", "state": "converged"}, {"kind": "storage", "state": "stuck",
                             "problems": ["data: blocked: holds xfs"]}, {"kind": "services", "state": "pending"}]}});
        assert_eq!(
            render(&st),
            "node\nconfig     generation 4 (converging; generation 3 converged) from api\n           \
             waiting for storage (stuck: data: blocked: holds xfs), services\n"
        );
        let done = json!({"config": {"generation": 4, "converged_generation": 4,
            "convergence": [{"kind": "files", "state": "converged"}]}});
        assert_eq!(render(&done), "node\nconfig     generation 4 (converged)\n");
    }

    #[test]
    fn the_install_says_where_it_stands_and_why() {
        let st = json!({"install": {"generation": 2, "phase": "refused", "disk": "/dev/vda", "code": "not-blank",
                                    "reason": "the disk holds data"}});
        assert_eq!(
            render(&st),
            "node\nconfig     none applied\ninstall    refused on /dev/vda (not-blank): the disk holds data\n"
        );
        assert_eq!(render(&json!({"install": null})), "node\nconfig     none applied\n", "no [install]: no line");
    }

    #[test]
    fn a_full_status() {
        let st = json!({
            "version": "0.1.0", "machine_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "hostname": "edge-1",
            "uptime_s": 192.4, "api": {"fingerprint": "sha256:ab"},
            "config": {"generation": 3, "source": "api", "signer": "ops", "converged_generation": 2,
                       "last_rejection": {"reason": "not-newer", "detail": "generation 1 <= 3", "source": "api"}},
            "controllers": {"files": {"converged": false, "generation": 3,
                                      "items": [{"name": "/run/a", "state": "converged"},
                                                {"name": "/var/x", "state": "failed", "detail": "read-only"}]},
                            "sysctl": {"converged": true, "generation": 3, "items": []}},
            "network": {"ready": true, "links": [{"name": "eth0", "mac": "52:54:00:12:34:56", "up": true,
                                                  "carrier": false, "mtu": 1500}],
                        "addresses": [{"link": "eth0", "address": "10.0.2.15/24", "origin": "dhcp"}],
                        "routes": [{"to": "0.0.0.0/0", "via": "10.0.2.2", "link": "eth0", "metric": 1027,
                                    "origin": "dhcp"}],
                        "nameservers": ["10.0.2.3"], "pending": ["eth1"], "failed": [{"name": "eth2", "error": "gone"}]},
            "time": {"synced": false, "source": "rtc", "offset_ms": null, "server": null},
            "storage": {}, "services": {"app": {"state": "running", "pid": 7}}, "future": {"x": 1}
        });
        let want = "\
node       edge-1  machine 0a1b2c3d4e5f60718293a4b5c6d7e8f9  keel 0.1.0  up 3m 12s
api        sha256:ab
config     generation 3 (converging; generation 2 converged) from api signed by ops
           last rejection: not-newer: generation 1 <= 3 (from api)
network    ready; nameservers 10.0.2.3
  link     eth0 52:54:00:12:34:56 up no-carrier mtu 1500
  address  10.0.2.15/24 on eth0 (dhcp)
  route    0.0.0.0/0 via 10.0.2.2 on eth0 metric 1027 (dhcp)
  pending  eth1
  FAILED   eth2: gone
time       not synced (source rtc)
controllers
  files    NOT converged (generation 3); /var/x (failed): read-only
  sysctl   converged (generation 3)
services
  app      running
";
        assert_eq!(render(&st), want);
    }

    #[test]
    fn image_services_show_their_pull_digest_and_failure() {
        let st = json!({"services": {
            "a": {"state": "pulling", "pull_percent": 37},
            "b": {"state": "running", "pid": 9, "image": "sha256:ab12"},
            "c": {"state": "backoff", "reason": "digest-mismatch: digest mismatch: blob sha256:cd"}}});
        let shown = render(&st);
        assert!(shown.contains("  a        pulling 37%\n"), "{shown}");
        assert!(shown.contains("  b        running image sha256:ab12\n"), "{shown}");
        assert!(shown.contains("  c        backoff: digest-mismatch: digest mismatch: blob sha256:cd\n"), "{shown}");
    }

    #[test]
    fn missing_and_odd_fields_are_tolerated() {
        assert_eq!(render(&json!({})), "node\nconfig     none applied\n");
        let odd = json!({"hostname": 5, "config": {"generation": "x"}, "network": [], "controllers": {"a": 1}});
        assert_eq!(render(&odd), "node\nconfig     none applied\ncontrollers\n  a        ?\n");
    }

    #[test]
    fn secure_boot_and_signer() {
        assert_eq!(secure_boot(&json!({"boot": {}})), None);
        let st = json!({"boot": {"secure_boot": true, "uefi": true, "setup_mode": false, "signer": "CN=Keel db",
                        "signer_sha256": "0123456789abcdef0123", "signer_enrolled": true}});
        assert_eq!(
            secure_boot(&st).as_deref(),
            Some("secure_boot: true, image signed for CN=Keel db (sha256 0123456789abcdef…), enrolled in db")
        );
        let st = json!({"boot": {"secure_boot": false, "uefi": false, "signer": null}});
        assert_eq!(secure_boot(&st).as_deref(), Some("secure_boot: false (not booted by UEFI firmware)"));
        assert!(render(&st).contains("trust      secure_boot: false"));
    }

    #[test]
    fn boot_slots() {
        assert_eq!(slots(&json!({"boot": {"slot": null}})), None);
        let st = json!({"boot": {"slot": "A", "pending_slot": null, "last_upgrade": {"result": "rolled-back",
                        "slot": "B", "reason": "slot B did not come up; booted slot A instead"}}});
        assert_eq!(
            slots(&st).as_deref(),
            Some("running A; last upgrade rolled-back (slot B): slot B did not come up; booted slot A instead")
        );
        let st = json!({"boot": {"slot": "A", "pending_slot": "B", "last_upgrade": null}});
        assert_eq!(slots(&st).as_deref(), Some("running A; slot B waits for its trial boot"));
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(12.34), "12.3s");
        assert_eq!(uptime(3.0 * 3600.0 + 125.0), "3h 2m");
        assert_eq!(uptime(2.0 * 86_400.0 + 3600.0), "2d 1h");
    }
}
